"""A clean namespace, seen from outside the running demo: every message under ``cityhub.>`` outside the raw
prefix ``cityhub.raw.>`` is a CloudEvent the official SDK parses (structured JSON mode, or binary mode for dead
letters), and its ``source`` names the system it came from; the MQTT devices' raw traffic is under the raw
prefix."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import nats
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1.http import from_http

from hub import topology, wire
from tests.pipeline_support import read_stream
from tests.test_demo import SEVEN_SOURCES, WAIT_S, DemoProcess, _cityhub
from tests.waiting import wait_until

SYSTEMS = {wire.source_uri(name) for name in SEVEN_SOURCES | set(topology.CLOSE_REQUESTERS)} | {wire.HUB_SOURCE}


def cloudevent_source(subject: str, data: bytes, headers: dict[str, str] | None) -> str:
    """The ``source`` of a message as the official CloudEvents SDK reads it (raises when it is no CloudEvent)."""
    if headers and "ce-specversion" in headers:
        return from_http(headers, data)["source"]  # binary mode: dead letters keep the refused bytes as they were
    return JSONFormat().read(None, data).get_attributes()["source"]


class NamespaceWatch:
    """Every message seen under ``cityhub.>``: raw ones counted, the others' CloudEvents sources by subject."""

    def __init__(self) -> None:
        self.raw = 0
        self.sources: Counter[str] = Counter()
        self.unparsed: list[tuple[str, str]] = []

    def see(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        if subject.startswith(f"{topology.RAW_PREFIX}."):
            self.raw += 1
            return
        try:
            self.sources[cloudevent_source(subject, data, headers)] += 1
        except Exception as exc:  # noqa: BLE001 - what the SDK says is the finding
            self.unparsed.append((subject, f"{type(exc).__name__}: {exc}"))

    async def on_message(self, message: Any) -> None:
        self.see(message.subject, message.data, message.headers)


@pytest.mark.timeout(300)
async def test_every_message_under_cityhub_outside_the_raw_prefix_is_a_cloudevent_naming_its_system():
    process = await asyncio.create_subprocess_exec(
        _cityhub(),
        "demo",
        "--for",
        "280s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    demo = DemoProcess(process)
    live = NamespaceWatch()
    try:
        nats_url = await demo.banner_value("NATS")
        nc = await nats.connect(nats_url)
        try:
            await nc.subscribe(f"{topology.PREFIX}.>", cb=live.on_message)
            seen_systems = lambda: {wire.source_uri(name) for name in SEVEN_SOURCES} <= set(live.sources)  # noqa: E731
            await wait_until(
                lambda: seen_systems() and live.raw > 0, "events of all seven systems and raw MQTT", WAIT_S
            )
        finally:
            await nc.close()
        stored = NamespaceWatch()  # what the streams kept, from before the subscription too
        for stream in (topology.INGEST_STREAM, *topology.OUTPUT_STREAMS):  # the demo is one hub: no tier streams
            for message in await read_stream(nats_url, stream):
                stored.see(message.subject, message.data, message.headers)
        assert await demo.ctrl_c() == 0
    finally:
        await demo.kill()

    for watch in (live, stored):
        assert watch.unparsed == []
        assert set(watch.sources) <= SYSTEMS, set(watch.sources) - SYSTEMS
    assert stored.raw == 0  # raw device traffic is not stored in CityHub's streams
