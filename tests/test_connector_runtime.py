"""The connector runtime through a real nats-server: ingest publish with msg ids, DLQ, KV state, outbound
delivery with redelivery, stream set-up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import nats
import pytest
from cloudevents.core.formats.json import JSONFormat
from pydantic import BaseModel

from hub import topology, wire
from hub.config import StreamLimits, StreamsConfig
from hub.connector import Connector, ConnectorContext
from hub.connector_runtime import encode_ingest, running_connector
from hub.errors import ConfigError
from hub.models import Category, DispatchOrder, Event, Location, Severity
from hub.nats.streams import ensure_streams
from tests.waiting import wait_until


class NoSettings(BaseModel):
    pass


class QueueConnector(Connector):
    """Publishes whatever the test puts in its queue; fails the first ``failures`` deliveries."""

    source = "test_queue"

    def __init__(self, failures: int = 0):
        super().__init__(NoSettings())
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self.failures = failures
        self.delivered: list[object] = []
        self.attempts = 0

    async def run(self, ctx: ConnectorContext) -> None:
        while True:
            await ctx.publish(await self.inbox.get())

    async def deliver(self, item: object) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("external system down")
        self.delivered.append(item)


def _event(n: int) -> Event:
    return Event(
        source="test_queue",
        source_event_id=f"alarm-{n}",
        category=Category.GAS_LEAK,
        severity=Severity.HIGH,
        time=datetime(2026, 5, 1, 8, 0, n, tzinfo=UTC),
        location=Location(lon=104.06, lat=30.66),
    )


async def _stream_messages(nats_url: str, stream: str) -> list:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    info = await js.stream_info(stream)
    messages = [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    await nc.close()
    return messages


async def test_publish_reaches_ingest_once_as_cloudevent(nats_url):
    connector = QueueConnector()
    async with running_connector(connector, nats_url) as ctx:
        for event in (_event(1), _event(2), _event(1)):  # alarm-1 resent by the source
            await connector.inbox.put(event)
        await wait_until(lambda: ctx.counters["published"] == 3)

    messages = await _stream_messages(nats_url, topology.INGEST_STREAM)
    assert [m.headers[topology.HEADER_MSG_ID] for m in messages] == ["test_queue:alarm-1", "test_queue:alarm-2"]
    assert {m.subject for m in messages} == {"cityhub.ingest.test_queue"}
    parsed = JSONFormat().read(None, messages[0].data)
    assert parsed.get_type() == wire.TYPE_EVENT
    assert parsed.get_extension("severity") == "high"
    assert Event.model_validate(parsed.get_data()) == _event(1)


async def test_reject_puts_original_bytes_and_reason_in_dlq(nats_url):
    async with running_connector(QueueConnector(), nats_url) as ctx:
        await ctx.reject(b"\xff not json", "payload is not JSON\nline two")

    [message] = await _stream_messages(nats_url, topology.DLQ_STREAM)
    assert message.subject == "cityhub.dlq.test_queue"
    assert message.data == b"\xff not json"
    assert message.headers[topology.HEADER_REASON] == "payload is not JSON line two"
    assert message.headers[topology.HEADER_REASON_KIND] == "invalid"  # the pipeline's headers, a real subject
    assert message.headers[topology.HEADER_ORIGINAL_SUBJECT] == "cityhub.ingest.test_queue"


async def test_an_event_or_a_dead_letter_near_max_payload_keeps_the_connection_and_its_bytes(small_payload_server):
    url = small_payload_server.url
    async with running_connector(QueueConnector(), url) as ctx:
        limit = ctx._nc.max_payload
        empty = _event(1).model_copy(update={"payload": {"reading": ""}})
        padding = limit - 20 - len(encode_ingest(empty)[1])  # the event fits max_payload, but not with its headers
        large = _event(1).model_copy(update={"payload": {"reading": "7" * padding}})
        await ctx.publish(large)
        await ctx.reject(b"r" * (limit - 20), "too odd")
        await ctx.publish(_event(2))
        assert ctx._nc.is_connected and ctx.counters["rejected"] == 2 and ctx.counters["published"] == 1

    dead_letters = await _stream_messages(url, topology.DLQ_STREAM)
    assert [m.data or b"" for m in dead_letters] == [b"", b""]
    nc = await nats.connect(url)
    kept = []
    for message in dead_letters:
        bucket, name = message.headers[topology.HEADER_ORIGINAL_OBJECT].split("/", 1)
        kept.append((await (await nc.jetstream().object_store(bucket)).get(name)).data)
    await nc.close()
    assert Event.model_validate(wire.decode(kept[0])["data"]) == large and kept[1] == b"r" * (limit - 20)


async def test_state_survives_a_restart_of_the_connector(nats_url):
    async with running_connector(QueueConnector(), nats_url) as ctx:
        assert await ctx.state.get("cursor") is None
        await ctx.state.put("cursor", b"2026-05-01T08:00:00Z")
        await ctx.state.put("service code: 311/pothole?", b"roads")
    async with running_connector(QueueConnector(), nats_url) as ctx:
        assert await ctx.state.get("cursor") == b"2026-05-01T08:00:00Z"
        assert await ctx.state.get("service code: 311/pothole?") == b"roads"


async def test_failed_delivery_is_redelivered_until_it_succeeds(nats_url):
    order = DispatchOrder(
        id="o-1",
        incident_id="i-1",
        target="gridworker",
        connector="test_queue",
        category=Category.GAS_LEAK,
        severity=Severity.HIGH,
        summary="gas alarm, 3 Wuhou Rd",
        created_at=datetime(2026, 5, 1, tzinfo=UTC),
    )
    connector = QueueConnector(failures=2)
    async with running_connector(connector, nats_url) as ctx:
        nc = await nats.connect(nats_url)
        raw = wire.encode(
            type_=wire.TYPE_DISPATCH_ORDER, id_=order.id, source="/cityhub", time=order.created_at, data=order
        )
        await nc.jetstream().publish(topology.dispatch_order_subject("test_queue"), raw)
        await nc.close()
        await wait_until(lambda: connector.delivered)
        assert ctx.counters["deliver_failed"] == 2

    assert connector.delivered == [order]


async def test_undecodable_outbound_message_goes_to_dlq_not_to_the_connector(nats_url):
    connector = QueueConnector()
    async with running_connector(connector, nats_url) as ctx:
        nc = await nats.connect(nats_url)
        await nc.jetstream().publish(topology.dispatch_order_subject("test_queue"), b"{broken")
        await nc.close()
        await wait_until(lambda: ctx.counters["rejected"] == 1)
    assert connector.attempts == 0
    [message] = await _stream_messages(nats_url, topology.DLQ_STREAM)
    assert "not JSON" in message.headers[topology.HEADER_REASON]


async def test_ensure_streams_creates_then_updates_limits(nats_url):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    await ensure_streams(js, StreamsConfig(events=StreamLimits(max_age=3600, max_msgs=1000)))
    info = await js.stream_info(topology.EVENTS_STREAM)
    assert (info.config.max_age, info.config.max_msgs) == (3600, 1000)
    assert info.config.subjects == ["cityhub.events.>", "cityhub.fence.events"]
    with pytest.raises(ConfigError, match="ingest.retention must be 'limits'"):
        await ensure_streams(js, StreamsConfig(ingest=StreamLimits(retention="workqueue")))
    await nc.close()


async def test_publish_from_wrong_source_is_refused(nats_url):
    async with running_connector(QueueConnector(), nats_url) as ctx:
        with pytest.raises(ValueError, match="cannot publish an event of source"):
            await ctx.publish(_event(1).model_copy(update={"source": "other"}))
