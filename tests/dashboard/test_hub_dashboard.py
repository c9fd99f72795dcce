"""End to end: events into ingest, the real Hub (pipeline, geofence, rules) writes the unified stream, and
the dashboard the Hub serves shows the merged incident with its reports, grid path, rules and orders."""

from __future__ import annotations

import httpx
import pytest

from hub.app import Hub
from tests.pipeline_support import event, hub_toml, ingest_item, publish_raw
from tests.waiting import wait_until

RULES = """
[[rules]]
id = "gas-critical"
when = 'category == "gas_leak"'
actions = { severity = "critical", route = ["gridworker"], escalate_after_s = 600 }
"""


@pytest.fixture
async def hub(tmp_path, nats_url):
    path = tmp_path / "cityhub.toml"
    path.write_text(hub_toml(nats_url, RULES))
    running = Hub.from_file(path)
    await running.start(connectors=False)
    yield running
    await running.stop()


async def test_the_hub_serves_the_dashboard_of_its_own_stream(hub, nats_url):
    sensor, caller = event(1, source="iot_mqtt"), event(2, source="hotline_12345", offset_m=20)
    await publish_raw(nats_url, [ingest_item(sensor), ingest_item(caller)])
    # The events happened long ago, so the 10-minute deadline has passed: the hub re-dispatches at once.
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
    assert [(order["target"], order["attempt"]) for order in page["orders"]][:2] == [("gridworker", 1), ("gridworker", 2)]
    assert page["orders"][0]["superseded"] and not page["orders"][-1]["superseded"]
    assert summary["escalation_level"] >= 1 and summary["deadline"] == page["orders"][-1]["deadline"]
    assert {feature["properties"]["id"] for feature in grids["features"]} >= {cell["id"] for cell in page["incident"]["grid_path"]}


def _redispatched_with_two_reports(hub) -> bool:
    shown = hub.dashboard.incidents()
    return bool(shown) and shown[0]["reports"] == 2 and shown[0]["escalation_level"] >= 1
