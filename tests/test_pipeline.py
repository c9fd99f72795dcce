"""The pipeline through a real nats-server: unified stream, incidents, dispatch orders, DLQ, restart."""

from __future__ import annotations

import time

import nats
import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat

from hub import topology
from hub.errors import InvalidEventError
from hub.metrics import Metrics
from hub.models import Category, Incident
from hub.nats.streams import ensure_streams
from hub.pipeline import (
    BatchProcessor,
    IngestMessage,
    IsolatingProcessor,
    Pipeline,
    PipelineOptions,
    PipelineState,
    StateRebuild,
    decode_event,
)
from tests.pipeline_support import (
    bare_item,
    data_of,
    engines,
    event,
    ingest_item,
    publish_raw,
    read_stream,
    stream_count,
)
from tests.waiting import wait_until

OPTIONS = PipelineOptions(batch_size=100, fetch_timeout_s=0.1, max_message_bytes=4096, snapshot_interval_s=0.5)


async def _start(
    nats_url: str, options: PipelineOptions = OPTIONS, rules: list[dict] | None = None
) -> tuple[Pipeline, object]:
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    pipeline = Pipeline(nc, engines(rules), Metrics(), options)
    await pipeline.start()
    return pipeline, nc


BAD_INPUT = {
    "not_json": b"\xff\xfe not json",
    "invalid": b"[1, 2, 3]",
    "unknown_category": orjson.dumps(
        {"source": "iot_mqtt", "category": "alien_landing", "time": "2026-05-01T08:00:00Z"}
    ),
    "coordinates": orjson.dumps(
        {
            "source": "iot_mqtt",
            "category": "fire",
            "time": "2026-05-01T08:00:00Z",
            "location": {"lon": 204.0, "lat": 30.0},
        }
    ),
    "oversized": orjson.dumps(
        {"source": "iot_mqtt", "category": "fire", "time": "2026-05-01T08:00:00Z", "text": "x" * 5000}
    ),
    "source_mismatch": orjson.dumps({"source": "eldercare", "category": "fire", "time": "2026-05-01T08:00:00Z"}),
    "missing_field": orjson.dumps({"source": "iot_mqtt", "time": "2026-05-01T08:00:00Z"}),
}


async def test_good_events_flow_and_bad_input_lands_in_dlq(nats_url):
    pipeline, nc = await _start(nats_url)
    good = [ingest_item(event(n, offset_m=n * 1000)) for n in range(5)] + [bare_item(event(5, category=Category.FIRE))]
    bad = [("cityhub.ingest.iot_mqtt", raw) for raw in BAD_INPUT.values()]
    items = [
        good[0],
        bad[0],
        good[1],
        bad[1],
        bad[2],
        good[2],
        bad[3],
        good[3],
        bad[4],
        bad[5],
        good[4],
        bad[6],
        good[5],
    ]
    await publish_raw(nats_url, items + [good[0]])  # the last one re-sent: dropped as a duplicate
    await wait_until(lambda: pipeline.counts["in"] == len(items) + 1)
    await pipeline.stop()
    await nc.close()

    assert pipeline.counts["out"] == 6 and pipeline.counts["dlq"] == 7 and pipeline.counts["duplicates"] == 1
    exposition = pipeline.metrics.render().decode()
    for stage in ("decode", "dedup", "geo", "rules", "merge", "transforms", "encode", "publish", "end_to_end"):
        assert f'cityhub_stage_latency_seconds_count{{stage="{stage}"}}' in exposition, stage
    assert 'cityhub_stage_events_total{outcome="in",stage="decode"} 14.0' in exposition
    assert 'cityhub_stage_events_total{outcome="out",stage="decode"} 7.0' in exposition
    assert 'cityhub_stage_events_total{outcome="out",stage="dedup"} 6.0' in exposition
    dlq = await read_stream(nats_url, topology.DLQ_STREAM)
    assert {m.headers[topology.HEADER_REASON_KIND]: m.data for m in dlq} == BAD_INPUT
    assert all(m.subject == "cityhub.dlq.iot_mqtt" and m.headers[topology.HEADER_REASON] for m in dlq)

    events = await read_stream(nats_url, topology.EVENTS_STREAM)
    assert len(events) == 6
    gas = [m for m in events if data_of(m)["category"] == "gas_leak"]
    assert gas[0].subject == "cityhub.events.510104.510104-01.gas_leak.critical"
    assert all(m.subject.startswith("cityhub.events.510104.") and m.subject.endswith(".gas_leak.critical") for m in gas)
    parsed = JSONFormat().read(None, gas[0].data)
    assert parsed.get_extension("district") == "510104"
    assert parsed.get_extension("incidentid").startswith("inc-")
    first = data_of(gas[0])
    assert first["location"]["crs"] == "wgs84"  # normalised from GCJ-02
    assert [cell["level"] for cell in first["grid_path"]][:2] == ["district", "street"]

    fire = [m for m in events if data_of(m)["category"] == "fire"]
    assert fire[0].subject.endswith(".fire.medium")  # no rule for fire: the source's severity stays


async def test_reports_close_together_merge_and_dispatch_once(nats_url):
    pipeline, nc = await _start(nats_url)
    await publish_raw(nats_url, [ingest_item(event(n, offset_m=n * 5)) for n in range(4)])
    await wait_until(lambda: pipeline.counts["in"] == 4)
    await pipeline.stop()
    await nc.close()

    incidents = await read_stream(nats_url, topology.INCIDENTS_STREAM)
    assert {data_of(m)["id"] for m in incidents} == {
        "inc-" + data_of((await read_stream(nats_url, topology.EVENTS_STREAM))[0])["id"]
    }
    assert max(data_of(m)["report_count"] for m in incidents) == 4
    assert incidents[0].subject == "cityhub.incidents.510104.gas_leak.opened"
    assert all(Incident.model_validate(data_of(m)).grid_path for m in incidents)  # written without the model
    orders = await read_stream(nats_url, topology.DISPATCH_STREAM)
    assert sorted(m.subject for m in orders) == [
        "cityhub.dispatch.orders.dept_fire",
        "cityhub.dispatch.orders.gridworker",
    ]
    assert data_of(orders[0])["deadline"]


async def test_an_incident_without_reports_for_its_window_is_closed_on_the_unified_stream(nats_url):
    pipeline, nc = await _start(nats_url)
    early = [ingest_item(event(n, offset_m=n * 5)) for n in range(3)]  # one incident of three reports
    await publish_raw(nats_url, early)
    await wait_until(lambda: pipeline.counts["in"] == 3)
    await publish_raw(nats_url, [ingest_item(event(3, offset_m=5_000, seconds=2 * 3_600))])  # two hours on
    await wait_until(lambda: pipeline.counts["in"] == 4)
    await pipeline.stop()
    await nc.close()

    incidents = await read_stream(nats_url, topology.INCIDENTS_STREAM)
    [closed] = [m for m in incidents if m.subject.endswith(".closed")]
    assert closed.subject == "cityhub.incidents.510104.gas_leak.closed"
    incident = Incident.model_validate(data_of(closed))
    assert incident.state == "closed" and incident.report_count == 3 and incident.severity == "critical"
    assert incident.id == data_of(incidents[0])["id"]
    assert incident.id not in pipeline.state.incidents


async def test_orders_name_their_connector_and_carry_the_incidents_reports(nats_url):
    to_eldercare = {"id": "visit", "when": 'source == "eldercare"', "actions": {"route": ["connector:eldercare"]}}
    pipeline, nc = await _start(nats_url, rules=[to_eldercare])
    await publish_raw(nats_url, [ingest_item(event(0)), ingest_item(event(1, source="eldercare", offset_m=5))])
    await wait_until(lambda: pipeline.counts["in"] == 2)
    await pipeline.stop()
    await nc.close()

    [order] = await read_stream(nats_url, topology.DISPATCH_STREAM)
    assert order.subject == "cityhub.dispatch.orders.eldercare"
    assert data_of(order)["connector"] == "eldercare" and data_of(order)["target"] == "connector:eldercare"
    # made when the eldercare alert joined the incident the IoT alarm opened: both reports, oldest first
    assert data_of(order)["reports"] == [
        {"source": "iot_mqtt", "source_event_id": "e-0"},
        {"source": "eldercare", "source_event_id": "e-1"},
    ]


async def test_restart_continues_without_reprocessing(nats_url):
    pipeline, nc = await _start(nats_url)
    await publish_raw(nats_url, [ingest_item(event(n, offset_m=n * 1000)) for n in range(10)])
    await wait_until(lambda: pipeline.counts["in"] == 10)
    await pipeline.stop()
    await nc.close()

    pipeline, nc = await _start(nats_url)
    await publish_raw(nats_url, [ingest_item(event(n, offset_m=n * 1000)) for n in range(5, 15)])
    await wait_until(lambda: pipeline.counts["in"] == 10)
    await pipeline.stop()
    await nc.close()
    assert pipeline.counts["duplicates"] == 5  # e-5..e-9 were seen before the restart (state restored)
    assert await stream_count(nats_url, topology.EVENTS_STREAM) == 15


async def test_a_rebuild_restores_a_stored_snapshot_only_when_it_covers_more_input(nats_url):
    pipeline, nc = await _start(nats_url)
    await publish_raw(nats_url, [ingest_item(event(n, offset_m=n * 1000)) for n in range(10)])
    await wait_until(lambda: pipeline.counts["in"] == 10)
    await pipeline.stop()  # its final snapshot covers sequence 10
    await publish_raw(nats_url, [ingest_item(event(n, offset_m=n * 1000)) for n in range(10, 15)])
    try:
        behind = StateRebuild(nc, IsolatingProcessor(BatchProcessor(engines(), OPTIONS)), batch_size=4)
        assert await behind.restore_newer_snapshot() and behind.state.last_seq == 10
        assert not await behind.restore_newer_snapshot()  # the same snapshot: looked at once
        assert await behind.catch_up(15) == 5 and behind.state.last_seq == 15

        ahead = StateRebuild(nc, IsolatingProcessor(BatchProcessor(engines(), OPTIONS)), batch_size=4)
        assert await ahead.catch_up(12) == 12  # from the first message, without the snapshot
        assert not await ahead.restore_newer_snapshot() and ahead.state.last_seq == 12  # the snapshot is behind it
        assert await ahead.catch_up(15) == 3
        assert sorted(ahead.state.incidents) == sorted(behind.state.incidents)
        await behind.close()
        await ahead.close()
    finally:
        await nc.close()


@pytest.mark.parametrize("raw", [b"{}", b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "other"}'])
def test_decode_refuses_what_is_not_an_event(raw):
    with pytest.raises(InvalidEventError):
        decode_event(raw, "cityhub.ingest.iot_mqtt", 1024)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"source": "iot_mqtt", "time": "2026-05-01T08:00:00Z"}, "category: Field required"),
        (
            {"source": "iot_mqtt", "category": "fire", "time": "2026-05-01T08:00:00Z", "location": {"lon": 104.0}},
            "location.lat: Field required",
        ),
    ],
)
def test_a_missing_field_is_named_as_missing_not_as_wrong(document, reason):
    with pytest.raises(InvalidEventError) as refused:
        decode_event(orjson.dumps(document), "cityhub.ingest.iot_mqtt", 1024)
    assert (refused.value.kind, refused.value.reason) == ("missing_field", reason)


def test_decode_accepts_a_cloudevent_and_a_bare_event():
    for _, raw in (ingest_item(event(1)), bare_item(event(1))):
        decoded, _document = decode_event(raw, "cityhub.ingest.iot_mqtt", 4096)
        assert decoded == event(1)


def test_an_event_without_a_source_id_is_named_in_orders_by_its_hub_id():
    processor = BatchProcessor(engines(), PipelineOptions())
    anonymous = event(7).model_copy(update={"source_event_id": None})
    result = processor.process(
        PipelineState.fresh(processor.engines), [IngestMessage(1, *bare_item(anonymous), time.time())]
    )
    orders = [orjson.loads(output.data)["data"] for output in result.outputs if ".orders." in output.subject]
    unified = [
        orjson.loads(output.data)["data"] for output in result.outputs if output.subject.startswith("cityhub.events.")
    ]
    assert orders and all(
        order["reports"] == [{"source": "iot_mqtt", "source_event_id": unified[0]["id"]}] for order in orders
    )
