"""What one bad message or one failure can do to the pipeline: nothing beyond itself. Times an outside system
sends cannot move the hub's clocks, a message whose processing raises is dead-lettered, and a loop that fails
anyway is reported at once and restarted."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import nats
import orjson

from hub import topology
from hub.metrics import Metrics
from hub.models import Category
from hub.nats.streams import ensure_streams
from hub.pipeline import (
    BatchProcessor,
    EventTimeWindow,
    IngestMessage,
    Pipeline,
    PipelineOptions,
    PipelineState,
)
from hub.pipeline import processor as processor_module
from tests.pipeline_support import data_of, engines, event, ingest_item, publish_raw, read_stream
from tests.waiting import wait_until

OPTIONS = PipelineOptions(batch_size=100, fetch_timeout_s=0.1, snapshot_interval_s=0.5)
FAR_TIMES = [
    "9999-12-31T23:59:59.999-08:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00-01:00",
    "1900-01-01T00:00:00+08:00",
]


def _dated(n: int, when: str) -> tuple[str, bytes]:
    return "cityhub.ingest.iot_mqtt", orjson.dumps(
        {"source": "iot_mqtt", "source_event_id": f"far-{n}", "category": "gas_leak", "time": when}
    )


def _recent(n: int, seconds_ago: float) -> tuple[str, bytes]:
    e = event(n)
    e.time = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return ingest_item(e)


async def _running(nats_url: str, options: PipelineOptions = OPTIONS) -> tuple[Pipeline, nats.NATS]:
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    pipeline = Pipeline(nc, engines(), Metrics(), options)
    await pipeline.start()
    return pipeline, nc


async def test_times_outside_the_window_are_dead_lettered_and_the_rest_flow_on(nats_url):
    pipeline, nc = await _running(nats_url)
    far = [_dated(n, when) for n, when in enumerate(FAR_TIMES)]
    good = [_recent(n, seconds_ago=60 - n) for n in range(3)]
    await publish_raw(nats_url, [good[0], *far[:3], good[1], *far[3:], good[2]])
    await wait_until(lambda: pipeline.counts["in"] == len(far) + len(good))
    await pipeline.stop()
    await nc.close()

    dlq = await read_stream(nats_url, topology.DLQ_STREAM)
    assert sorted(m.data for m in dlq) == sorted(raw for _, raw in far)
    assert {m.headers[topology.HEADER_REASON_KIND] for m in dlq} == {"time_out_of_range"}
    assert "days after its reception" in next(m.headers[topology.HEADER_REASON] for m in dlq if b"9999" in m.data)
    assert len(await read_stream(nats_url, topology.EVENTS_STREAM)) == len(good)


def test_accepted_out_of_range_times_cannot_move_the_clocks():
    window = EventTimeWindow(accept_out_of_range=True)
    processor = BatchProcessor(engines(), PipelineOptions(event_time=window))
    state = PipelineState.fresh(processor.engines)
    now = time.time()
    early = _recent(1, seconds_ago=3 * 3600)
    batches = [[early], [_dated(n, when) for n, when in enumerate(FAR_TIMES)], [early]]
    results = [
        processor.process(state, [IngestMessage(seq, *item, now) for seq, item in enumerate(batch, 1)])
        for batch in batches
    ]

    assert [result.accepted for result in results] == [1, len(FAR_TIMES), 0]
    assert results[2].duplicates == 1  # the early event's key is still remembered: no outlier moved dedup's clock
    assert state.watermark <= now
    updates = [orjson.loads(o.data)["data"] for o in results[1].outputs if o.subject.startswith("cityhub.incidents.")]
    opened = [datetime.fromisoformat(update["opened_at"]).timestamp() for update in updates]
    assert opened and all(now - window.max_age_s - 1e-3 <= at <= now + 1e-3 for at in opened), opened  # µs rounding


async def test_a_message_whose_processing_raises_is_dead_lettered_with_the_exception(nats_url, monkeypatch):
    real_record_report = processor_module.record_report

    def failing_on_event_2(state, report, *args):  # noqa: ANN001, ANN002, ANN202 - the stage's own signature
        if report.source_event_id == "e-2":
            raise ValueError("injected fault")
        return real_record_report(state, report, *args)

    monkeypatch.setattr(processor_module, "record_report", failing_on_event_2)
    pipeline, nc = await _running(nats_url)
    items = [ingest_item(event(n, offset_m=n * 1000)) for n in range(5)]
    await publish_raw(nats_url, items)
    await wait_until(lambda: pipeline.counts["in"] == len(items))
    assert pipeline.running and pipeline.health()["poisoned_messages"] == 1
    await pipeline.stop()
    await nc.close()

    [dead] = await read_stream(nats_url, topology.DLQ_STREAM)
    assert dead.data == items[2][1] and dead.headers[topology.HEADER_REASON_KIND] == "internal_error"
    assert "ValueError: injected fault" in dead.headers[topology.HEADER_REASON]
    unified = await read_stream(nats_url, topology.EVENTS_STREAM)
    assert sorted(data_of(m)["source_event_id"] for m in unified) == ["e-0", "e-1", "e-3", "e-4"]


async def test_a_failing_loop_is_reported_at_once_and_restarted(nats_url, caplog):
    options = PipelineOptions(batch_size=100, fetch_timeout_s=0.1, snapshot_interval_s=60)
    pipeline, nc = await _running(nats_url, options)
    publish = pipeline.publisher.publish_until_stored
    failures = [ConnectionResetError("injected: the publisher failed")]

    async def failing_once(outputs):  # noqa: ANN001, ANN202 - Publisher.publish_until_stored
        if failures:
            raise failures.pop()
        await publish(outputs)

    pipeline.publisher.publish_until_stored = failing_once
    items = [ingest_item(event(n, offset_m=n * 1000, category=Category.FIRE)) for n in range(20)]
    with caplog.at_level(logging.ERROR, logger="cityhub.pipeline"):
        await publish_raw(nats_url, items)
        await wait_until(lambda: pipeline.restarts == 1, "the pipeline restarted")
        assert any("the pipeline stopped" in r.getMessage() and "injected" in r.getMessage() for r in caplog.records)
    assert "injected: the publisher failed" in pipeline.health()["last_error"]
    await wait_until(lambda: pipeline.running and pipeline.state.last_seq == len(items), "running again, all processed")
    await pipeline.stop()
    await nc.close()
    unified = await read_stream(nats_url, topology.EVENTS_STREAM)
    assert sorted(data_of(m)["source_event_id"] for m in unified) == sorted(f"e-{n}" for n in range(20))
