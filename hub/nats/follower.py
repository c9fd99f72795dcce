"""Following a stream: reading one JetStream stream in order, and carrying on through whatever happens to the
consumer on the way — a nats-server restart, a deleted consumer, deliveries lost in flight.

A :class:`Follower` reads through a pull consumer (:mod:`hub.nats.fetcher`) and remembers the stream sequence of
the last message its caller took. Whenever delivery breaks it creates a new consumer that starts at the next
sequence, retrying with backoff while NATS is away, so the caller gets every message once, in stream order,
with no gap. Each consumer's configuration is built anew (nats-py's ordered consumer re-uses and mutates one:
after a restart it asks for a start sequence and a start time at once, and the server refuses it with
err_code 10094 for ever). What it is doing and the last error are in :meth:`Follower.health`.

Its consumer is ephemeral (no acks; the server removes it once the follower is gone), or durable with
``durable=``: then a message is acknowledged when the caller asks for the next one, and a follower that starts
takes over where the durable consumer's acknowledgements end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from hub.backoff import Backoff
from hub.nats.fetcher import ConsumerGone, Delivered, Fetcher

log = logging.getLogger("cityhub.follower")

# What breaks a consumer or the calls that re-create it while NATS is away or restarting.
NATS_TROUBLE = (nats.errors.Error, asyncio.TimeoutError, OSError)
EPHEMERAL_INACTIVE_S = 60.0
REST_WAIT_S = 0.01  # how long a batch waits for more once its first message is there


@dataclass(frozen=True)
class Start:
    """Where a follower begins: at stream sequence ``seq`` or at the first message stored at or after ``time``
    (one of the two). A durable follower whose consumer already exists starts where that consumer's acknowledgements
    end instead."""

    seq: int | None = None
    time: datetime | None = None

    def __post_init__(self) -> None:
        if (self.seq is None) == (self.time is None):
            raise ValueError(f"a follower starts at a sequence or at a time, not {self}")


async def next_sequence(nc: NatsClient, stream: str) -> int:
    """The sequence the next message stored in ``stream`` will get, the start of "new messages only" (1 while
    the stream does not exist: a follower waits for it)."""
    try:
        return (await nc.jetstream().stream_info(stream)).state.last_seq + 1
    except NotFoundError:
        return 1


class Follower:
    """Every message of ``stream`` on ``subject`` from ``start`` on, in stream order, across consumer failures
    (see the module docstring). ``name`` says whose follower it is in logs and health."""

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        subject: str,
        start: Start,
        *,
        name: str,
        durable: str | None = None,
        batch: int = 256,
        idle_s: float = 5.0,
        ack_wait_s: float = 30.0,
    ):
        self.nc = nc
        self.js = nc.jetstream(timeout=10.0)
        self.stream = stream
        self.subject = subject
        self.name = name
        self.durable = durable
        self.batch = batch
        self.idle_s = idle_s
        self.ack_wait_s = ack_wait_s
        self.next_seq = start.seq  # the first sequence the caller has not taken; None until one is known
        self.start_time = start.time
        self.pending: int | None = None  # messages the consumer still holds for the caller, once known
        self.recoveries = 0
        self.last_error: str | None = None
        self.failing_since: float | None = None
        self._consumer: str | None = None
        self._fetcher: Fetcher | None = None
        self._broken = True  # no consumer yet, or the one there is must be replaced
        self._opened = False
        self._last_consumer_seq = 0  # consumer sequences are consecutive per consumer; a gap is a lost delivery
        self._fetched_up_to = 0  # the highest stream sequence handed out, so a redelivery is not handed twice
        self._backoff = Backoff(initial_s=0.1, max_s=5.0)

    async def messages(self, *, until_caught_up: bool = False) -> AsyncGenerator[Delivered, None]:
        """Messages in stream order until the caller stops (or, with ``until_caught_up``, until none are
        pending). A message counts as taken when the caller asks for the next one."""
        try:
            while not (until_caught_up and self.pending == 0):
                for message in await self._next_batch():
                    yield message
                    await self._taken(message)
                    self.pending = message.pending
        finally:
            await self._finish()

    def use_connection(self, nc: NatsClient) -> None:
        """Carry on through ``nc`` (a replaced connection): the next fetch re-creates the consumer on it at
        the next sequence. Call it while no :meth:`messages` loop runs."""
        self.nc = nc
        self.js = nc.jetstream(timeout=10.0)
        self._fetcher = None
        self._broken = True

    def health(self) -> dict[str, Any]:
        """For /health: ``following`` is false while the consumer is being re-created, ``recoveries`` counts
        the outages, ``last_error`` says what broke last (kept after recovery)."""
        return {
            "stream": self.stream,
            "subject": self.subject,
            "consumer": self._consumer,
            "following": not self._broken and self.failing_since is None,
            "next_sequence": self.next_seq,
            "pending": self.pending,
            "recoveries": self.recoveries,
            "last_error": self.last_error,
            "failing_for_s": round(time.monotonic() - self.failing_since, 1) if self.failing_since else None,
        }

    async def _next_batch(self) -> list[Delivered]:
        """The next messages that continue the sequence; re-creates the consumer as often as it takes."""
        while True:
            try:
                if self._broken:
                    await self._open()
                    self._recovered()
                    if self.pending == 0:
                        return []  # nothing stored yet: lets a caller that stops when caught up stop
                received = await self._fetch()
            except ConsumerGone as exc:
                await self._failed(f"consumer {self._consumer} is gone ({exc})")
                continue
            except NATS_TROUBLE as exc:
                await self._failed(f"{type(exc).__name__}: {exc}")
                continue
            batch = self._continuing(received)
            if not self._broken:
                self._recovered()
            if batch or not received:
                return batch

    async def _fetch(self) -> list[Delivered]:
        """The next message as soon as there is one (a pull for a whole batch would wait until the batch is
        full or ``idle_s`` has passed), with whatever else is there by then; an empty list after ``idle_s``."""
        assert self._fetcher is not None
        first = await self._fetcher.fetch(1, timeout=self.idle_s)
        if not first:
            return []
        return first + await self._fetcher.fetch(self.batch - 1, timeout=REST_WAIT_S)

    def _continuing(self, received: list[Delivered]) -> list[Delivered]:
        """The part of ``received`` up to the first lost delivery, without messages handed out before
        (redeliveries). After a lost delivery the consumer is dropped, to be re-created at the next sequence."""
        batch = []
        for message in received:
            if message.consumer_seq != self._last_consumer_seq + 1:
                self._drop(f"deliveries lost in flight before stream sequence {message.seq}")
                break
            self._last_consumer_seq = message.consumer_seq
            if message.seq > self._fetched_up_to:
                batch.append(message)
                self._fetched_up_to = message.seq
        return batch

    async def _taken(self, message: Delivered) -> None:
        self.next_seq = message.seq + 1
        if self.durable is not None:
            with contextlib.suppress(*NATS_TROUBLE):  # a lost ack: the next one acknowledges it too (AckAll)
                await message.msg.ack()

    # the consumer

    async def _open(self) -> None:
        """A new consumer that starts at the next sequence (a durable one replaces the old one, whose
        delivery pointer may be past messages it delivered to no one)."""
        await self._release()
        if self.durable is not None:
            await self._take_over_durable()
        info = await self.js.add_consumer(self.stream, self._config())
        self._consumer = info.name
        self.pending = info.num_pending
        self._last_consumer_seq = 0
        self._fetched_up_to = (self.next_seq or 1) - 1
        self._fetcher = await Fetcher(self.nc, self.stream, info.name).start()
        self._broken = False
        self._opened = True

    async def _take_over_durable(self) -> None:
        """Delete the durable consumer if it exists; the first time, start where its acknowledgements end."""
        assert self.durable is not None
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return
        if not self._opened:
            self.next_seq = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
        await self.js.delete_consumer(self.stream, self.durable)

    def _config(self) -> ConsumerConfig:
        if self.next_seq is not None:
            start: dict[str, Any] = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": self.next_seq}
        else:
            start = {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": self.start_time}
        if self.durable is None:
            return ConsumerConfig(
                filter_subject=self.subject,
                ack_policy=AckPolicy.NONE,
                mem_storage=True,
                inactive_threshold=EPHEMERAL_INACTIVE_S,
                **start,
            )
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.subject,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            **start,
        )

    def _drop(self, reason: str) -> None:
        """Give up on the consumer: the next fetch creates a new one at the next sequence."""
        self._broken = True
        self._note(reason)

    async def _failed(self, reason: str) -> None:
        self._drop(reason)
        await self._backoff.wait()

    def _note(self, reason: str) -> None:
        """Log a failure once per outage (and keep it for health); later ones of the same outage at debug."""
        self.last_error = reason
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            self.recoveries += 1
            log.warning(
                "%s: cannot follow %s (%s) from sequence %s: %s; re-creating its consumer there until that works",
                self.name,
                self.stream,
                self.subject,
                self.next_seq or "(first)",
                reason,
            )
        else:
            log.debug("%s: following %s still failing: %s", self.name, self.stream, reason)

    def _recovered(self) -> None:
        self._backoff.reset()
        if self.failing_since is not None:
            log.warning(
                "%s: following %s again from sequence %s (consumer %s) after %.1f s",
                self.name,
                self.stream,
                self.next_seq,
                self._consumer,
                time.monotonic() - self.failing_since,
            )
            self.failing_since = None

    async def _release(self) -> None:
        """Stop fetching from the current consumer. An ephemeral one left behind is removed by the server once
        inactive (deleting it here would wait for a server that may be away)."""
        fetcher, self._fetcher, self._broken = self._fetcher, None, True
        if fetcher is not None:
            with contextlib.suppress(*NATS_TROUBLE):
                await fetcher.stop()

    async def _finish(self) -> None:
        """The caller is done: a durable consumer's acknowledgements reach the server before a successor
        starts; an ephemeral consumer is deleted."""
        await self._release()
        with contextlib.suppress(*NATS_TROUBLE):
            if self.durable is not None:
                await self.nc.flush(timeout=5)
            elif self._consumer is not None:
                await self.js.delete_consumer(self.stream, self._consumer)
        self._consumer = None
