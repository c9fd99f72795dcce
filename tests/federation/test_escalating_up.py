"""A district's incidents go up to the city by policy — their severity, an order ladder run out, an operator's
request — each once, and the city sees them escalated to it with their history."""

from __future__ import annotations

import httpx

from hub.models import Category
from tests.federation.tier_hubs import ADMIN_TOKEN, cloud_event, report, running_hub, send, stored
from tests.waiting import wait_until

RULES = """
[[rules]]
id = "gas"
when = 'category == "gas_leak"'
actions = { severity = "critical", route = ["gridworker"] }

[[rules]]
id = "elder"
when = 'category == "elder_fall"'
actions = { severity = "high", route = ["gridworker"], escalate_after_s = 1 }
"""


async def test_severity_an_exhausted_ladder_and_an_operator_each_send_an_incident_up_once(
    city_and_two_districts, tmp_path
):
    tiers = city_and_two_districts
    city, district = await tiers.connect_hub("city"), await tiers.connect_hub("510104")
    async with (
        running_hub(tiers, "city", tmp_path / "city", admin=True) as city_hub,
        running_hub(tiers, "510104", tmp_path / "104", RULES, admin=True) as hub,
    ):
        gas = [report(n, "510104-01", source="iot_mqtt") for n in (1, 2)]  # one critical incident
        fall = report(3, "510104-02", source="eldercare", category=Category.ELDER_FALL)
        noise = report(4, "510104-01", source="citizen_report", category=Category.NOISE)
        await send(district, *gas, fall, noise)
        await wait_until(lambda: _escalated_up(city, 2), "the gas leak and the fall escalated to the city", timeout=120)

        noise_incident = await _incident_of(district, "510104-01-4")
        async with httpx.AsyncClient(base_url=hub.admin_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
            answer = await api.post(f"/incidents/{noise_incident}/escalate")
            again = await api.post(f"/incidents/{noise_incident}/escalate")
            unknown = await api.post("/incidents/inc-01M83RDEXVGSK35WXJH6BQ1DDC/escalate")
        assert answer.json() == {"incident_id": noise_incident, "escalated": True}
        assert again.json()["escalated"] is False
        assert unknown.status_code == 409 and "no such incident here" in unknown.json()["detail"]
        await wait_until(lambda: _escalated_up(city, 3), "the operator's escalation at the city")

        up = {
            change["data"]["id"]: change["data"]
            for change in await _changes(city)
            if change["data"].get("escalated_to")
        }
        causes = sorted(incident["escalation_cause"] for incident in up.values())
        assert causes == ["deadline", "operator", "severity"] and {i["escalated_to"] for i in up.values()} == {"city"}
        for incident_id in up:  # the city holds each one's history: it opened before it went up
            assert [c["type"] for c in await _changes(city) if c["incidentid"] == incident_id][0].endswith("opened")
        own = [c for c in await _changes(district) if c["data"].get("escalated_to")]
        assert len(own) == 3  # the gas leak's second report did not send it again

        async with httpx.AsyncClient(base_url=city_hub.admin_url) as api:  # the city's dashboard shows them so
            tier = (await api.get("/api/dashboard/config")).json()["tier"]
            await wait_until(lambda: _dashboard_shows_up(api, set(up)), "the escalations on the city's dashboard")
        assert tier == {"scope": "city", "parent": None, "children": ["510104", "510105"]}
    await city.close()
    await district.close()


async def _dashboard_shows_up(api: httpx.AsyncClient, incident_ids: set[str]) -> bool:
    listed = (await api.get("/api/incidents", params={"status": "all"})).json()["incidents"]
    return {incident["id"] for incident in listed if incident["escalated_to"] == "city"} == incident_ids


async def _changes(client) -> list[dict]:
    return [cloud_event(message) for message in await stored(client, "CITYHUB_INCIDENTS")]


async def _escalated_up(client, expected: int) -> bool:
    return sum(bool(change["data"].get("escalated_to")) for change in await _changes(client)) >= expected


async def _incident_of(client, source_event_id: str) -> str:
    events = [cloud_event(message) for message in await stored(client, "CITYHUB_EVENTS")]
    return next(event["incidentid"] for event in events if event["data"]["source_event_id"] == source_event_id)
