"""End-to-end pipeline throughput through JetStream, beside a nats-py passthrough on the same server.

Both read the same 30,000 canonical events (CloudEvents, 2,000 places around Chengdu, every 50th a
re-delivery) from the ingest stream with a durable pull consumer and :class:`hub.nats.fetcher.Fetcher` (batch
500, the next batch requested as soon as one arrives, AckAll acknowledged once per batch after the outputs
are stored) and publish with :class:`hub.nats.publisher.Publisher` (JetStream fast
ingest) and ``Nats-Msg-Id``:

- peer: a passthrough with no processing — fetch, ``orjson.loads``, republish each message, ack — on nats-py
  with the hub's own fetch and publish (the issue's "same consumer, ack and publish settings"); the same
  passthrough with nats-py's per-message ``publish_async`` is a sanity row;
- cityhub: the real :class:`hub.pipeline.Pipeline` — decode + validate, GCJ-02 → WGS-84, dedup, geofence over
  the shipped Chengdu grids (2,080 cells), rules, incident merging, the redaction plugin with the default
  policy, then the unified event, the incident update and dispatch orders.

The note of the CityHub row gives the ratio to the passthrough and p50/p99 end-to-end latency (ingest
stored → unified event stored, both server timestamps) with the publisher paced at half the measured rate.
Every row's note gives the CPU time per event of the consuming process and of nats-server (median round):
the two share the machine's two cores, so their sum bounds what any consumer can reach.
"""

from __future__ import annotations

import asyncio
import functools
import resource
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from benchmarks.loading import publish_load
from benchmarks.observing import cpu_seconds, p50_p99, stored_times
from cityhub_redaction.settings import RedactionSettings
from cityhub_redaction.transform import Redaction
from hub import topology
from hub.config import PipelineConfig
from hub.connector_runtime import encode_ingest
from hub.geofence import GridIndex, LayerSpec
from hub.incidents import MergePolicy
from hub.metrics import Metrics
from hub.models import Category, CoordSystem, Event, Location
from hub.nats.embedded import EmbeddedNats
from hub.nats.fetcher import Fetcher
from hub.nats.publisher import Message, Publisher
from hub.nats.streams import ensure_streams
from hub.pipeline import Engines, Pipeline, PipelineOptions
from hub.rules import RuleSet

EVENTS = 30_000
BATCH = 500
GROUP = "Pipeline end to end through JetStream (events/s)"
GRIDS = Path(__file__).resolve().parents[1] / "hub" / "data" / "grids"
ORIGIN = (104.0756, 30.5717)  # GCJ-02, in Jinjiang district
CATEGORIES = [Category.GAS_LEAK, Category.WATER_LEAK, Category.NOISE, Category.FIRE]
RULES = [{"id": "gas", "when": 'category == "gas_leak"', "actions": {"severity": "critical", "route": ["gridworker"]}}]
_results: dict[str, float] = {}


def city_events(count: int, first: int = 0) -> list[bytes]:
    start = datetime.now(UTC)
    raws = []
    for n in range(first, first + count):
        original = n - 7 if n % 50 == 49 else n
        place = original % 2_000
        event = Event(
            source="iot_mqtt",
            source_event_id=f"r-{original}",
            category=CATEGORIES[place % 4],
            time=start + timedelta(milliseconds=original),
            location=Location(
                lon=ORIGIN[0] + (place % 40) * 0.003, lat=ORIGIN[1] + (place // 40) * 0.003, crs=CoordSystem.GCJ02
            ),
        )
        raws.append(encode_ingest(event)[1])
    return raws


@functools.cache
def engines() -> Engines:
    """Built once, outside the timed rounds (loading grids is start-up work, not per-event work). The
    redaction plugin runs with the default personal-data policy, as a hub does unless told otherwise."""
    geofence = GridIndex.load([LayerSpec(name="admin", path=GRIDS / "chengdu_admin_gcj02.geojson", crs="gcj02")])
    redaction = Redaction(PipelineConfig().personal_data, RedactionSettings())
    return Engines(
        rules=RuleSet.compile(RULES),
        merge_policy=MergePolicy(),
        geofence=geofence,
        transforms=(("redaction", redaction),),
    )


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory() as folder, EmbeddedNats(store_dir=Path(folder)) as running:
        yield running


async def _fresh_streams(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for name in [*topology.STREAM_SUBJECTS, "PASSTHROUGH"]:
        try:
            await js.delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
    for bucket in ("CITYHUB_PIPELINE",):
        try:
            await js.delete_object_store(bucket)
        except nats.js.errors.NotFoundError:
            pass
    await ensure_streams(js)
    await js.add_stream(
        StreamConfig(name="PASSTHROUGH", subjects=["passthrough.>"], duplicate_window=120, allow_batched=True)
    )
    await nc.close()


async def _load(url: str, raws: list[bytes], pace_per_s: float | None = None) -> None:
    nc = await nats.connect(url)
    await publish_load(nc.jetstream(), "cityhub.ingest.iot_mqtt", raws, pace_per_s=pace_per_s)
    await nc.close()


async def _passthrough(url: str, total: int, fast_ingest: bool, outputs_per_event: int = 1) -> None:
    """The peer: same consumer, fetch, ack and publish settings as the hub (:class:`hub.nats.fetcher.Fetcher`,
    fast-ingest batches through :class:`hub.nats.publisher.Publisher`; per-message ``publish_async`` as a sanity
    line), no processing. Tuned like the hub's loop: the next batch is fetched
    and republished while the previous batch's outputs are being stored, and a batch is acknowledged once
    its outputs are stored. With ``outputs_per_event=2`` every event is republished twice, as the pipeline
    publishes a unified event and an incident update: the pipeline's ceiling with no processing at all."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    publisher = Publisher(nc, stream_of=lambda subject: "PASSTHROUGH", fast_ingest=fast_ingest)
    await js.add_consumer(
        topology.INGEST_STREAM,
        ConsumerConfig(
            durable_name="passthrough",
            filter_subject="cityhub.ingest.>",
            ack_policy=AckPolicy.ALL,
            max_ack_pending=10_000,
            max_waiting=16,
        ),
    )
    fetcher = await Fetcher(nc, topology.INGEST_STREAM, "passthrough", prefetch=True).start()
    done = 0
    in_flight = None
    while done < total:
        msgs = await fetcher.fetch(BATCH, timeout=1.0)
        outputs = []
        for msg in msgs:
            document = orjson.loads(msg.data)
            for copy in range(outputs_per_event):
                outputs.append(
                    Message(
                        f"passthrough.{copy}.{msg.subject}",
                        orjson.dumps(document),
                        f"{document['id']}:{msg.seq}:{copy}",
                    )
                )
        publishing = asyncio.create_task(publisher.publish_until_stored(outputs))
        if in_flight is not None:
            await _stored_then_ack(*in_flight)
        in_flight = publishing, msgs
        done += len(msgs)
    if in_flight is not None:
        await _stored_then_ack(*in_flight)
    await nc.close()


async def _stored_then_ack(publishing: asyncio.Task, msgs: list) -> None:
    await publishing
    await msgs[-1].msg.ack_sync()


STAGES = ("decode", "dedup", "geo", "rules", "merge", "transforms", "encode", "publish")
_stage_us: dict[str, float] = {}  # per event, from the last round's stage metrics


async def _pipeline(url: str, total: int) -> None:
    nc = await nats.connect(url)
    metrics = Metrics()
    pipeline = Pipeline(
        nc, engines(), metrics, PipelineOptions(batch_size=BATCH, fetch_timeout_s=0.05, snapshot_interval_s=5.0)
    )
    await pipeline.start()
    while pipeline.counts["in"] < total:
        await asyncio.sleep(0.005)
    await pipeline.stop()
    await nc.close()
    for stage in STAGES:
        seconds = metrics.registry.get_sample_value("cityhub_stage_latency_seconds_sum", {"stage": stage}) or 0.0
        _stage_us[stage] = seconds / total * 1e6


def _round(server: EmbeddedNats, consume, cpu: list) -> tuple[tuple, dict]:  # noqa: ANN001 - pytest-benchmark setup
    raws = city_events(EVENTS)
    asyncio.run(_fresh_streams(server.url))
    asyncio.run(_load(server.url, raws))
    return (server, EVENTS, consume, cpu), {}


def _run(server: EmbeddedNats, total: int, consume, cpu: list) -> None:  # noqa: ANN001
    """One round; appends (consumer, server) CPU seconds per event to ``cpu``."""
    consumer_before, server_before = _own_cpu_s(), _process_cpu_s(server)
    asyncio.run(consume(server.url, total))
    cpu.append(((_own_cpu_s() - consumer_before) / total, (_process_cpu_s(server) - server_before) / total))


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(server: EmbeddedNats) -> float:
    assert server.process is not None
    return cpu_seconds(server.process.pid)


def _cpu_note(cpu: list[tuple[float, float]]) -> str:
    consumer, server = (statistics.median(column) * 1e6 for column in zip(*cpu, strict=True))
    return f"CPU per event: consumer {consumer:.0f} µs, nats-server {server:.0f} µs"


@pytest.mark.parametrize(
    ("fast_ingest", "outputs_per_event"),
    [(True, 1), (False, 1), (True, 2)],
    ids=["fast_ingest", "publish_async", "fast_ingest_two_outputs"],
)
def test_nats_py_passthrough(benchmark, server, fast_ingest, outputs_per_event):
    benchmark.group = GROUP
    publishing = (
        "fast-ingest batch publish, AckAll once per batch after its final publish ack"
        if fast_ingest
        else "publish_async per message, AckAll once per batch after gathering its publish acks"
    )
    copies = (
        ""
        if outputs_per_event == 1
        else f"{outputs_per_event} messages per event as the pipeline publishes (event + incident update), "
    )
    peer = fast_ingest and outputs_per_event == 1
    consume = functools.partial(_passthrough, fast_ingest=fast_ingest, outputs_per_event=outputs_per_event)
    cpu: list[tuple[float, float]] = []
    benchmark.pedantic(_run, setup=lambda: _round(server, consume, cpu), rounds=3, iterations=1)
    benchmark.extra_info.update(
        items=EVENTS,
        role="peer" if peer else "sanity",
        note=f"fetch 500 with prefetch, orjson.loads, {copies}{publishing}; {_cpu_note(cpu)}",
    )
    if peer:
        _results["peer"] = EVENTS / benchmark.stats.stats.median


def test_cityhub_pipeline(benchmark, server):
    benchmark.group = GROUP
    engines()
    cpu: list[tuple[float, float]] = []
    benchmark.pedantic(_run, setup=lambda: _round(server, _pipeline, cpu), rounds=3, iterations=1)
    rate = EVENTS / benchmark.stats.stats.median
    p50, p99 = asyncio.run(_latency_at(server.url, rate / 2))
    ratio = f"{rate / _results['peer']:.0%} of the passthrough; " if "peer" in _results else ""
    benchmark.extra_info.update(
        items=EVENTS,
        role="cityhub",
        note=f"{ratio}latency at half load ({rate / 2:,.0f}/s): p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; "
        "µs per event by stage: "
        + ", ".join(f"{stage} {_stage_us[stage]:.0f}" for stage in STAGES)
        + f" (publish overlaps the next batch's processing); {_cpu_note(cpu)}",
    )


async def _latency_at(url: str, rate: float) -> tuple[float, float]:
    """p50/p99 of ingest-stored → unified-stored with the publisher paced at ``rate`` events/s."""
    await _fresh_streams(url)
    count = max(2_000, int(rate * 4))
    nc = await nats.connect(url)
    pipeline = Pipeline(nc, engines(), Metrics(), PipelineOptions(batch_size=BATCH, fetch_timeout_s=0.02))
    await pipeline.start()
    await _load(url, city_events(count), pace_per_s=rate)
    while pipeline.counts["in"] < count:
        await asyncio.sleep(0.01)
    await pipeline.stop()
    js = nc.jetstream()
    ingested, unified = await stored_times(js, topology.INGEST_STREAM), await stored_times(js, topology.EVENTS_STREAM)
    await nc.close()
    return p50_p99([stored - ingested[key] for key, stored in unified.items() if key in ingested])
