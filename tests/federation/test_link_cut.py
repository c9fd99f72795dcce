"""The leafnode link between a district and the city cut under load and restored: the district keeps working
alone meanwhile, and afterwards nothing is lost and nothing doubled in either direction."""

from __future__ import annotations

import pytest

from hub.federation.local import LocalTiers
from tests.federation.link import CuttableLink
from tests.federation.tier_hubs import cloud_event, count, report, running_hub, send, stored
from tests.waiting import wait_until

BEFORE, DURING, LOCAL = 200, 300, 100


@pytest.fixture
async def linked_through_a_cuttable_line(tmp_path, hierarchy):
    tiers = LocalTiers(tmp_path / "tiers", hierarchy, ["city", "510104"])
    city_leafnode_port = tiers.deployment.placements["city"].leafnode_port
    link = CuttableLink(city_leafnode_port)
    CuttableLink.route(tiers.servers["510104"].config_file, city_leafnode_port, link.port)
    await link.restore()
    tiers.start()
    try:
        await tiers.wait_linked()
        yield tiers, link
    finally:
        tiers.stop()
        await link.cut()


async def test_nothing_is_lost_or_doubled_across_a_cut_link(linked_through_a_cuttable_line, tmp_path):
    tiers, link = linked_through_a_cuttable_line
    city, district = await tiers.connect_hub("city"), await tiers.connect_hub("510104")
    handed = [report(n, "510104-01") for n in range(BEFORE + DURING)]
    local = [report(n, "510104-02", source="iot_mqtt") for n in range(LOCAL)]
    async with running_hub(tiers, "city", tmp_path / "city"), running_hub(tiers, "510104", tmp_path / "104"):
        await send(city, *handed[:BEFORE])
        await wait_until(lambda: _has(district, "CITYHUB_EVENTS", BEFORE // 2), "hand-offs arriving")
        await link.cut()
        await wait_until(lambda: link.is_cut, "the link cut")
        await send(city, *handed[BEFORE:])         # kept in the city's hand-off stream meanwhile
        await send(district, *local)               # the district's own sensors
        await wait_until(lambda: _on(district, "cityhub.events.510104.510104-02.>", LOCAL), "the district working alone")
        await link.restore()
        total = BEFORE + DURING + LOCAL
        await wait_until(lambda: _has(district, "CITYHUB_EVENTS", total), "every event at the district", timeout=240)
        await wait_until(lambda: _has(city, "CITYHUB_EVENTS", total), "every event at the city", timeout=240)
        sentinel = report(BEFORE + DURING, "510104-01")  # whatever came before it in both streams is there now
        await send(city, sentinel)
        await wait_until(lambda: _has(city, "CITYHUB_EVENTS", total + 1), "the sentinel at the city", timeout=240)

        for client in (district, city):
            ids = [cloud_event(m)["data"]["source_event_id"] for m in await stored(client, "CITYHUB_EVENTS")]
            assert len(ids) == total + 1 and len(set(ids)) == total + 1
    await city.close()
    await district.close()


async def _has(client, stream: str, expected: int) -> bool:
    return await count(client, stream) >= expected


async def _on(client, subjects: str, expected: int) -> bool:
    """Whether the events stream holds ``expected`` messages on ``subjects``."""
    info = await client.jetstream().stream_info("CITYHUB_EVENTS", subjects_filter=subjects)
    return sum((info.state.subjects or {}).values()) >= expected
