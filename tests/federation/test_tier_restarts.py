"""Hand-offs across restarts of either side: the district's and then the city's nats-server restart while events
entering at the city are handed down; afterwards each is at the district and back at the city exactly once."""

from __future__ import annotations

import asyncio

from tests.federation.tier_hubs import cloud_event, count, report, running_hub, send, stored
from tests.waiting import wait_until

TOTAL = 300


async def restart(server) -> None:
    await asyncio.to_thread(server.stop)
    server.launch()  # from the event loop's thread, which lives as long as the test
    await asyncio.to_thread(server.wait_listening)


async def test_hand_offs_survive_restarts_of_either_sides_server(city_and_two_districts, tmp_path):
    tiers = city_and_two_districts
    handed = [report(n, "510104-01") for n in range(TOTAL)]
    async with running_hub(tiers, "city", tmp_path / "city"), running_hub(tiers, "510104", tmp_path / "104"):
        city = await tiers.connect_hub("city")
        await send(city, *handed[: TOTAL // 3])
        await city.close()
        await restart(tiers.servers["510104"])
        city = await tiers.connect_hub("city")
        await send(city, *handed[TOTAL // 3 : 2 * TOTAL // 3])
        await city.close()
        await restart(tiers.servers["city"])
        city, district = await tiers.connect_hub("city"), await tiers.connect_hub("510104")
        await send(city, *handed[2 * TOTAL // 3 :])
        await wait_until(lambda: _has(district, TOTAL), "every hand-off at the district", timeout=240)
        await send(city, report(TOTAL, "510104-01"))  # a sentinel: what came before it is there once it is
        await wait_until(lambda: _has(city, TOTAL + 1), "every event back at the city", timeout=240)
        for client in (district, city):
            ids = [cloud_event(m)["data"]["source_event_id"] for m in await stored(client, "CITYHUB_EVENTS")]
            assert len(ids) == TOTAL + 1 and len(set(ids)) == TOTAL + 1
        await city.close()
        await district.close()


async def _has(client, expected: int) -> bool:
    return await count(client, "CITYHUB_EVENTS") >= expected
