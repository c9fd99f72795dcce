"""The dashboard router inside the real admin app, served by uvicorn, spoken to over HTTP with httpx."""

from __future__ import annotations

import httpx
import orjson
from stream_samples import TOKEN, grid_collection, make_incident, make_order, make_report

from hub.asyncapi import asyncapi_document
from hub.models import Category, IncidentState, Severity
from tests.waiting import wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GAS_ID = "inc-01M83RDEXVGSK35WXJH6BQ1DDC"


async def test_page_and_static_files_are_served(dashboard):
    async with httpx.AsyncClient(base_url=dashboard.url) as client:
        page = await client.get("/dashboard")
        assert page.status_code == 200 and "/dashboard/static/app.js" in page.text
        script = await client.get("/dashboard/static/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert (await client.get("/dashboard/static/..%2F__init__.py")).status_code == 404
        assert (await client.get("/dashboard/static/app.js%0D")).status_code == 422
        assert (await client.get("/api/dashboard/config")).json() == {
            "tile_url": None,
            "tier": {"scope": "city", "parent": None, "children": []},
        }


async def test_the_admin_ports_front_page_leads_to_the_dashboard(dashboard):
    async with httpx.AsyncClient(base_url=dashboard.url, follow_redirects=True) as client:
        page = await client.get("/")
    assert page.status_code == 200 and page.url.path == "/dashboard" and "/dashboard/static/app.js" in page.text


async def test_incident_list_filters_and_incident_page(dashboard):
    gas = make_incident(
        1, category=Category.GAS_LEAK, severity=Severity.CRITICAL, sources=["iot_mqtt", "hotline_12345"]
    )
    gas.id = GAS_ID  # the page's path takes only ids of the pipeline's shape
    noise = make_incident(2, cell=20, category=Category.NOISE, severity=Severity.LOW, sources=["hotline_12345"])
    for incident in (gas, noise):
        await dashboard.writer.incident(incident)
    await dashboard.writer.report(gas, make_report(gas, 1, "iot_mqtt", 0))
    await dashboard.writer.order(make_order(gas))
    await wait_until(lambda: len(dashboard.state.incidents()) == 2 and dashboard.state.messages == 4, "the stream")

    async with httpx.AsyncClient(base_url=dashboard.url) as client:
        every = (await client.get("/api/incidents")).json()
        assert every["total"] == 2
        critical = (await client.get("/api/incidents", params={"severity": "critical"})).json()
        assert [i["id"] for i in critical["incidents"]] == [GAS_ID]
        in_qingyang = (
            await client.get("/api/incidents", params={"district": "青羊区", "source": "hotline_12345"})
        ).json()
        assert [i["id"] for i in in_qingyang["incidents"]] == ["INC000002"]
        assert (await client.get("/api/incidents", params={"status": "closed"})).json()["total"] == 0
        assert len((await client.get("/api/incidents", params={"limit": 1})).json()["incidents"]) == 1

        page = (await client.get(f"/api/incidents/{GAS_ID}")).json()
        assert page["summary"]["sources"] == ["iot_mqtt", "hotline_12345"]
        assert [r["source"] for r in page["reports"]] == ["iot_mqtt"]
        assert page["orders"][0]["target"] == "gridworker" and page["orders"][0]["status"] == "created"
        missing = await client.get(f"/api/incidents/{GAS_ID}~2")
        assert missing.status_code == 404 and f"{GAS_ID}~2" in missing.json()["detail"]
        not_an_id = await client.get("/api/incidents/NOPE%0A")
        assert not_an_id.status_code == 422 and "U+000A" in not_an_id.json()["detail"][0]["msg"]


async def test_grids_are_the_configured_layer_simplified_for_drawing(dashboard):
    async with httpx.AsyncClient(base_url=dashboard.url) as client:
        drawn = (await client.get("/api/grids")).json()
    source = grid_collection()
    assert len(drawn["features"]) == len(source["features"]) == 42
    first = drawn["features"][0]
    assert first["properties"] == {"id": "510104", "name": "锦江区", "level": "district", "layer": "admin"}
    assert len(first["geometry"]["coordinates"][0]) <= len(source["features"][0]["geometry"]["coordinates"][0])


async def test_figures_and_stream_follow_the_unified_stream(dashboard):
    async with httpx.AsyncClient(base_url=dashboard.url, timeout=30) as client:
        async with client.stream("GET", "/api/stream") as response:
            events = _sse_events(response)
            first = await anext(events)
            assert first[0] == "snapshot" and first[1]["incidents"] == []
            await dashboard.writer.incident(make_incident(7, state=IncidentState.ACKNOWLEDGED))
            kind, payload = await anext(events)
            while kind != "changes":
                kind, payload = await anext(events)
            assert [i["id"] for i in payload["incidents"]] == ["INC000007"]
        figures = (await client.get("/api/figures")).json()
    assert figures["open"] == 1
    assert figures["open_by_cell"] == {"510104": 1, "510104001": 1, "51010400101": 1}


async def _sse_events(response):
    kind = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, orjson.loads(line.removeprefix("data: "))


async def test_plugin_panel_and_token(dashboard):
    async with httpx.AsyncClient(base_url=dashboard.url) as client:
        plugins = {p["name"]: p for p in (await client.get("/api/plugins")).json()}
        assert plugins["iot_mqtt"]["details"] == {"events_in": 42, "connected": True}
        assert "device registry unreachable" in plugins["eldercare"]["last_error"]

        assert (await client.get("/api/dashboard/token")).status_code == 401
        assert (await client.get("/api/dashboard/token", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await client.get("/api/dashboard/token", headers=AUTH)).status_code == 204

        assert (await client.post("/plugins/iot_mqtt/disable")).status_code == 401
        assert (await client.post("/plugins/iot_mqtt/disable", headers=AUTH)).json()["enabled"] is False
        plugins = {p["name"]: p for p in (await client.get("/api/plugins")).json()}
        assert plugins["iot_mqtt"]["enabled"] is False


async def test_asyncapi_document_is_served(dashboard):
    async with httpx.AsyncClient(base_url=dashboard.url) as client:
        assert (await client.get("/asyncapi.json")).json() == asyncapi_document()


async def test_category_labels_and_the_asyncapi_enum_come_from_the_hubs_taxonomy(dashboard):
    async with httpx.AsyncClient(base_url=dashboard.url) as client:
        categories = (await client.get("/api/categories")).json()
        enum = (await client.get("/asyncapi.json")).json()["components"]["schemas"]["Category"]["enum"]
    assert {
        "name": "gas_leak",
        "label_zh": "燃气泄漏",
        "label_en": "Gas leak",
        "default_severity": "medium",
        "merge_group": None,
    } in categories
    assert enum == [category["name"] for category in categories]
