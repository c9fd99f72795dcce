"""The dashboard's HTTP surface, one FastAPI router that the admin app includes
(``create_admin_app(hub, routers=[build_router(state, token_check=require_token)])``).

========================================  ==================================================================
``GET /dashboard``                        the page (static files under ``/dashboard/static/``)
``GET /api/dashboard/config``             map settings for the page (``[dashboard].tile_url``)
``GET /api/dashboard/token``              204 when the bearer token is accepted (the page checks it on entry)
``GET /api/incidents``                    incident summaries; filters district, street, category, severity,
                                          status (state, ``active``, ``overdue``, ``all``), source, limit
``GET /api/incidents/{id}``               one incident: reports in time order, grid path, rules, orders
``GET /api/grids``                        GeoJSON of ``[[geo.layers]]``, simplified for drawing
``GET /api/figures``                      open, overdue, response times, events per minute, open per cell
``GET /api/plugins``                      each plugin's state, counters, last error and health details
``GET /api/role``                         this hub's role (active, standby, …) and the active hub's admin URL
``GET /api/stream``                       server-sent events: ``snapshot`` first, then ``changes``, ``figures``
``GET /asyncapi.json``                    the AsyncAPI document of the unified stream
========================================  ==================================================================

The page enables and disables plugins through the admin API itself (``POST /plugins/{name}/enable``) with
the token the operator entered. Config, grid layers and plugins come from the hub the admin app serves, per
request, so a config reload shows on the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from hub.admin import PathName, get_hub
from hub.asyncapi import asyncapi_document
from hub.dashboard.grids import GridDrawing
from hub.dashboard.state import LiveState
from hub.models import IncidentId

STATIC_DIR = Path(__file__).parent / "static"
CHANGE_COALESCE_S = 0.25
FIGURES_EVERY_S = 2.0


def json_response(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


def build_router(state: LiveState, *, token_check: Callable[..., Any]) -> APIRouter:
    """The dashboard router over ``state``; ``token_check`` is the admin app's bearer-token dependency."""
    router = APIRouter()
    drawing = GridDrawing()
    static_files = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}

    @router.get("/", include_in_schema=False)
    async def front_page() -> RedirectResponse:
        """The admin port's first URL (the demo's banner prints it) leads to the dashboard."""
        return RedirectResponse("/dashboard")

    @router.get("/dashboard", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static_files["index.html"])

    @router.get("/dashboard/static/{name}", include_in_schema=False)
    async def static(name: PathName) -> FileResponse:
        if name not in static_files:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(static_files[name])

    @router.get("/api/dashboard/config")
    async def config(hub: Any = Depends(get_hub)) -> dict[str, Any]:
        tier = hub.config.tier
        return {
            "tile_url": hub.config.dashboard.tile_url,
            "tier": {
                "scope": tier.scope,
                "parent": tier.parent.scope if tier.parent else None,
                "children": tier.children,
            },
        }

    @router.get("/api/dashboard/token", status_code=204, dependencies=[Depends(token_check)])
    async def token() -> Response:
        return Response(status_code=204)

    @router.get("/api/incidents")
    async def incidents(
        district: str | None = None,
        street: str | None = None,
        category: str | None = None,
        severity: str | None = None,
        status: str | None = Query(None, description="An incident state, active (default), overdue or all."),
        source: str | None = None,
        limit: int | None = Query(None, ge=1),
    ) -> Response:
        filters = {
            "district": district,
            "street": street,
            "category": category,
            "severity": severity,
            "status": status,
            "source": source,
        }
        found = state.incidents(filters)
        return json_response({"total": len(found), "incidents": found[:limit]})

    @router.get("/api/incidents/{incident_id}")
    async def incident(incident_id: IncidentId) -> Response:
        found = state.incident(incident_id)
        if found is None:
            raise HTTPException(404, f"no incident {incident_id!r} in the dashboard's window")
        return json_response(found)

    @router.get("/api/grids")
    async def grids(hub: Any = Depends(get_hub)) -> Response:
        encoded = await asyncio.to_thread(drawing.geojson, list(hub.config.geo.layers))
        return Response(encoded, media_type="application/json")

    @router.get("/api/figures")
    async def figures() -> Response:
        return json_response(_figures(state))

    @router.get("/api/plugins")
    async def plugins(hub: Any = Depends(get_hub)) -> Response:
        health = await hub.plugins.health()
        return json_response([{"name": name, **details} for name, details in sorted(health.items())])

    @router.get("/api/role")
    async def role(hub: Any = Depends(get_hub)) -> dict[str, Any]:
        availability = hub.health().get("availability") or {}
        holder = availability.get("holder") or {}
        return {"role": availability.get("role", "active"), "active_admin_url": holder.get("admin_url")}

    @router.get("/api/stream", response_class=EventSourceResponse)
    async def stream() -> AsyncIterator[ServerSentEvent]:
        feed = state.open_feed()
        try:
            yield _sse("snapshot", {"incidents": state.incidents({"status": "all"}), "figures": _figures(state)})
            loop = asyncio.get_running_loop()
            figures_due = loop.time() + FIGURES_EVERY_S
            while True:
                changed = await feed.wait(max(0.0, figures_due - loop.time()))
                if changed:
                    await asyncio.sleep(CHANGE_COALESCE_S)
                    changed |= feed.take()
                    yield _sse("changes", {"incidents": state.summaries_of(changed)})
                if loop.time() >= figures_due:
                    figures_due = loop.time() + FIGURES_EVERY_S
                    yield _sse("figures", _figures(state))
        finally:
            state.close_feed(feed)

    @router.get("/asyncapi.json")
    async def asyncapi(hub: Any = Depends(get_hub)) -> Response:
        return json_response(asyncapi_document(hub.taxonomy))

    @router.get("/api/categories")
    async def categories(hub: Any = Depends(get_hub)) -> Response:
        """The hub's taxonomy: every category with its zh/en labels, default severity and merge group."""
        return json_response(hub.taxonomy.public())

    return router


def _figures(state: LiveState) -> dict[str, Any]:
    return {**state.figures(), "open_by_cell": state.open_cell_counts()}


def _sse(event: str, payload: Any) -> ServerSentEvent:
    return ServerSentEvent(event=event, raw_data=orjson.dumps(payload).decode())
