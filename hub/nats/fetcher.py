"""Fetching batches from a JetStream pull consumer with one callback subscription.

Why: nats-py's ``PullSubscription.fetch`` waits for every message with a task and a uuid of its own, and
its ``Msg.metadata`` parses the ack subject into dataclasses and a datetime on every access; together
they cost more per message than the pipeline's own work on it. The protocol is small (ADR-13): publish
``{"batch": n, "no_wait": true}`` or ``{"batch": n, "expires": ns}`` to
``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` with a reply inbox; the server sends up to ``n``
messages there and, when it has fewer, ends the request with a status message (404 at once for
``no_wait``, 408 at expiry). Each request gets its own reply subject under one wildcard subscription, so
a late status of an earlier request never ends a later one. Like nats-py, a fetch first takes what is
there (``no_wait``) and only then waits up to its timeout for more.

With ``prefetch`` a fetch that returns messages asks for the next batch at once, so the server delivers it
while the caller processes this one: the pipeline's CPU work then overlaps the server's delivery instead of
waiting for a round trip per batch. Messages are taken in stream order either way.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

_STATUS = "Status"
_DESCRIPTION = "Description"
_END_OF_REQUEST = {"404", "408", "409"}  # no messages, request expired, request ended (max waiting, max bytes)
_NO_RESPONDERS = "503"  # no consumer answers the pull request


class ConsumerGone(Exception):
    """The consumer no longer exists (deleted, or its stream was): the caller re-creates it."""


@dataclass(slots=True)
class Delivered:
    """One message from the consumer, with what its ack subject says about it."""

    msg: Msg
    seq: int  # stream sequence
    consumer_seq: int  # consecutive per delivery: a gap means a delivery was lost in flight
    stored_at: float  # when the stream stored it, epoch seconds

    @property
    def subject(self) -> str:
        return self.msg.subject

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def pending(self) -> int:
        """How many messages the consumer held after this one when it was delivered (the ack subject's last
        number; read on demand, the pipeline does not need it)."""
        tokens = self.msg.reply.split(".")
        return int(tokens[8 if len(tokens) == 9 else 10])


def delivered(msg: Msg) -> Delivered:
    """Read the stream sequence and timestamp from the ack subject: ``$JS.ACK.<stream>.<consumer>.<delivered>.
    <stream seq>.<consumer seq>.<ns>.<pending>``, or the 12-token form with domain and account hash after
    ``$JS.ACK`` and a trailing token."""
    tokens = msg.reply.split(".")
    first = 2 if len(tokens) == 9 else 4
    return Delivered(msg, int(tokens[first + 3]), int(tokens[first + 4]), int(tokens[first + 5]) / 1e9)


@dataclass
class _Request:
    id: int
    wanted: int
    received: list[Delivered]
    done: asyncio.Future[None]
    gone: str | None = None  # why the consumer is gone, when the server said so


class Fetcher:
    """Fetches batches of one pull consumer (created by the caller) on ``nc``."""

    def __init__(self, nc: NatsClient, stream: str, consumer: str, prefetch: bool = False):
        self.nc = nc
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.prefetch = prefetch
        self._inbox = nc.new_inbox()
        self._ids = itertools.count(1)
        self._request: _Request | None = None  # the request that arriving messages belong to
        self._ahead: _Request | None = None  # a prefetch request nobody is waiting on yet
        self._late: list[Delivered] = []  # arrived after their fetch returned: the next fetch starts with them
        self._subscription: Subscription | None = None

    async def start(self) -> Fetcher:
        self._subscription = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        return self

    async def stop(self) -> None:
        self._ahead = self._request = None
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def fetch(self, batch: int, timeout: float) -> list[Delivered]:
        """Up to ``batch`` messages: what is available now, else what arrives within ``timeout`` seconds
        (an empty list when nothing does). Raises :class:`ConsumerGone` when the consumer does not exist."""
        if self._late:
            received, self._late = self._late[:batch], self._late[batch:]
        else:
            received = await self._take_ahead(timeout)
        if not received:
            received = await self._pull({"batch": batch, "no_wait": True}, batch, timeout)
        if not received:
            received = await self._pull({"batch": batch, "expires": int(timeout * 1e9)}, batch, timeout)
        if len(received) > batch:  # a prefetch request also collects what the one before it still delivered
            received, self._late = received[:batch], received[batch:] + self._late
        if received and self.prefetch and self._ahead is None:
            self._ahead = await self._send({"batch": batch, "expires": int(timeout * 1e9)}, batch)
        return received

    async def _send(self, request: dict[str, object], batch: int) -> _Request:
        """Ask for up to ``batch`` messages; what arrives is collected on the returned request."""
        current = self._request = _Request(next(self._ids), batch, [], asyncio.get_running_loop().create_future())
        try:
            await self.nc.publish(self.next_subject, orjson.dumps(request), reply=f"{self._inbox}.{current.id}")
        except BaseException:
            self._request = None
            raise
        return current

    async def _pull(self, request: dict[str, object], batch: int, timeout: float) -> list[Delivered]:
        return await self._collect(await self._send(request, batch), timeout)

    async def _take_ahead(self, timeout: float) -> list[Delivered]:
        """What the prefetch request brought: at once when something came, else what comes within its expiry."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return []
        if ahead.received and ahead.gone is None:  # the rest of it arrives after this fetch: kept for the next
            self._request = None
            return ahead.received
        return await self._collect(ahead, timeout)

    async def _collect(self, current: _Request, timeout: float) -> list[Delivered]:
        try:
            await asyncio.wait_for(asyncio.shield(current.done), timeout + 1.0)  # the server ends it by then
        except TimeoutError:
            pass  # connection trouble: return what came; later replies go to the next fetch, in order
        finally:
            self._request = None
        if current.gone is not None:
            raise ConsumerGone(current.gone)
        return current.received

    async def _on_message(self, msg: Msg) -> None:
        current = self._request
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is not None:
            if current is not None and msg.subject.endswith(f".{current.id}"):
                self._end(current, status, msg.headers.get(_DESCRIPTION, "") if msg.headers else "")
            return
        if current is None:
            self._late.append(delivered(msg))
            return
        current.received.append(delivered(msg))
        if len(current.received) >= current.wanted:
            _finish(current)

    @staticmethod
    def _end(request: _Request, status: str, description: str) -> None:
        if status == _NO_RESPONDERS or (status == "409" and "deleted" in description.lower()):
            request.gone = f"{status} {description}".strip() if status != _NO_RESPONDERS else "no responders"
        elif status not in _END_OF_REQUEST:
            return  # e.g. 100 idle heartbeat: the request goes on
        _finish(request)


def _finish(request: _Request) -> None:
    if not request.done.done():
        request.done.set_result(None)
