"""Sizes that always fit: every output stays within the server's max_payload, against a real nats-server that
takes at most 64 KiB per message (``small_payload_server``)."""

from __future__ import annotations

import asyncio
import dataclasses

import nats
import orjson
import pytest

from cityhub_enrichment.contacts import ContactBook, Enrichment
from cityhub_enrichment.settings import Contact, EnrichmentSettings
from hub import topology, wire
from hub.metrics import Metrics
from hub.models import Event, Incident
from hub.nats.publisher import Message, Publisher
from hub.nats.sizes import ORIGINALS_BUCKET, SizeGuard, wire_size
from hub.pipeline import SNAPSHOT_BUCKET, SNAPSHOT_NAME, Pipeline, PipelineOptions, PipelineState
from hub.trimming import EXTENSION, trimmed
from tests.pipeline_support import engines, event, ingest_item, publish_raw, read_stream
from tests.waiting import wait_until

OPTIONS = PipelineOptions(batch_size=100, fetch_timeout_s=0.1, max_message_bytes=4096)


async def _original(nc, reference: str) -> bytes:
    bucket, name = reference.split("/", 1)
    return (await (await nc.jetstream().object_store(bucket)).get(name)).data


def _dead_letter(data: bytes, seq: int) -> Message:
    headers = {
        topology.HEADER_REASON: "message too large",
        topology.HEADER_REASON_KIND: "oversized",
        topology.HEADER_ORIGINAL_SUBJECT: "cityhub.ingest.iot_mqtt",
    }
    return Message(topology.dlq_subject("iot_mqtt"), data, f"dlq:{seq}", headers)


async def test_the_server_takes_a_message_of_exactly_max_payload_and_closes_the_connection_one_byte_over(
    small_payload_nc, small_payload_server
):
    limit = small_payload_nc.max_payload
    headers = {topology.HEADER_REASON: "why"}
    at_limit = Message("cityhub.dlq.x", b"", "dlq:1", headers)
    at_limit.data = b"a" * (limit - wire_size(at_limit))
    await small_payload_nc.publish(at_limit.subject, at_limit.data, headers=at_limit.all_headers())
    await small_payload_nc.flush()
    assert small_payload_nc.is_connected

    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    other = await nats.connect(small_payload_server.url, closed_cb=on_closed, max_reconnect_attempts=0)
    await other.publish(at_limit.subject, at_limit.data + b"a", headers=at_limit.all_headers())
    await asyncio.wait_for(closed.wait(), 30)
    assert "maximum payload" in str(other.last_error).lower()


async def test_a_message_at_max_payload_ends_as_a_dead_letter_whose_object_holds_it_and_the_batch_flows_on(
    small_payload_nc, small_payload_server
):
    url = small_payload_server.url
    pipeline = Pipeline(small_payload_nc, engines(), Metrics(), OPTIONS)
    await pipeline.start()
    big = b"x" * (small_payload_nc.max_payload - 8)
    items = [
        ingest_item(event(0)),
        ("cityhub.ingest.iot_mqtt", big),
        ingest_item(event(1, offset_m=5000)),
        ingest_item(event(2, offset_m=10_000)),
    ]
    await publish_raw(url, items)
    await wait_until(lambda: pipeline.counts["in"] == len(items), "the pipeline read every message")
    await pipeline.stop()

    [dead] = await read_stream(url, topology.DLQ_STREAM)
    assert dead.data == b""
    assert dead.headers[topology.HEADER_MSG_ID] == "dlq:2"
    assert dead.headers[topology.HEADER_REASON_KIND] == "oversized"
    assert dead.headers[topology.HEADER_ORIGINAL_SIZE] == str(len(big))
    assert dead.headers[topology.HEADER_ORIGINAL_OBJECT] == f"{ORIGINALS_BUCKET}/dlq:2"
    assert await _original(small_payload_nc, dead.headers[topology.HEADER_ORIGINAL_OBJECT]) == big
    unified = await read_stream(url, topology.EVENTS_STREAM)
    assert sorted(orjson.loads(m.data)["data"]["source_event_id"] for m in unified) == ["e-0", "e-1", "e-2"]
    assert small_payload_nc.is_connected


async def test_a_republished_large_dead_letter_names_the_same_object_and_stores_it_once(
    small_payload_nc, small_payload_server
):
    big = bytes(range(256)) * (small_payload_nc.max_payload // 256)
    await Publisher(small_payload_nc).publish_until_stored([_dead_letter(big, 7)])
    store = await small_payload_nc.jetstream().object_store(ORIGINALS_BUCKET)
    first = await store.get_info("dlq:7")
    await Publisher(small_payload_nc).publish_until_stored([_dead_letter(big, 7)])  # a restarted hub publishes it again

    assert (await store.get_info("dlq:7")).nuid == first.nuid  # not written again
    [dead] = await read_stream(small_payload_server.url, topology.DLQ_STREAM)
    assert await _original(small_payload_nc, dead.headers[topology.HEADER_ORIGINAL_OBJECT]) == big


async def test_enrichment_cannot_push_a_unified_event_over_max_payload(small_payload_nc, small_payload_server):
    contacts = [Contact(cell="*", name=f"duty desk {n} " + "值" * 8_000) for n in range(3)]  # ~72 KB together
    enrichment = Enrichment(ContactBook(contacts), EnrichmentSettings(max_contacts=3))
    pipeline = Pipeline(
        small_payload_nc, dataclasses.replace(engines(), transforms=(("enrichment", enrichment),)), Metrics(), OPTIONS
    )
    await pipeline.start()
    await publish_raw(small_payload_server.url, [ingest_item(event(0)), ingest_item(event(1, offset_m=5000))])
    await wait_until(lambda: pipeline.counts["out"] == 2, "both events processed")
    await pipeline.stop()

    unified = await read_stream(small_payload_server.url, topology.EVENTS_STREAM)
    assert len(unified) == 2
    for message in unified:
        assert len(message.data) <= small_payload_nc.max_payload
        envelope = orjson.loads(message.data)
        assert envelope[EXTENSION].startswith("payload.responsible (")
        published = Event.model_validate(envelope["data"])
        assert "responsible" not in published.payload and published.text is not None


async def test_an_output_that_cannot_be_trimmed_is_dead_lettered_with_its_bytes_kept(small_payload_nc):
    incident = {
        "id": "inc-1",
        "category": "fire",
        "severity": "high",
        "opened_at": "2026-05-01T08:00:00Z",
        "updated_at": "2026-05-01T08:00:00Z",
        "sources": [f"source_{n}" for n in range(8_000)],
    }
    raw = wire.encode(
        type_=f"{wire.TYPE_INCIDENT_PREFIX}merged",
        id_="inc-1:2",
        source="/cityhub/pipeline",
        time=Incident.model_validate(incident).updated_at,
        data=incident,
    )
    output = Message("cityhub.incidents.510104.fire.merged", raw, "inc-1:2:merged")

    [fitted] = await SizeGuard(small_payload_nc.jetstream).fit([output], small_payload_nc.max_payload)

    assert fitted.subject == "cityhub.dlq.hub" and fitted.msg_id == "dlq:inc-1:2:merged" and fitted.data == b""
    assert fitted.headers[topology.HEADER_REASON_KIND] == "oversized"
    assert fitted.headers[topology.HEADER_ORIGINAL_SUBJECT] == output.subject
    assert await _original(small_payload_nc, fitted.headers[topology.HEADER_ORIGINAL_OBJECT]) == raw


async def test_a_pipeline_snapshot_larger_than_max_payload_is_stored_in_chunks_that_fit(
    small_payload_nc, small_payload_server
):
    pipeline = Pipeline(small_payload_nc, engines(), Metrics(), OPTIONS)
    await pipeline.start()
    long_ids = [
        event(n, offset_m=n * 500).model_copy(update={"source_event_id": f"{n}-" + "k" * 250}) for n in range(400)
    ]  # an incident each, remembering its report by that long id
    await publish_raw(small_payload_server.url, [ingest_item(e) for e in long_ids])
    await wait_until(lambda: pipeline.counts["in"] == len(long_ids), "every event processed")
    await pipeline.stop()

    store = await small_payload_nc.jetstream().object_store(SNAPSHOT_BUCKET)
    snapshot = await store.get(SNAPSHOT_NAME)
    assert len(snapshot.data) > small_payload_nc.max_payload and snapshot.info.chunks > 1
    assert PipelineState.restore(snapshot.data, engines()).last_seq == len(long_ids)


@pytest.mark.parametrize(
    ("type_", "data", "left_out"),
    [
        (f"{wire.TYPE_INCIDENT_PREFIX}merged", {"id": "inc-1", "address": "a" * 900, "event_ids": ["e1"]}, "address"),
        (wire.TYPE_DISPATCH_ORDER, {"id": "o-1", "summary": "gas", "reports": [{"source": "s" * 900}]}, "reports"),
    ],
)
def test_incident_changes_and_dispatch_orders_are_trimmed_of_their_optional_fields(type_, data, left_out):
    raw = orjson.dumps({"specversion": "1.0", "id": "x", "source": "/s", "type": type_, "data": data})
    envelope = orjson.loads(trimmed(raw, len(raw) - 500))
    assert envelope[EXTENSION].startswith(f"{left_out} (") and left_out not in envelope["data"]


def test_trimming_leaves_out_the_largest_fields_first_and_the_same_way_every_time():
    data = {
        "source": "iot_mqtt",
        "category": "fire",
        "time": "2026-05-01T08:00:00Z",
        "text": "t" * 300,
        "payload": {"small": 1, "big": "b" * 900},
    }
    raw = orjson.dumps({"specversion": "1.0", "id": "e", "source": "/s", "type": wire.TYPE_EVENT, "data": data})

    once = trimmed(raw, len(raw) - 500)
    assert once == trimmed(raw, len(raw) - 500)
    envelope = orjson.loads(once)
    assert envelope[EXTENSION] == "payload.big (902 bytes)"
    assert envelope["data"]["text"] == "t" * 300 and envelope["data"]["payload"] == {"small": 1}
    assert orjson.loads(trimmed(raw, len(raw) - 1000))[EXTENSION] == "payload.big (902 bytes); text (302 bytes)"
    assert trimmed(raw, 100) is None
    assert trimmed(b"\xff not json", 5) is None and trimmed(b"[1, 2]", 5) is None
