"""The leafnode link between a district and the city cut for 30 s under a steady load and restored: the
district keeps working alone meanwhile, the city keeps taking hand-offs for it, and afterwards nothing is lost
and nothing doubled in either direction."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from hub.federation.local import LocalTiers
from tests.federation.link import LeafnodeLink
from tests.federation.tier_hubs import cloud_event, report, running_hub, send, stored
from tests.waiting import wait_until

CUT_S = 30.0
HANDED_PER_S, LOCAL_PER_S = 40, 10  # 12345 reports entering at the city for 510104-01; the district's own sensors


class SteadyLoad:
    """Reports of ``street`` from ``source`` sent to a hub's ingest at ``per_second`` until stopped; the ids
    sent are kept per phase of the test (``phase`` is set by the test as it goes)."""

    def __init__(self, client: Client, street: str, source: str, per_second: float):
        self.client, self.street, self.source, self.interval = client, street, source, 1.0 / per_second
        self.phase = "before"
        self.sent: dict[str, list[str]] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> SteadyLoad:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stopping.set()
        assert self._task is not None
        await self._task

    @property
    def every_id(self) -> list[str]:
        return [event_id for ids in self.sent.values() for event_id in ids]

    async def _run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self._stopping.is_set():
            event = report(n, self.street, source=self.source)
            await send(self.client, event)
            self.sent.setdefault(self.phase, []).append(event.source_event_id)
            n += 1
            await asyncio.sleep(max(0.0, started + n * self.interval - time.monotonic()))


@pytest.fixture
async def city_and_district(tmp_path, hierarchy):
    tiers = LocalTiers(tmp_path / "tiers", hierarchy, ["city", "510104"]).start()
    try:
        await tiers.wait_linked()
        yield tiers
    finally:
        tiers.stop()


@pytest.mark.slow
async def test_nothing_is_lost_or_doubled_across_a_cut_link(city_and_district, tmp_path):
    tiers = city_and_district
    link = LeafnodeLink(tiers, "510104")
    city, district = await tiers.connect_hub("city"), await tiers.connect_hub("510104")
    async with running_hub(tiers, "city", tmp_path / "city"), running_hub(tiers, "510104", tmp_path / "104"):
        handed = SteadyLoad(city, "510104-01", "hotline_12345", HANDED_PER_S).start()
        local = SteadyLoad(district, "510104-02", "iot_mqtt", LOCAL_PER_S).start()
        await wait_until(lambda: _holds(district, "cityhub.events.510104.510104-01.>", 100), "hand-offs arriving")

        link.cut()
        await wait_until(link.is_cut, "the link cut")
        handed.phase = local.phase = "cut"
        await asyncio.sleep(CUT_S)
        local_so_far = list(local.every_id)
        await wait_until(
            lambda: _holds(district, "cityhub.events.510104.510104-02.>", len(local_so_far)),
            "the district handling its own sensors alone",
            timeout=120,
        )
        assert await link.is_cut()
        at_district = await _ids_on(district, "cityhub.events.510104.510104-01.")
        assert not at_district & set(handed.sent["cut"]), "a hand-off crossed the cut link"
        await wait_until(
            lambda: _holds(city, "cityhub.handoff.510104.>", len(handed.every_id), stream="CITYHUB_HANDOFF"),
            "the city keeping the hand-offs for the district",
        )

        link.restore()
        await wait_until(link.is_up, "the link back")
        handed.phase = local.phase = "after"
        await asyncio.sleep(CUT_S / 3)
        await handed.stop()
        await local.stop()

        sentinel = report(len(handed.every_id), "510104-01")  # whatever was handed before it is back at the city
        await send(city, sentinel)
        expected = Counter([*handed.every_id, *local.every_id, sentinel.source_event_id])
        assert all(handed.sent[phase] and local.sent[phase] for phase in ("before", "cut", "after"))
        for client in (district, city):
            await wait_until(
                lambda client=client: _is_last(client, "cityhub.events.510104.510104-01.>", sentinel.source_event_id),
                "the sentinel",
                timeout=240,
            )
            await wait_until(
                lambda client=client: _holds(client, "cityhub.events.>", expected.total()), "every event", timeout=240
            )
            ids = Counter(
                cloud_event(message)["data"]["source_event_id"] for message in await stored(client, "CITYHUB_EVENTS")
            )
            assert ids == expected
    await city.close()
    await district.close()


async def _holds(client: Client, subjects: str, expected: int, stream: str = "CITYHUB_EVENTS") -> bool:
    """Whether ``stream`` holds at least ``expected`` messages on ``subjects``."""
    info = await client.jetstream().stream_info(stream, subjects_filter=subjects)
    return sum((info.state.subjects or {}).values()) >= expected


async def _ids_on(client: Client, prefix: str) -> set[str]:
    """The source event ids of the unified events on the subjects that begin with ``prefix``."""
    return {
        cloud_event(message)["data"]["source_event_id"]
        for message in await stored(client, "CITYHUB_EVENTS")
        if message.subject.startswith(prefix)
    }


async def _is_last(client: Client, subjects: str, event_id: str) -> bool:
    """Whether the last unified event on ``subjects`` is the one of ``event_id``."""
    try:
        message = await client.jetstream().get_last_msg("CITYHUB_EVENTS", subjects)
    except NotFoundError:
        return False
    return cloud_event(message)["data"]["source_event_id"] == event_id
