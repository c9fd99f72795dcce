"""Escalation: a dispatch order with a deadline (from a rule's ``escalate_after``) that is not accepted or
resolved in time is re-dispatched (二次派单, attempt 2, same target), then escalated upward (attempt 3 to the
street level, attempt 4 to the district level), each time with an ``escalated`` incident update. A resolved
order closes its incident (a close request to ingest, which the pipeline applies in order), except one grid's
order of an area warning (target ``cell:<id>``), which settles that grid only.

Durable by construction: the :class:`Escalator` follows ``cityhub.dispatch.>`` with a durable consumer
(:mod:`hub.nats.follower`, so a NATS restart or a lost consumer costs no order and repeats none) and keeps one
deadline per (incident, target) in the JetStream KV bucket ``CITYHUB_ESCALATIONS``; a hub that restarts finds
its deadlines there and carries on. The timer looks at a mirror of the bucket kept by following the bucket's
own stream (one consumer for the life of the escalator, not one key listing per tick), and reads an entry
from the bucket itself before it fires. Re-dispatched orders have deterministic ids, so firing
twice (a crash between publishing and recording) is dropped by JetStream's duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from hub import topology, wire
from hub.availability import terms
from hub.backoff import Backoff, retry
from hub.connector_runtime import publish_close_request
from hub.federation.sourcing import from_below
from hub.models import (
    CLOSE_REASON_MAX,
    CloseRequest,
    DispatchOrder,
    DispatchStatus,
    DispatchUpdate,
    Incident,
    IncidentChange,
)
from hub.nats.fetcher import Delivered
from hub.nats.follower import NATS_TROUBLE, Follower, Start
from hub.nats.publisher import UNFENCED, Fence
from hub.nats.sizes import SizeGuard
from hub.nats.streams import ESCALATION_BUCKET as BUCKET
from hub.nats.streams import open_key_value
from hub.pipeline import connector_for_target, dispatch_output, incident_output
from hub.pipeline.areas import CELL_TARGET_PREFIX
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.escalation")

BUCKET_STREAM = f"KV_{BUCKET}"
BUCKET_SUBJECT_PREFIX = f"$KV.{BUCKET}."
_REMOVED = {"DEL", "PURGE"}  # KV-Operation header values of an entry that is gone
CONSUMER = "cityhub-escalation"
UPWARD = {3: "level:street", 4: "level:district"}
MAX_ATTEMPT = max(UPWARD)
_DONE = {DispatchStatus.ACCEPTED, DispatchStatus.ON_SITE, DispatchStatus.RESOLVED, DispatchStatus.EVALUATED}


def _retrying(message: Delivered, error: BaseException, delay: float) -> None:
    log.warning(
        "escalation could not act on %s (stream sequence %d: %s: %s); retrying in %.1f s",
        message.subject,
        message.seq,
        type(error).__name__,
        error,
        delay,
    )


def deadline_key(incident_id: str, target: str) -> str:
    """KV key of one (incident, target) deadline; ``:`` is outside the KV key alphabet."""
    return f"{incident_id}/{target.replace(':', '=')}"


def close_request_for(update: DispatchUpdate, reporter: str) -> CloseRequest:
    """The close request of an incident whose order ``update`` reports resolved; ``reporter`` is the connector
    that reported it. A time without an offset is taken as UTC, like the rest of the hub does."""
    time = update.time if update.time.tzinfo is not None else update.time.replace(tzinfo=UTC)
    reason = f"order {update.order_id} resolved" + (f" by {update.actor}" if update.actor else "") + f" ({reporter})"
    return CloseRequest(incident_id=update.incident_id, time=time, reason=reason[:CLOSE_REASON_MAX])


def order_target(update: DispatchUpdate) -> str | None:
    """The route target in the id of the order ``update`` reports on (``<incident>:<target>:<attempt>``)."""
    prefix = f"{update.incident_id}:"
    if not update.order_id.startswith(prefix) or ":" not in update.order_id[len(prefix) :]:
        return None
    return update.order_id[len(prefix) : update.order_id.rfind(":")]


def _serves_one_cell_of_an_area(update: DispatchUpdate) -> bool:
    """One grid's order of an area incident (a flood warning's ``cell:<id>``): resolving it closes that grid's
    part, not the warning, which closes when it expires or on request."""
    target = order_target(update)
    return target is not None and target.startswith(CELL_TARGET_PREFIX)


def next_order(order: DispatchOrder, now: datetime) -> DispatchOrder | None:
    """The order that follows an overdue one, or None when the escalation ladder is exhausted."""
    attempt = order.attempt + 1
    if attempt > MAX_ATTEMPT:
        return None
    interval = (order.deadline - order.created_at) if order.deadline else timedelta(minutes=10)
    target = UPWARD.get(attempt, order.target)
    return order.model_copy(
        update={
            "id": f"{order.incident_id}:{target}:{attempt}",
            "target": target,
            "connector": connector_for_target(target),
            "attempt": attempt,
            "created_at": now,
            "deadline": now + interval,
            "summary": f"{'re-dispatch' if target == order.target else 'escalated'}: {order.summary}",
        }
    )


class Escalator:
    """Tracks order deadlines and fires re-dispatch / escalation when they pass."""

    def __init__(self, nc: NatsClient, tick_s: float = 1.0, fence: Fence = UNFENCED, term: int | None = None):
        """``term``: the lease term of the active hub, which names its durable consumer (hub.availability.terms)."""
        self.fence = fence  # checked before every ack, deadline write and publish (hub.availability)
        self.tick_s = tick_s
        self.fired = 0
        self._kv: KeyValue | None = None
        self.follower = Follower(
            nc,
            topology.DISPATCH_STREAM,
            f"{topology.PREFIX}.dispatch.>",
            Start(seq=1),
            name="escalation",
            durable=terms.named(CONSUMER, term),
            batch=100,
        )
        self.deadlines_follower = Follower(
            nc, BUCKET_STREAM, f"{BUCKET_SUBJECT_PREFIX}>", Start(seq=1), name="escalation deadlines", batch=256
        )
        self._due: dict[str, float] = {}  # the bucket's live keys → their deadline (epoch seconds), mirrored
        self._tasks: list[asyncio.Task[None]] = []
        self.sizes = SizeGuard(lambda: self.js)
        self._bind(nc)

    def _bind(self, nc: NatsClient) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10.0)

    async def use_connection(self, nc: NatsClient) -> None:
        """Carry on with ``nc`` (the hub replaced a connection the server closed, :mod:`hub.nats.natslink`): the
        deadlines bucket and the durable consumer are opened again through it."""
        await self.stop()
        self._bind(nc)
        self.follower.use_connection(nc)
        self.deadlines_follower.use_connection(nc)
        await self.start()

    async def start(self) -> None:
        """Take over from the consumers of earlier terms (where their acknowledgements end), then follow."""
        self._kv = await open_key_value(self.js, BUCKET)
        earlier = await terms.retire(self.js, topology.DISPATCH_STREAM, CONSUMER, keep=self.follower.durable or "")
        if earlier and self.follower.next_seq is not None:
            self.follower.next_seq = max(self.follower.next_seq, earlier + 1)
        self._tasks = [
            asyncio.create_task(self._follow(), name="cityhub.escalation.follow"),
            asyncio.create_task(self._mirror(), name="cityhub.escalation.mirror"),
            asyncio.create_task(self._timer(), name="cityhub.escalation.timer"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    def health(self) -> dict[str, Any]:
        return {
            "running": bool(self._tasks) and not any(task.done() for task in self._tasks),
            "fired": self.fired,
            "deadlines": len(self._due),
            "consumer": self.follower.health(),
            "deadlines_consumer": self.deadlines_follower.health(),
        }

    # following orders and updates

    async def _follow(self) -> None:
        """Every order and update once, in stream order (:mod:`hub.nats.follower`: through NATS restarts and a lost
        consumer); one that cannot be acted on while NATS is away is retried until it can. The fence is checked
        before each: a deposed hub acts on nothing more (its consumer's acks stop with it)."""
        async for message in self.follower.messages():
            self.fence.check()
            await retry(
                functools.partial(self._observe, message),
                retry_on=NATS_TROUBLE,
                backoff=Backoff(initial_s=0.2, max_s=5.0),
                on_retry=functools.partial(_retrying, message),
            )

    async def _observe(self, msg: Delivered) -> None:
        if from_below(msg.msg.headers):  # a lower tier's order or update: its own escalator acts on it
            return
        try:
            envelope = wire.decode(msg.data)
            if envelope["type"] == wire.TYPE_DISPATCH_ORDER:
                await self._track(DispatchOrder.model_validate(envelope["data"]))
            elif envelope["type"] == wire.TYPE_DISPATCH_UPDATE:
                update = DispatchUpdate.model_validate(envelope["data"])
                await self._settle(update)
                if update.status is DispatchStatus.RESOLVED and not _serves_one_cell_of_an_area(update):
                    request = close_request_for(update, reporter=msg.subject.rsplit(".", 1)[-1])
                    await self._clear_incident(update.incident_id)
                    await self._request_close(request)
        except (ValueError, ValidationError) as exc:  # not ours to judge: the delivering connector DLQs it
            log.debug("escalation ignores %s: %s", msg.subject, exc)

    async def _track(self, order: DispatchOrder) -> None:
        if order.deadline is None:
            return
        assert self._kv is not None
        key = deadline_key(order.incident_id, order.target)
        current = await self._get(key)
        if current is not None and current[0]["attempt"] > order.attempt:
            return
        await self._kv.put(key, orjson.dumps(order.model_dump(mode="json")))
        self._due[key] = order.deadline.timestamp()  # the mirror confirms it when it reads the bucket

    async def _settle(self, update: DispatchUpdate) -> None:
        target = order_target(update)
        if target is None:
            return
        key = deadline_key(update.incident_id, target)
        assert self._kv is not None
        if update.status in _DONE:
            await self._forget(key)
        elif update.status is DispatchStatus.REJECTED:
            current = await self._get(key)
            if current is not None:
                await self._fire(key, DispatchOrder.model_validate(current[0]), current[1])

    async def _clear_incident(self, incident_id: str) -> None:
        """A resolved incident closes: no order of it escalates any more."""
        assert self._kv is not None
        prefix = deadline_key(incident_id, "")
        for key in [key for key in self._due if key.startswith(prefix)]:
            await self._forget(key)

    async def _forget(self, key: str) -> None:
        assert self._kv is not None
        with contextlib.suppress(KeyNotFoundError):
            await self._kv.delete(key)
        self._due.pop(key, None)

    async def _request_close(self, request: CloseRequest) -> None:
        """A resolved order closes its incident: the close request goes through ingest, in order with the
        reports (see :class:`hub.models.CloseRequest`)."""
        await publish_close_request(self.js, request, topology.DISPATCH_REQUESTER)

    async def _get(self, key: str) -> tuple[dict[str, Any], int] | None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        if not entry.value or entry.revision is None:
            return None
        return orjson.loads(entry.value), entry.revision

    # firing

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.fence.check()
            try:
                await self._fire_due()
            except Exception as exc:  # NATS away: the deadlines are still in KV for the next tick
                log.warning("escalation tick failed (%s: %s)", type(exc).__name__, exc)

    async def _mirror(self) -> None:
        """Keep :attr:`_due` equal to the bucket: every put and delete, in order, through NATS restarts."""
        async for message in self.deadlines_follower.messages():
            key = message.subject[len(BUCKET_SUBJECT_PREFIX) :]
            deadline = None
            if (message.msg.headers or {}).get("KV-Operation") not in _REMOVED:
                deadline = orjson.loads(message.data).get("deadline")
            if deadline is None:
                self._due.pop(key, None)
            else:
                self._due[key] = datetime.fromisoformat(deadline).timestamp()

    async def _fire_due(self) -> None:
        now = time.time()
        for key in [key for key, deadline in self._due.items() if deadline <= now]:
            current = await self._get(key)
            if current is None:
                continue
            order = DispatchOrder.model_validate(current[0])
            if order.deadline is not None and order.deadline.timestamp() <= now:
                await self._fire(key, order, current[1])

    async def _fire(self, key: str, order: DispatchOrder, revision: int) -> None:
        assert self._kv is not None
        now = datetime.now(UTC)
        following = next_order(order, now)
        incident = Incident(
            id=order.incident_id,
            category=order.category,
            severity=order.severity,
            opened_at=order.created_at,
            updated_at=now,
            grid_path=[order.grid_cell] if order.grid_cell else [],
            escalation_level=order.attempt,
            escalate_at=following.deadline if following else None,
        )
        district = order.grid_cell.id if order.grid_cell and order.grid_cell.level == "district" else None
        outputs = [
            incident_output(
                incident,
                incident.id,
                incident.category,
                incident.severity,
                district,
                IncidentChange.ESCALATED,
                f"{order.incident_id}:escalated:{order.attempt}",
                now,
            )
        ]
        if following is not None:
            outputs.append(dispatch_output(following))
        self.fence.check()
        for output in await self.sizes.fit(outputs, self.nc.max_payload):
            headers = {**output.all_headers(), **self.fence.headers(topology.stream_of(output.subject))}
            await self.js.publish(output.subject, output.data, headers=headers)
        try:
            if following is not None and following.target == order.target:
                await self._kv.update(key, orjson.dumps(following.model_dump(mode="json")), last=revision)
                assert following.deadline is not None  # next_order always sets one
                self._due[key] = following.deadline.timestamp()
            else:
                await self._kv.delete(key, last=revision)
                self._due.pop(key, None)
        except KeyWrongLastSequenceError:
            pass  # the order was settled or re-tracked meanwhile: that newer state stands
        self.fired += 1
        log.warning(
            "incident %s: order to %s overdue (attempt %d); %s",
            order.incident_id,
            order.target,
            order.attempt,
            f"sent attempt {following.attempt} to {following.target}" if following else "ladder exhausted",
        )
