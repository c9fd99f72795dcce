"""The admin API, through httpx against the real FastAPI app (and a real uvicorn server)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client import CollectorRegistry, Counter

from hub.admin import create_admin_app, require_token
from hub.hookspecs import hookimpl
from standin_hub import StandInHub

TOKEN = "test-token-123"


class Greeter:
    """A plugin with its own routes and metric."""

    def __init__(self):
        self.greetings = Counter("greeter_greetings", "Greetings given.", registry=CollectorRegistry())

    @hookimpl
    def register_routes(self, hub):
        router = APIRouter()

        @router.get("/hello")
        def hello() -> dict[str, str]:
            self.greetings.inc()
            return {"hello": "你好"}

        return router

    @hookimpl
    def register_metrics(self, hub):
        return [self.greetings]


class Crashing:
    @hookimpl
    def plugin_health(self, hub):
        raise RuntimeError("sensor bus unreachable")


CONFIG = f"""
[admin]
token = "${{ADMIN_TEST_TOKEN:-{TOKEN}}}"

[hooks]
max_consecutive_failures = 1

[[rules]]
id = "gas-critical"
when = 'category == "gas_leak"'
actions = {{ severity = "critical" }}
"""


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "cityhub.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def hub(config_path):
    return StandInHub(config_path, {"greeter": Greeter(), "crashing": Crashing()})


@pytest.fixture
async def client(hub):
    app = create_admin_app(hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin") as client:
        yield client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_health_reports_plugins_and_degrades_on_a_failing_one(client):
    health = (await client.get("/health")).json()
    assert health["plugins"]["crashing"]["last_error"] == "plugin_health: RuntimeError: sensor bus unreachable"
    assert health["status"] == "degraded" and health["failing_plugins"] == ["crashing"]
    assert health["plugins"]["greeter"]["enabled"] is True and health["runtime"]["ok"] is True


async def test_the_front_page_without_a_dashboard_leads_to_the_api_docs(client):
    response = await client.get("/")
    assert response.status_code == 307 and response.headers["location"] == "/docs"


async def test_ready_follows_the_hub(client, hub):
    assert (await client.get("/ready")).status_code == 200
    hub.ready = False
    response = await client.get("/ready")
    assert response.status_code == 503 and response.json() == {"ready": False, "waiting_for": []}


async def test_mutating_endpoints_need_the_token(client):
    assert (await client.post("/plugins/greeter/disable")).status_code == 401
    wrong = await client.post("/plugins/greeter/disable", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert (await client.post("/config/reload")).status_code == 401


async def test_no_configured_token_means_no_mutations(tmp_path):
    path = tmp_path / "cityhub.toml"
    path.write_text("")
    app = create_admin_app(StandInHub(path, {}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin") as client:
        response = await client.post("/config/reload", headers=AUTH)
    assert response.status_code == 403 and "set [admin].token" in response.json()["detail"]


async def test_disable_and_enable_a_plugin_and_its_routes(client):
    assert (await client.get("/plugins/greeter/hello")).json() == {"hello": "你好"}
    disabled = await client.post("/plugins/greeter/disable", headers=AUTH)
    assert disabled.json()["enabled"] is False and disabled.json()["disabled_reason"] == "admin"
    assert (await client.get("/plugins/greeter/hello")).status_code == 404
    listed = {plugin["name"]: plugin for plugin in (await client.get("/plugins")).json()}
    assert listed["greeter"]["enabled"] is False
    assert (await client.post("/plugins/greeter/enable", headers=AUTH)).json()["enabled"] is True
    assert (await client.get("/plugins/greeter/hello")).status_code == 200
    assert (await client.post("/plugins/ghost/enable", headers=AUTH)).status_code == 404


async def test_metrics_include_plugin_collectors(client):
    await client.get("/plugins/greeter/hello")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "greeter_greetings_total 1.0" in response.text
    assert 'cityhub_plugin_calls_total{hook="register_routes",outcome="ok",plugin="greeter"} 1.0' in response.text


async def test_reload_rejects_a_bad_config_and_keeps_the_running_one(client, hub, config_path):
    config_path.write_text(CONFIG + '\n[dedup]\nwindow = "later"\n')
    response = await client.post("/config/reload", headers=AUTH)
    assert response.status_code == 422
    assert response.json() == {
        "applied": False,
        "issues": [
            {
                "file": str(config_path),
                "line": 14,
                "key": "dedup.window",
                "message": "'later' is not a duration: write e.g. '90s', '15m', '1h30m', '2d' or seconds",
            }
        ],
    }
    assert hub.applied == []
    config_path.write_text(CONFIG + "\n[plugins.greeter]\nenabled = false\n")
    response = await client.post("/config/reload", headers=AUTH)
    assert response.json() == {"applied": True, "issues": []}
    assert hub.applied and not hub.plugins.is_enabled("greeter")


async def test_dry_run_delegates_to_the_hub_and_validates_the_event(client):
    event = {"source": "iot_mqtt", "category": "gas_leak", "time": "2026-05-01T08:00:00+08:00"}
    response = await client.post("/dry-run", json=event)
    assert response.status_code == 200 and response.json()["matched_rules"] == ["gas-critical"]
    bad = await client.post("/dry-run", json={**event, "time": "2026-05-01T08:00:00"})
    assert bad.status_code == 422 and "timezone" in bad.text


INCIDENT = "inc-01M83RDEXVGSK35WXJH6BQ1DDC"


@pytest.mark.parametrize(
    ("path", "complaint"),
    [
        (
            f"/incidents/{INCIDENT}%0D%0AINFO forged/close",
            "an incident id contains the control character U+000D at position 30",
        ),
        (f"/incidents/{INCIDENT}%E2%80%A8/close", "control character U+2028"),
        ("/incidents/INC000001/close", "'INC000001' is not an incident id: expected inc-<26-character event id>"),
        (f"/incidents/{INCIDENT}~one/close", "is not an incident id"),
        (f"/incidents/{INCIDENT}{'0' * 300}/close", "is not an incident id"),
        ("/plugins/greeter%1B%5B2J/enable", "a name in the path contains the control character U+001B at position 7"),
        ("/plugins/greeter%0A/disable", "control character U+000A"),
    ],
)
async def test_path_parameters_are_refused_with_what_is_wrong(client, hub, path, complaint):
    response = await client.post(path, json={"reason": "duplicate"}, headers=AUTH)
    assert response.status_code == 422 and complaint in response.json()["detail"][0]["msg"]
    assert hub.close_requests == []


async def test_ops_close_an_incident_of_the_pipelines_shape(client, hub):
    for incident_id in (INCIDENT, f"{INCIDENT}~7", f"{INCIDENT}~7.2"):
        response = await client.post(f"/incidents/{incident_id}/close", json={"reason": "duplicate"}, headers=AUTH)
        assert response.status_code == 202 and response.json()["incident_id"] == incident_id
    assert [incident_id for incident_id, _ in hub.close_requests] == [INCIDENT, f"{INCIDENT}~7", f"{INCIDENT}~7.2"]


async def test_openapi_documents_every_endpoint_and_secrets_never_appear(client):
    spec = (await client.get("/openapi.json")).json()
    assert {
        "/health",
        "/ready",
        "/metrics",
        "/plugins",
        "/plugins/{name}/enable",
        "/plugins/{name}/disable",
        "/config/reload",
        "/dry-run",
        "/plugins/greeter/hello",
    } <= set(spec["paths"])
    for path in ("/health", "/plugins", "/openapi.json", "/metrics"):
        assert TOKEN not in (await client.get(path)).text


async def test_extra_routers_use_the_same_token(hub):
    extra = APIRouter()

    @extra.post("/api/secret-action", dependencies=[__import__("fastapi").Depends(require_token)])
    def secret_action() -> dict[str, bool]:
        return {"done": True}

    app = create_admin_app(hub, routers=[extra])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin") as client:
        assert (await client.post("/api/secret-action")).status_code == 401
        assert (await client.post("/api/secret-action", headers=AUTH)).json() == {"done": True}
