"""Down and up through real hubs: an event entering at the city whose cell belongs to a running district hub
is handled there, exactly once, and the city sees it on the same subjects with the district's incident id."""

from __future__ import annotations

from tests.federation.tier_hubs import cloud_event, count, report, running_hub, send, stored
from tests.waiting import wait_until


async def test_a_12345_report_at_the_city_is_handled_once_by_its_district_and_seen_at_the_city(
    city_and_two_districts, tmp_path
):
    tiers = city_and_two_districts
    city, d104, d105 = [await tiers.connect_hub(code) for code in ("city", "510104", "510105")]
    async with (
        running_hub(tiers, "city", tmp_path / "city") as city_hub,
        running_hub(tiers, "510104", tmp_path / "104"),
        running_hub(tiers, "510105", tmp_path / "105"),
    ):
        await send(city, report(1, "510104-01"), report(2, "510105-02"), report(3, "510108-03"))
        await send(city, report(1, "510104-01"))  # the hotline sends the same work order again
        await send(city, report(4, "510104-01"))  # after it in the hand-off stream: once it is there, so is all before
        await wait_until(lambda: _has(d104, "CITYHUB_EVENTS", 2), "both 510104 reports at the district")
        await wait_until(lambda: _has(d105, "CITYHUB_EVENTS", 1), "the 510105 report at its district")
        await wait_until(lambda: _has(city, "CITYHUB_EVENTS", 4), "every report at the city")

        at_district = [cloud_event(m) for m in await stored(d104, "CITYHUB_EVENTS")]
        assert [e["data"]["source_event_id"] for e in at_district] == ["510104-01-1", "510104-01-4"]
        at_city = {
            cloud_event(m)["data"]["source_event_id"]: (m.subject, cloud_event(m))
            for m in await stored(city, "CITYHUB_EVENTS")
        }
        assert sorted(at_city) == ["510104-01-1", "510104-01-4", "510105-02-2", "510108-03-3"]
        subject, seen = at_city["510104-01-1"]
        assert subject == "cityhub.events.510104.510104-01.gas_leak.high"
        assert seen["incidentid"] == at_district[0]["incidentid"]  # the district's incident, not a city one
        assert at_city["510108-03-3"][0].startswith("cityhub.events.510108.")  # no hub below: the city's own
        incidents_104 = {cloud_event(m)["incidentid"] for m in await stored(d104, "CITYHUB_INCIDENTS")}
        await wait_until(lambda: _incidents_seen(city, incidents_104), "the district's incidents at the city")
        assert await count(city, "CITYHUB_HANDOFF") == 3  # 510104 twice, 510105 once; the re-send not again
        await wait_until(lambda: city_hub.pipeline.counts["handed_down"] == 3, "three hand-offs counted")
    for client in (city, d104, d105):
        await client.close()


async def test_a_district_dead_letters_an_event_located_in_another_district(city_and_two_districts, tmp_path):
    tiers = city_and_two_districts
    district = await tiers.connect_hub("510104")
    async with running_hub(tiers, "510104", tmp_path / "104") as hub:
        await send(district, report(1, "510105-02", source="iot_mqtt"), report(2, "510104-02", source="iot_mqtt"))
        await wait_until(lambda: _has(district, "CITYHUB_EVENTS", 1), "its own event")
        await wait_until(lambda: _has(district, "CITYHUB_DLQ", 1), "the misrouted event in the DLQ")
        [dead] = await stored(district, "CITYHUB_DLQ")
        assert dead.headers["CityHub-Reason-Kind"] == "out_of_scope"
        assert dead.headers["CityHub-Reason"].startswith(
            "located in street 510105-02, outside this hub's scope (district 510104)"
        )
        assert cloud_event(dead)["source_event_id"] == "510105-02-1"
        await wait_until(lambda: hub.pipeline.counts["dlq"] == 1, "the misrouted event counted as dead-lettered")
    await district.close()


async def _incidents_seen(client, incident_ids: set[str]) -> bool:
    return incident_ids <= {cloud_event(m)["incidentid"] for m in await stored(client, "CITYHUB_INCIDENTS")}


async def _has(client, stream: str, expected: int) -> bool:
    return await count(client, stream) >= expected
