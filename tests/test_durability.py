"""The hard cases: kill -9 of the hub mid-stream, a nats-server restart mid-stream, a storm of bad input.

The crash test runs the hub as ``cityhub run`` does, in its own process, kills it with SIGKILL while it is
working through 100,000 ingested events, restarts it, and compares the result with an uninterrupted run of
the same pipeline over the same input (the oracle): every event exactly once in the unified stream, and
every event in the same incident.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import nats
import orjson
import pytest

from hub import topology
from hub.app import build_engines
from hub.availability import terms
from hub.config import StreamLimits, StreamsConfig, load_config
from hub.connector_runtime import encode_ingest
from hub.metrics import Metrics
from hub.models import Category, CoordSystem, Event, Location
from hub.nats.publisher import Publisher
from hub.nats.streams import ensure_streams
from hub.pipeline import (
    PIPELINE_CONSUMER,
    BatchProcessor,
    Engines,
    IngestMessage,
    Pipeline,
    PipelineOptions,
    PipelineState,
)
from hub.plugins import ALLOW_LIST_ENV
from tests.pipeline_support import INSIDE_GCJ02, T0, engines, hub_toml, read_stream, stream_count

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = [Category.GAS_LEAK, Category.WATER_LEAK, Category.NOISE, Category.FIRE]

GAS_RULE = """
[[rules]]
id = "gas"
when = 'category == "gas_leak"'
actions = { severity = "critical", route = ["gridworker"] }
"""


def city_events(count: int, places: int) -> list[Event]:
    """``count`` reports spread over ``places`` spots about 300 m apart, so most of them merge; every 50th
    is a re-delivery of an earlier report (dropped by dedup)."""
    return [city_event(n, places) for n in range(count)]


def city_event(n: int, places: int) -> Event:
    """The ``n``-th report of :func:`city_events`."""
    lon0, lat0 = INSIDE_GCJ02
    original = n - 7 if n % 50 == 49 else n
    place = original % places
    return Event(
        source="iot_mqtt",
        source_event_id=f"r-{original}",
        category=CATEGORIES[place % len(CATEGORIES)],
        time=T0 + timedelta(milliseconds=10 * original),
        location=Location(lon=lon0 + (place % 40) * 0.003, lat=lat0 + (place // 40) * 0.003, crs=CoordSystem.GCJ02),
    )


async def publish_events(nats_url: str, events: list[Event], chunk: int = 2000) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    for start in range(0, len(events), chunk):
        futures = []
        for index, event in enumerate(events[start : start + chunk], start):
            msg_id, raw = encode_ingest(event)
            # Distinct msg ids even for re-deliveries: the pipeline's own dedup must catch them.
            futures.append(
                await js.publish_async(
                    topology.ingest_subject(event.source), raw, headers={topology.HEADER_MSG_ID: f"{msg_id}@{index}"}
                )
            )
        await asyncio.gather(*futures)
    await nc.close()


def oracle(events: list[Event], pipeline_engines: Engines) -> dict[str, str]:
    """event id → incident id from one uninterrupted pass of the same pipeline logic."""
    processor = BatchProcessor(pipeline_engines, PipelineOptions())
    state = PipelineState.fresh(processor.engines)
    assignment = {}
    received = time.time()
    raws = [
        IngestMessage(seq, topology.ingest_subject(e.source), encode_ingest(e)[1], received)
        for seq, e in enumerate(events, 1)
    ]
    for start in range(0, len(raws), 1000):
        result = processor.process(state, raws[start : start + 1000])
        for output in result.outputs:
            if output.subject.startswith("cityhub.events."):
                envelope = orjson.loads(output.data)
                assignment[envelope["id"]] = envelope["incidentid"]
    return assignment


def start_hub(config: Path) -> subprocess.Popen[bytes]:
    code = f"from hub.app import run; run({str(config)!r})"
    environment = {**os.environ, ALLOW_LIST_ENV: "redaction"}  # no connectors: they listen on fixed ports
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=open(config.with_suffix(".log"), "ab"),
        env=environment,
    )


async def consumer_done(nats_url: str) -> bool:
    """True when the pipeline has acknowledged everything in the ingest stream."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(topology.INGEST_STREAM)).state.last_seq
        acknowledged = await terms.acknowledged(js, topology.INGEST_STREAM, PIPELINE_CONSUMER)
    except nats.js.errors.NotFoundError:
        return False
    finally:
        await nc.close()
    return last > 0 and acknowledged >= last


async def unified_assignment(nats_url: str) -> list[tuple[str, str]]:
    return [
        (orjson.loads(m.data)["id"], orjson.loads(m.data)["incidentid"])
        for m in await read_stream(nats_url, topology.EVENTS_STREAM)
    ]


@pytest.mark.slow
async def test_kill_9_mid_stream_then_restart_gives_every_event_once_and_the_same_incidents(nats_url, tmp_path):
    events = city_events(100_000, places=2_000)
    config = tmp_path / "cityhub.toml"
    config.write_text(hub_toml(nats_url, GAS_RULE, pipeline="batch_size = 500"))
    await publish_events(nats_url, events)
    expected = oracle(events, build_engines(load_config(config)))

    hub = start_hub(config)
    try:
        async with asyncio.timeout(120):
            while await stream_count(nats_url, topology.EVENTS_STREAM) < 25_000:
                await asyncio.sleep(0.05)
        os.kill(hub.pid, signal.SIGKILL)
        hub.wait()
        killed_at = await stream_count(nats_url, topology.EVENTS_STREAM)
        assert killed_at < len(expected), "the hub finished before it could be killed"

        hub = start_hub(config)
        async with asyncio.timeout(180):
            while not await consumer_done(nats_url):
                await asyncio.sleep(0.2)
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=30)

    unified = await unified_assignment(nats_url)
    assert len(unified) == len(expected) == len(events) - len(events) // 50
    assert not [event_id for event_id, times in Counter(e for e, _ in unified).items() if times > 1]
    assert dict(unified) == expected


async def test_nats_server_restart_mid_stream_loses_nothing(nats_server, nats_url):
    events = city_events(20_000, places=500)
    await publish_events(nats_url, events[:15_000])
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    pipeline = Pipeline(nc, engines(), Metrics(), PipelineOptions(batch_size=500, fetch_timeout_s=0.05))
    await pipeline.start()
    try:
        async with asyncio.timeout(60):
            while pipeline.counts["in"] < 3_000:
                await asyncio.sleep(0.01)
        await asyncio.to_thread(nats_server.stop)
        await asyncio.sleep(1.0)
        nats_server.launch()
        await asyncio.to_thread(nats_server.wait_listening)
        await publish_events(nats_url, events[15_000:])
        async with asyncio.timeout(90):
            while not await consumer_done(nats_url):
                await asyncio.sleep(0.2)
    finally:
        await pipeline.stop()
        await nc.close()

    unified = await unified_assignment(nats_url)
    assert len(unified) == len({e for e, _ in unified}) == len(events) - len(events) // 50
    assert dict(unified) == oracle(events, engines())


async def test_storm_of_malformed_messages_all_in_dlq_and_hub_healthy(nats_url):
    good = city_events(1_000, places=100)
    storm_kinds = [
        b"\x00\x01 binary",
        b"not json at all",
        b"[]",
        b'{"source": "iot_mqtt"}',
        b'"a string"',
        orjson.dumps({"source": "iot_mqtt", "category": "ufo", "time": "2026-05-01T08:00:00Z"}),
        orjson.dumps({"source": "iot_mqtt", "category": "fire", "time": "2026-05-01T08:00:00"}),  # naive time
        orjson.dumps(
            {
                "source": "iot_mqtt",
                "category": "fire",
                "time": "2026-05-01T08:00:00Z",
                "location": {"lon": 10.0, "lat": 95.0},
            }
        ),
        b"{" * 300_000,
    ]
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    futures = []
    for n in range(20_000):
        futures.append(await js.publish_async("cityhub.ingest.iot_mqtt", storm_kinds[n % len(storm_kinds)]))
        if n % 20 == 0:
            msg_id, raw = encode_ingest(good[n // 20])
            futures.append(await js.publish_async("cityhub.ingest.iot_mqtt", raw))
    await asyncio.gather(*futures)
    pipeline = Pipeline(nc, engines(), Metrics(), PipelineOptions(batch_size=500, fetch_timeout_s=0.05))
    await pipeline.start()
    async with asyncio.timeout(90):
        while pipeline.counts["in"] < 21_000:
            await asyncio.sleep(0.05)
    assert pipeline.running
    await pipeline.stop()
    await nc.close()

    assert pipeline.counts["dlq"] == 20_000
    assert await stream_count(nats_url, topology.DLQ_STREAM) == 20_000
    assert await stream_count(nats_url, topology.EVENTS_STREAM) == len({e.source_event_id for e in good})


async def test_outputs_stored_before_an_outage_longer_than_the_duplicate_window_are_stored_once(nats_url):
    """The crashed hub stored the outputs of its last batch and never acknowledged it, and came back after the
    output streams' duplicate window (one second here) had passed: processing that input again stores nothing
    twice."""
    window = StreamLimits(duplicate_window=timedelta(seconds=1))
    streams = StreamsConfig(ingest=window, events=window, incidents=window, dispatch=window, dlq=window)
    events = city_events(300, places=40)
    await publish_events(nats_url, events)
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream(), streams)
    stored = [
        IngestMessage(msg.metadata.sequence.stream, msg.subject, msg.data, msg.metadata.timestamp.timestamp())
        for msg in await read_stream(nats_url, topology.INGEST_STREAM)
    ]
    crashed = BatchProcessor(engines(), PipelineOptions()).process(PipelineState.fresh(engines()), stored[:200])
    await Publisher(nc).publish_until_stored(crashed.outputs)
    await asyncio.sleep(1.5)  # the outage outlasts the duplicate window
    pipeline = Pipeline(nc, engines(), Metrics(), PipelineOptions(batch_size=100, fetch_timeout_s=0.05))
    await pipeline.start()
    try:
        async with asyncio.timeout(60):
            while not await consumer_done(nats_url):
                await asyncio.sleep(0.05)
    finally:
        await pipeline.stop()
        await nc.close()
    unified = await unified_assignment(nats_url)
    assert len(unified) == len({e for e, _ in unified}) == len(events) - len(events) // 50
    assert dict(unified) == oracle(events, engines())
