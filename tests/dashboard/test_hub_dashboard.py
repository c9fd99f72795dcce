"""End to end: events into ingest, the real Hub (pipeline, geofence, rules) writes the unified stream, and
the dashboard the Hub serves shows the merged incident with its reports, grid path, rules and orders."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import nats
import pytest

from hub.app import Hub
from hub.dashboard.state import WATCHED_STREAMS
from hub.models import Category
from tests.pipeline_support import event, hub_toml, ingest_item, publish_raw, stream_count
from tests.waiting import wait_until

RULES = """
[[rules]]
id = "gas-critical"
when = 'category == "gas_leak"'
actions = { severity = "critical", route = ["gridworker"], escalate_after_s = %d }
"""


@pytest.fixture
async def hub(request, tmp_path, nats_url):
    """A hub whose gas rule escalates after ``escalate_after_s`` (the test's ``hub`` parameter; 600 s by default)."""
    path = tmp_path / "cityhub.toml"
    path.write_text(hub_toml(nats_url, RULES % getattr(request, "param", 600)))
    running = Hub.from_file(path)
    await running.start(connectors=False)
    yield running
    await running.stop()


@pytest.mark.parametrize("hub", [1], indirect=True)
async def test_the_hub_serves_the_dashboard_of_its_own_stream(hub, nats_url):
    sensor, caller = event(1, source="iot_mqtt"), event(2, source="hotline_12345", offset_m=20)
    await publish_raw(nats_url, [ingest_item(sensor), ingest_item(caller)])
    # The deadline counts from the dispatch: one second later the hub re-dispatches.
    await wait_until(lambda: _redispatched_with_two_reports(hub), "the merged, re-dispatched incident", timeout=60)

    async with httpx.AsyncClient(base_url=hub.admin_url) as client:
        assert (await client.get("/dashboard")).status_code == 200
        assert (await client.get("/api/role")).json() == {"role": "active", "active_admin_url": hub.admin_url}
        (summary,) = (await client.get("/api/incidents")).json()["incidents"]
        page = (await client.get(f"/api/incidents/{summary['id']}")).json()
        grids = (await client.get("/api/grids")).json()
    assert summary["district"] == "510104" and summary["severity"] == "critical"
    assert [report["source"] for report in page["reports"]] == ["iot_mqtt", "hotline_12345"]
    assert page["incident"]["matched_rules"] == ["gas-critical"]
    assert [(order["target"], order["attempt"]) for order in page["orders"]][:2] == [
        ("gridworker", 1),
        ("gridworker", 2),
    ]
    assert page["orders"][0]["superseded"] and not page["orders"][-1]["superseded"]
    assert summary["escalation_level"] >= 1 and summary["deadline"] == page["orders"][-1]["deadline"]
    assert {feature["properties"]["id"] for feature in grids["features"]} >= {
        cell["id"] for cell in page["incident"]["grid_path"]
    }


def _redispatched_with_two_reports(hub) -> bool:
    shown = hub.dashboard.incidents()
    return bool(shown) and shown[0]["reports"] == 2 and shown[0]["escalation_level"] >= 1


async def test_a_new_incident_reaches_the_dashboard_after_a_nats_restart_and_after_its_consumer_is_deleted(
    hub, nats_url, restart_nats
):
    async with httpx.AsyncClient(base_url=hub.admin_url) as client:
        await _open_incident(client, nats_url, 1, Category.GAS_LEAK)
        await restart_nats()
        await _open_incident(client, nats_url, 2, Category.FIRE)
        await wait_until(lambda: _all_following(client), "every dashboard consumer re-created after the restart")
        consumers = (await client.get("/health")).json()["runtime"]["dashboard"]["consumers"]
        assert any(consumer["recoveries"] and consumer["last_error"] for consumer in consumers)

        nc = await nats.connect(nats_url)
        for consumer in consumers:
            await nc.jetstream().delete_consumer(consumer["stream"], consumer["consumer"])
        await nc.close()
        incident = await _open_incident(client, nats_url, 3, Category.SMOKE)

        stored = sum([await stream_count(nats_url, stream) for stream in WATCHED_STREAMS])
        await wait_until(lambda: hub.dashboard.messages >= stored, "every stored message applied by the dashboard")
        assert hub.dashboard.messages == stored  # none twice
        assert [report["source_event_id"] for report in incident["reports"]] == ["e-3"]
        assert await _all_following(client)


async def _all_following(client: httpx.AsyncClient) -> bool:
    consumers = (await client.get("/health")).json()["runtime"]["dashboard"]["consumers"]
    return all(consumer["following"] for consumer in consumers)


async def _open_incident(client: httpx.AsyncClient, nats_url: str, number: int, category: Category) -> dict:
    """Publish a report that opens a new incident; wait until the dashboard's API serves that incident."""
    report = event(number, category=category).model_copy(update={"time": datetime.now(UTC)})
    await publish_raw(nats_url, [ingest_item(report)])
    found: dict = {}

    async def served() -> bool:
        listed = (await client.get("/api/incidents", params={"category": category.value})).json()["incidents"]
        if listed:
            found.update((await client.get(f"/api/incidents/{listed[0]['id']}")).json())
        return bool(found.get("reports"))  # the incident's update and its report come from two streams

    await wait_until(served, f"the {category.value} incident on /api/incidents/<id>")
    return found
