"""The real :class:`~hub.connector.ConnectorContext`: a connector talking to the hub over NATS.

* ``publish`` sends the event as a CloudEvent to ``cityhub.ingest.<source>`` with ``Nats-Msg-Id`` set to the
  event's idempotency key and waits for JetStream's ack, retrying with backoff while NATS is unreachable
  (a retry of an already stored message is dropped by JetStream's duplicate window).
* ``reject`` puts unusable input on ``cityhub.dlq.<source>`` with the original bytes and the reason in headers.
* ``state`` is a JetStream key/value bucket per connector (cursors survive restarts and moves between hosts).
* Outbound: a durable pull consumer on ``cityhub.dispatch.orders.<source>`` (or on each subject the connector
  lists in ``outbound_subjects``) feeds :meth:`Connector.deliver`; a delivery that raises is redelivered later
  with exponential backoff, so nothing waiting to go out is lost; one that raises ``DeliveryRejected`` goes to
  the DLQ.

:func:`open_context` and :func:`serve_connector` run one connector against a NATS server until cancelled
(the supervisor calls them in the connector's own process); :func:`running_connector` does the same as an
async context manager for tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, NoStreamResponseError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from hub import ids, topology, wire
from hub.backoff import Backoff, retry
from hub.config import NatsConfig, StreamsConfig
from hub.connector import Connector, StateStore
from hub.errors import DeliveryRejected, InvalidEventError
from hub.federation.sourcing import from_below
from hub.models import CloseRequest, DispatchOrder, DispatchUpdate, Event
from hub.nats.natsconn import connect
from hub.nats.publisher import Message
from hub.nats.sizes import SizeGuard, size_on_the_wire
from hub.nats.streams import ensure_streams
from hub.tasks import cancel_and_wait, stop_if_cancelled

_TRANSIENT = (NatsTimeoutError, asyncio.TimeoutError, NoRespondersError, NoStreamResponseError, ConnectionClosedError)
_VALID_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")

PUBLISH_RETRY_MAX_S = 5.0
REDELIVERY_MAX_S = 60.0


def state_bucket(source: str) -> str:
    return f"{topology.STATE_BUCKET_PREFIX}{source}"


def delivery_consumer(source: str) -> str:
    return f"cityhub-deliver-{topology.token(source)}"


def encode_ingest(event: Event) -> tuple[str, bytes]:
    """``(Nats-Msg-Id, CloudEvent bytes)`` of one event as a connector publishes it to ingest."""
    msg_id = ids.idempotency_key(event)
    raw = wire.encode(
        type_=wire.TYPE_EVENT,
        id_=msg_id,
        source=wire.source_uri(event.source),
        time=event.time,
        data=event,
        extensions={"category": event.category, "severity": event.severity.value},
    )
    return msg_id, raw


def encode_close_request(request: CloseRequest, requester: str) -> tuple[str, bytes]:
    """``(Nats-Msg-Id, CloudEvent bytes)`` of a close request as ``requester`` publishes it to ingest; one
    per incident, so a repeated request within the duplicate window is dropped."""
    msg_id = f"close:{request.incident_id}"
    raw = wire.encode(
        type_=wire.TYPE_CLOSE_REQUEST,
        id_=msg_id,
        source=wire.source_uri(requester),
        time=request.time,
        data=request,
        extensions={"incidentid": request.incident_id},
    )
    return msg_id, raw


async def publish_close_request(js: JetStreamContext, request: CloseRequest, requester: str) -> str:
    """Publish a close request on ``cityhub.ingest.<requester>`` and wait until it is stored; its msg id."""
    msg_id, raw = encode_close_request(request, requester)
    await js.publish(topology.ingest_subject(requester), raw, headers={topology.HEADER_MSG_ID: msg_id})
    return msg_id


def decode_outbound(raw: bytes) -> DispatchOrder | DispatchUpdate | dict[str, Any]:
    """The item inside an outbound CloudEvent: a dispatch order or update, or the plain data of other types."""
    envelope = wire.decode(raw)
    data = envelope.get("data")
    try:
        if envelope["type"] == wire.TYPE_DISPATCH_ORDER:
            return DispatchOrder.model_validate(data)
        if envelope["type"] == wire.TYPE_DISPATCH_UPDATE:
            return DispatchUpdate.model_validate(data)
    except ValidationError as exc:
        raise InvalidEventError(f"{envelope['type']} data does not validate: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEventError(f"outbound {envelope['type']} data must be a JSON object")
    return data


class KvStateStore:
    """A connector's durable key/value state in its own JetStream KV bucket. Keys outside the KV key
    alphabet are stored base64url-encoded, so any string works as a key."""

    def __init__(self, kv: KeyValue):
        self._kv = kv

    @staticmethod
    def _key(key: str) -> str:
        if _VALID_KV_KEY.match(key) and not key.startswith(".") and not key.endswith("."):
            return key
        return "b64." + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")

    async def get(self, key: str) -> bytes | None:
        try:
            entry = await self._kv.get(self._key(key))
        except KeyNotFoundError:  # KeyDeletedError is one too
            return None
        return entry.value

    async def put(self, key: str, value: bytes) -> None:
        await self._kv.put(self._key(key), value)


class NatsConnectorContext:
    """What a running connector gets: publish to ingest, reject to the DLQ, durable state, counters."""

    def __init__(self, source: str, nc: NatsClient, state: KvStateStore, *, publish_timeout_s: float = 5.0):
        self.source = source
        self.log = logging.getLogger(f"cityhub.connector.{source}")
        self.state: StateStore = state
        self.counters: Counter[str] = Counter()
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=publish_timeout_s)

    async def publish(self, event: Event) -> None:
        if event.source != self.source:
            raise ValueError(f"connector {self.source!r} cannot publish an event of source {event.source!r}")
        msg_id, raw = encode_ingest(event)
        try:
            await self._publish_acked(topology.ingest_subject(self.source), raw, msg_id)
        except MaxPayloadError:
            await self.reject(raw, f"oversized: {len(raw)} bytes exceeds the server's max_payload", "oversized")
            return
        self.count("published")

    async def publish_update(self, update: DispatchUpdate) -> None:
        msg_id = f"{self.source}:update:{update.order_id}:{update.status.value}:{update.time.isoformat()}"
        raw = wire.encode(
            type_=wire.TYPE_DISPATCH_UPDATE,
            id_=msg_id,
            source=wire.source_uri(self.source),
            time=update.time,
            data=update,
            extensions={"incidentid": update.incident_id},
        )
        await self._publish_acked(topology.dispatch_update_subject(self.source), raw, msg_id)
        self.count("updates_published")

    async def reject(self, raw: bytes, reason: str, kind: str = "invalid", subject: str | None = None) -> None:
        """Dead-letter ``raw`` with the pipeline's headers (reason, kind, original subject: by default the
        ingest subject the input was bound for); bytes that would not fit max_payload with the headers are kept
        in the object store and referenced, like the pipeline's (:mod:`hub.nats.sizes`), named by their digest."""
        digest = f"dlq:{self.source}:{hashlib.sha256(raw).hexdigest()}"
        headers = {
            **wire.dead_letter_headers(digest, wire.source_uri(self.source)),
            topology.HEADER_REASON: _header_value(reason),
            topology.HEADER_REASON_KIND: kind,
            topology.HEADER_ORIGINAL_SUBJECT: subject or topology.ingest_subject(self.source),
        }
        subject = topology.dlq_subject(self.source)
        if size_on_the_wire(raw, headers) <= self._nc.max_payload:
            await self._publish_acked(subject, raw, None, headers)
        else:
            [kept] = await SizeGuard(lambda: self._js).fit(
                [Message(subject, raw, digest, headers)], self._nc.max_payload
            )
            await self._publish_acked(kept.subject, kept.data, kept.msg_id, kept.headers)
        self.count("rejected")
        self.log.warning("rejected %d bytes to the DLQ: %s", len(raw), reason)

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    async def _publish_acked(
        self, subject: str, raw: bytes, msg_id: str | None, headers: dict[str, str] | None = None
    ) -> None:
        """Publish and wait for JetStream's ack; retry transient failures for ever with the same msg id."""
        headers = dict(headers or {})
        if msg_id is not None:
            headers[topology.HEADER_MSG_ID] = msg_id
        if size_on_the_wire(raw, headers) > self._nc.max_payload:
            raise MaxPayloadError  # nats-py checks the payload alone; the server would close the connection
        backoff = Backoff(max_s=PUBLISH_RETRY_MAX_S)

        def retrying(exc: BaseException, delay: float) -> None:
            self.count("publish_retries")
            self.log.warning(
                "publish to %s failed (%s); retry %d in %.1fs",
                subject,
                exc or type(exc).__name__,
                backoff.attempt,
                delay,
            )

        await retry(
            lambda: self._js.publish(subject, raw, headers=headers),
            retry_on=_TRANSIENT,
            backoff=backoff,
            on_retry=retrying,
        )


def _header_value(text: str) -> str:
    """Header values are one line; keep the reason readable and bounded."""
    return " ".join(text.split())[:1024]


def outbound_subjects(connector: Connector) -> tuple[str, ...]:
    """The subjects a connector's :meth:`~Connector.deliver` is fed from (its dispatch orders by default)."""
    return connector.outbound_subjects or (topology.dispatch_order_subject(connector.source),)


def outbound_consumer(source: str, subject: str) -> str:
    """Durable consumer name of one outbound subject: the historic name for the connector's own dispatch
    orders, a stable hash suffix for any other subject (consumer names cannot hold ``.``, ``*`` or ``>``)."""
    if subject == topology.dispatch_order_subject(source):
        return delivery_consumer(source)
    return f"{delivery_consumer(source)}-{hashlib.sha256(subject.encode()).hexdigest()[:12]}"


class OutboundDelivery:
    """Feeds ``connector.deliver`` from a durable consumer per outbound subject; failures are retried with backoff."""

    def __init__(
        self,
        connector: Connector,
        ctx: NatsConnectorContext,
        js: JetStreamContext,
        *,
        batch: int = 16,
        deliver_timeout_s: float = 30.0,
    ):
        self.connector = connector
        self.ctx = ctx
        self._js = js
        self._batch = batch
        self._deliver_timeout_s = deliver_timeout_s
        self._redelivery = Backoff(max_s=REDELIVERY_MAX_S)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for subject in outbound_subjects(self.connector):
                group.create_task(self._consume(subject), name=f"{self.connector.source}.deliver:{subject}")

    async def _consume(self, subject: str) -> None:
        source = self.connector.source
        subscription = await self._js.pull_subscribe(
            subject,
            durable=outbound_consumer(source, subject),
            stream=await self._js.find_stream_name_by_subject(subject),
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._deliver_timeout_s + 5.0,
                max_deliver=-1,
                max_ack_pending=self._batch * 4,
            ),
        )
        while True:
            try:
                msgs = await subscription.fetch(self._batch, timeout=1.0)
            except _TRANSIENT:
                msgs = []
            stop_if_cancelled()
            for msg in msgs:
                await self._deliver_one(msg)

    async def _deliver_one(self, msg: Msg) -> None:
        if from_below(msg.headers):  # a lower tier's order, sourced up to be seen: delivered by that tier's connector
            await msg.ack()
            return
        try:
            item = decode_outbound(msg.data)
        except InvalidEventError as exc:
            await self.ctx.reject(msg.data, f"undeliverable outbound message: {exc.reason}", "invalid", msg.subject)
            await msg.term()
            return
        try:
            await asyncio.wait_for(self.connector.deliver(item), self._deliver_timeout_s)
        except asyncio.CancelledError:
            raise
        except DeliveryRejected as exc:  # refused for good: redelivery cannot help, keep it in the DLQ
            await self.ctx.reject(msg.data, f"refused by the external system: {exc}", "delivery_refused", msg.subject)
            await msg.term()
            return
        except Exception as exc:  # the external system's failure, whatever its type: redeliver later
            attempt = msg.metadata.num_delivered
            delay = self._redelivery.ceiling(attempt)  # no jitter: messages refused together come back in order
            self.ctx.count("deliver_failed")
            self.ctx.log.warning(
                "delivery attempt %d failed (%s: %s); retry in %.1fs", attempt, type(exc).__name__, exc, delay
            )
            await msg.nak(delay=delay)
            return
        await msg.ack()
        self.ctx.count("delivered")


def has_outbound(connector: Connector) -> bool:
    """True when the connector's class implements :meth:`Connector.deliver`."""
    return type(connector).deliver is not Connector.deliver


async def open_context(
    connector: Connector, nc: NatsClient, streams: StreamsConfig | None = None
) -> NatsConnectorContext:
    """Make sure the streams and the connector's state bucket exist and build its context."""
    js = nc.jetstream()
    await ensure_streams(js, streams)
    kv = await js.create_key_value(bucket=state_bucket(connector.source), history=1)
    return NatsConnectorContext(connector.source, nc, KvStateStore(kv))


async def serve_connector(connector: Connector, ctx: NatsConnectorContext, nc: NatsClient) -> None:
    """Run the connector's receive loop and, if it has one, its outbound delivery, until cancelled or one of
    them fails (the failure propagates so the supervisor can restart the process)."""
    async with asyncio.TaskGroup() as group:
        group.create_task(connector.run(ctx), name=f"{connector.source}.run")
        if has_outbound(connector):
            group.create_task(
                OutboundDelivery(connector, ctx, nc.jetstream()).run(), name=f"{connector.source}.deliver"
            )


def _client_config(nats: str | NatsConfig, source: str) -> NatsConfig:
    config = NatsConfig(servers=[nats]) if isinstance(nats, str) else nats
    return config.model_copy(update={"name": f"cityhub-connector-{source}"})


@contextlib.asynccontextmanager
async def running_connector(
    connector: Connector, nats: str | NatsConfig, streams: StreamsConfig | None = None
) -> AsyncIterator[NatsConnectorContext]:
    """Run a connector in the background for the duration of the block; yields its context (counters,
    state). A connector failure is raised when the block exits."""
    nc = await connect(_client_config(nats, connector.source))
    try:
        ctx = await open_context(connector, nc, streams)
        task = asyncio.create_task(serve_connector(connector, ctx, nc))
        try:
            yield ctx
        finally:
            await cancel_and_wait(task)
    finally:
        await nc.close()
