"""The admin API (FastAPI): health and readiness, Prometheus metrics, plugins, config reload and dry-run.

Mutating endpoints require ``Authorization: Bearer <[admin].token>`` (compared in constant time); with no
token configured they refuse. Plugin routers from the ``register_routes`` hook are mounted under
``/plugins/<name>/`` and answer 404 while their plugin is disabled. Other parts of CityHub (the dashboard)
add their routers with ``create_admin_app(hub, routers=[...])``, using :func:`get_hub` and
:func:`require_token` as dependencies. Path parameters are checked before anything is looked up (incident ids
by :data:`hub.models.INCIDENT_ID_PATTERN`, names for control characters; 422 says what is wrong), and a request
body above ``[admin].max_body_bytes`` is answered 413 before it is read (FastAPI's ``max_body_size``).

``hub`` is the :class:`hub.app.Hub` handle; the API uses only what :class:`AdminHub` lists.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field

from hub import __version__
from hub.config import HubConfig
from hub.control_characters import refuse_control_characters
from hub.errors import HubError
from hub.metrics import CONTENT_TYPE, Metrics
from hub.models import CLOSE_REASON_MAX, Event, IncidentId
from hub.plugins import PluginHost
from hub.reload import ConfigReloader


class AdminHub(Protocol):
    """What the admin API needs from the hub."""

    config: HubConfig
    plugins: PluginHost
    metrics: Metrics

    @property
    def ready(self) -> bool:
        """True once NATS is connected, streams exist and the pipeline consumes."""
        ...

    # Optional: ``async waiting_for()``, what /ready says the hub waits for while it is not ready.

    def health(self) -> dict[str, Any]:
        """The runtime's own health (NATS connection, pipeline lag); ``ok`` False makes /health degraded."""
        ...

    async def apply_config(self, config: HubConfig) -> None:
        """Switch to a validated config without restart and without losing in-flight events."""
        ...

    async def dry_run(self, event: Event) -> dict[str, Any]:
        """What the pipeline would do with ``event``: grid path, incident, matched rules, nothing published."""
        ...

    async def request_close(self, incident_id: str, reason: str) -> str:
        """Ask the pipeline to close an open incident; returns the close request's message id."""
        ...

    async def escalate_up(self, incident_id: str) -> bool:
        """Escalate an incident to the hub one tier up; False when it went up before."""
        ...

    # Optional: ``reloader`` (a :class:`hub.reload.ConfigReloader`) shared with the file watcher, so
    # POST /config/reload and file edits are serialised and /health shows the last outcome of either.


_bearer = HTTPBearer(auto_error=False, description="The [admin].token of cityhub.toml.")


def get_hub(request: Request) -> Any:
    """Dependency: the hub this admin app serves."""
    return request.app.state.hub


def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Dependency of every mutating endpoint: the bearer token must equal ``[admin].token``."""
    configured = request.app.state.hub.config.admin.token
    if configured is None:
        raise HTTPException(403, "mutating endpoints are off: set [admin].token in cityhub.toml")
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, configured.get_secret_value().encode()):
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


NAME_MAX = 128
PathName = Annotated[
    str, Path(min_length=1, max_length=NAME_MAX), AfterValidator(refuse_control_characters("a name in the path"))
]
"""A name in a URL path (plugin, static file): looked up, never trusted; refused when it holds control characters."""


def _plugin_or_404(hub: Any, name: str) -> None:
    if name not in hub.plugins.names():
        raise HTTPException(404, f"no plugin named {name!r}")


def _core_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health", summary="Hub and plugin health")
    async def health(request: Request, hub: Any = Depends(get_hub)) -> JSONResponse:
        runtime = hub.health()
        last_reload = request.app.state.reloader.last
        plugins = await hub.plugins.health()
        failing = [name for name, state in plugins.items() if state["disabled_reason"] in ("failures", "broken")]
        healthy = runtime.get("ok", True) and not failing
        body = {
            "status": "ok" if healthy else "degraded",
            "version": __version__,
            "ready": hub.ready,
            "runtime": runtime,
            "failing_plugins": failing,
            "plugins": plugins,
            "last_reload": last_reload.public() if last_reload else None,
        }
        return JSONResponse(body)

    @router.get(
        "/ready",
        summary="200 when the hub is ready to do its job (active or standing by), else 503 with what it waits for",
    )
    async def ready(hub: Any = Depends(get_hub)) -> JSONResponse:
        if hasattr(hub, "waiting_for"):
            waiting = await hub.waiting_for()
            ready = not waiting  # one look: ready exactly when nothing is awaited
        else:
            waiting, ready = [], hub.ready
        return JSONResponse({"ready": ready, "waiting_for": waiting}, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(hub: Any = Depends(get_hub)) -> Response:
        return Response(hub.metrics.render(), media_type=CONTENT_TYPE)

    @router.get("/plugins", summary="Every plugin with its state and counters")
    async def plugins(hub: Any = Depends(get_hub)) -> list[dict[str, Any]]:
        return hub.plugins.overview()

    @router.post("/plugins/{name}/enable", dependencies=[Depends(require_token)], summary="Enable a plugin")
    async def enable(name: PathName, hub: Any = Depends(get_hub)) -> dict[str, Any]:
        _plugin_or_404(hub, name)
        if hub.plugins.state(name).disabled_reason in ("broken", "not configured"):
            raise HTTPException(409, f"plugin {name!r} cannot be enabled: {hub.plugins.state(name).disabled_reason}")
        await hub.plugins.enable(name)
        return hub.plugins.state(name).public()

    @router.post("/plugins/{name}/disable", dependencies=[Depends(require_token)], summary="Disable a plugin")
    async def disable(name: PathName, hub: Any = Depends(get_hub)) -> dict[str, Any]:
        _plugin_or_404(hub, name)
        await hub.plugins.disable(name)
        return hub.plugins.state(name).public()

    @router.post("/config/reload", dependencies=[Depends(require_token)], summary="Reload cityhub.toml")
    async def reload(request: Request) -> JSONResponse:
        outcome = await request.app.state.reloader.reload()
        return JSONResponse(outcome.public(), status_code=200 if outcome.applied else 422)

    @router.post("/dry-run", summary="What the pipeline would do with this event (nothing is published)")
    async def dry_run(event: Event, hub: Any = Depends(get_hub)) -> dict[str, Any]:
        try:
            return await hub.dry_run(event)
        except HubError as exc:  # no pipeline here (a standby hub): say where it is
            raise HTTPException(409, str(exc)) from None

    @router.post(
        "/incidents/{incident_id}/close",
        dependencies=[Depends(require_token)],
        status_code=202,
        summary="Close an open incident (applied by the pipeline in order with the reports)",
    )
    async def close_incident(incident_id: IncidentId, body: CloseBody, hub: Any = Depends(get_hub)) -> dict[str, Any]:
        return {"incident_id": incident_id, "request_id": await hub.request_close(incident_id, body.reason)}

    @router.post(
        "/incidents/{incident_id}/escalate",
        dependencies=[Depends(require_token)],
        summary="Escalate an incident to the hub one tier up (docs/deployment.md)",
    )
    async def escalate_incident(incident_id: IncidentId, hub: Any = Depends(get_hub)) -> dict[str, Any]:
        try:
            sent = await hub.escalate_up(incident_id)
        except HubError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return {"incident_id": incident_id, "escalated": sent}

    return router


class CloseBody(BaseModel):
    reason: str = Field(min_length=1, max_length=CLOSE_REASON_MAX, examples=["duplicate of a resolved case"])


def _plugin_enabled(name: str) -> Callable[..., None]:
    def check(hub: Any = Depends(get_hub)) -> None:
        if not hub.plugins.is_enabled(name):
            raise HTTPException(404, f"plugin {name!r} is disabled")

    return check


def create_admin_app(hub: AdminHub, routers: Iterable[APIRouter] = ()) -> FastAPI:
    """The admin API of ``hub``, with each plugin's routes and any extra ``routers`` (the dashboard)."""
    app = FastAPI(
        title="CityHub admin API",
        version=__version__,
        description=__doc__,
        max_body_size=hub.config.admin.max_body_bytes,
    )
    app.state.hub = hub
    app.state.reloader = getattr(hub, "reloader", None) or ConfigReloader(hub)
    app.include_router(_core_router())
    for plugin, router in hub.plugins.call_blocking("register_routes"):
        app.include_router(router, prefix=f"/plugins/{plugin}", dependencies=[Depends(_plugin_enabled(plugin))])
    for _, collectors in hub.plugins.call_blocking("register_metrics"):
        for collector in collectors:
            hub.metrics.add_collector(collector)
    for router in routers:
        app.include_router(router)
    app.add_api_route("/", _api_docs, include_in_schema=False)  # after the routers: a dashboard's "/" comes first
    return app


async def _api_docs() -> RedirectResponse:
    """``GET /`` of an admin app without a dashboard: the API docs."""
    return RedirectResponse("/docs")
