"""Publishing to JetStream in batches: ADR-50 fast ingest on nats-py's core client, with a fallback to
per-message ``publish_async`` for servers and streams without it.

Why: a per-message publish ack costs the client more than processing the event it belongs to (nats-py
creates a future and parses a JSON ack per message). Fast ingest (nats-server ≥ 2.14, streams with
``allow_batched``) stores every message as it arrives and answers with a flow ack every ``flow`` messages
and one final ack for the batch. nats-py has no client for it, so this module speaks it on plain
``publish`` calls:

- the batch lives on one stream; its id is the last token of a private inbox, and every message carries
  the reply subject ``<inbox>.<flow>.fail.<batch sequence>.<operation>.$FI`` (operation 0 starts the batch,
  1 appends, 2 marks the last message, which commits it — not the separate empty end-of-batch message,
  which core subscribers of the subject would receive);
- the server answers on that inbox: ``{"type": "ack", "seq": n}`` flow acks (the publisher stalls when
  ``flow × window`` messages are unacknowledged), an error reply for a message it refuses (too large, say),
  and the final publish ack whose ``count`` says how many messages it took in order;
- gap mode ``fail``: a lost or refused message ends the batch, so ``count`` is exact and everything after it
  is handed back. A message the server took was stored or — same ``Nats-Msg-Id`` within the duplicate
  window — dropped as a duplicate, which is what re-publication after a crash relies on.

:class:`Publisher` returns the messages that are not known to be stored; callers publish those again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hub import _core, topology
from hub.nats.frames import can_write_frames, write_frames
from hub.nats.sizes import SizeGuard

log = logging.getLogger("cityhub.publisher")

FLOW = 100  # messages per flow ack: the server acks at least this often
# Flow acks the publisher may wait for before it stalls. A pipeline batch of 500 events makes 1,000-1,500
# messages: with room for all of them they are in the socket before the pipeline starts processing the next
# batch (which holds the event loop), so the server stores one batch while the hub processes the next.
WINDOW = 20
# Messages handed to the client at once, between flow-window and fence checks; a run also ends once it holds
# RUN_BYTES of payload, so a batch of large messages (dead letters keep their input) is not copied whole at once.
RUN = FLOW * WINDOW // 2
RUN_BYTES = 1 << 20
_START, _APPEND, _COMMIT = 0, 1, 2
_NOT_ENABLED = 10205  # JSBatchPublishNotEnabled: the stream lacks allow_batched
_UNKNOWN_BATCH = 10208  # JSBatchPublishUnknownBatchID


@dataclass(slots=True)
class Message:
    subject: str
    data: bytes
    msg_id: str
    headers: dict[str, str] | None = None

    def all_headers(self, conditions: dict[str, str] | None = None) -> dict[str, str]:
        """Its msg id, its own headers and the ``conditions`` it is published under (the fence's)."""
        headers = {topology.HEADER_MSG_ID: self.msg_id}
        if self.headers:
            headers.update(self.headers)
        if conditions:
            headers.update(conditions)
        return headers


class FastIngestUnsupported(Exception):
    """The server or the stream does not take fast-ingest batches."""


class BatchFailed(Exception):
    """A fast-ingest batch ended without a final ack (timeout, error reply, lost connection)."""


@dataclass
class _Replies:
    """What the server said on a batch's inbox."""

    acked: int = 0
    refused: dict[int, str] = field(default_factory=dict)  # batch sequence → reason
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    final: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def take(self, reply: dict[str, Any], sequence: int) -> None:
        """One reply, sent to the reply subject of the message with batch sequence ``sequence``."""
        kind = reply.get("type")
        if kind == "ack":
            self.acked = max(self.acked, int(reply.get("seq", 0)))
            self.progress.set()
        elif kind == "err":
            self.refused[sequence or int(reply.get("seq", 0))] = _describe(reply.get("error"))
        elif kind == "gap":
            pass  # gap mode "fail": the final ack that follows counts the messages taken before the gap
        elif "batch" in reply:
            self.finish(reply)
        elif "error" in reply:
            self._error(reply["error"], sequence)
        else:  # a plain publish ack: the server stored the message as an ordinary publish
            self.finish(FastIngestUnsupported("the server answered with a plain publish ack"))

    def _error(self, error: Any, sequence: int) -> None:
        code = error.get("err_code") if isinstance(error, dict) else None
        if code == _NOT_ENABLED:
            self.finish(FastIngestUnsupported(_describe(error)))
        elif code == _UNKNOWN_BATCH:  # the batch was abandoned (or never began): nothing more is taken
            self.finish({"count": 0})
        else:  # this message was refused, which ends the batch; its final ack follows
            self.refused[sequence] = _describe(error)

    def finish(self, outcome: dict[str, Any] | Exception) -> None:
        if self.final.done():
            return
        if isinstance(outcome, Exception):
            self.final.set_exception(outcome)
        else:
            self.final.set_result(outcome)
        self.progress.set()


def _describe(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('description', 'refused')} (code {error.get('err_code', error.get('code'))})"
    return str(error)


def _reply_sequence(reply_subject: str) -> int:
    """The batch sequence in ``<inbox>.<flow>.<gap>.<sequence>.<operation>.$FI``."""
    try:
        return int(reply_subject.rsplit(".", 3)[1])
    except (IndexError, ValueError):
        return 0


class Fence(Protocol):
    """What this process's writes are conditional on (hub.availability.OutputFence: the active hub's lease).
    The pipeline and the escalator gate every publish, ack and state write on it."""

    def check(self) -> None:
        """Raise unless this process may write now."""

    def headers(self, stream: str) -> dict[str, str]:
        """Headers that make JetStream refuse a write to ``stream`` once another process holds the right to write."""

    async def refresh(self) -> None:
        """After a publication left messages unstored: renew what :meth:`headers` rely on, if it vanished."""


class Unfenced:
    """The fence of a process that runs alone: every write is allowed, unconditionally."""

    def check(self) -> None:
        pass

    def headers(self, stream: str) -> dict[str, str]:
        return {}

    async def refresh(self) -> None:
        pass


UNFENCED = Unfenced()


async def publish_fast_batch(
    nc: NatsClient, messages: Sequence[Message], timeout: float = 10.0, fence: Fence = UNFENCED, stream: str = ""
) -> tuple[list[int], str | None]:
    """Publish ``messages`` (all bound for ``stream``) as one fast-ingest batch; return the indices of the
    messages that are not known to be stored, and why. Raises :class:`FastIngestUnsupported` when the stream or
    server cannot take the batch and :class:`BatchFailed` when the batch ends without a final ack.
    ``fence.check`` runs before each run of messages (:func:`_runs`) is handed to the client (raising stops the batch),
    and the first message carries ``fence``'s headers for ``stream``: when the server refuses it, gap mode
    ``fail`` ends the batch, so nothing of it is stored. (Only the first: a clustered stream refuses a second
    message that expects the same subject's sequence while the first is still being replicated.)"""
    replies = _Replies()

    async def on_reply(msg: Msg) -> None:
        try:
            replies.take(orjson.loads(msg.data), _reply_sequence(msg.subject))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            replies.finish(BatchFailed(f"unreadable reply {msg.data[:200]!r}: {exc}"))

    inbox = nc.new_inbox()
    subscription = await nc.subscribe(f"{inbox}.>", cb=on_reply)
    prefix = f"{inbox}.{FLOW}.fail."
    conditions: dict[str, str] | None = fence.headers(stream)
    send = _send_frames if can_write_frames(nc) else _send_each
    try:
        for start, end in _runs(messages):
            if not await _window_open(replies, end, timeout):
                break  # the server ended the batch (refused a message); its final ack says how far it got
            fence.check()
            await send(nc, messages[start:end], prefix, start + 1, len(messages), conditions)
            conditions = None
        final = await asyncio.wait_for(replies.final, timeout)
    except TimeoutError:
        raise BatchFailed(f"no final ack within {timeout:g} s") from None
    finally:
        await subscription.unsubscribe()
    # A refusal ends the batch in gap mode "fail"; counting from the first refusal guards against one that
    # would not, so a refused message is never reported stored.
    taken = min([int(final.get("count", 0)), *(sequence - 1 for sequence in replies.refused if sequence > 0)])
    refusals = [
        f"{messages[sequence - 1].msg_id} refused: {reason}"
        for sequence, reason in sorted(replies.refused.items())
        if 0 < sequence <= len(messages)
    ]
    not_taken = list(range(taken, len(messages)))
    return not_taken, ("; ".join(refusals) or "batch ended early") if not_taken else None


def _runs(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """``messages`` cut into runs of at most ``RUN`` messages and, but for a run of one, ``RUN_BYTES`` of payload."""
    runs, start, size = [], 0, 0
    for index, message in enumerate(messages):
        if index > start and (index - start == RUN or size + len(message.data) > RUN_BYTES):
            runs.append((start, index))
            start, size = index, 0
        size += len(message.data)
    if start < len(messages):
        runs.append((start, len(messages)))
    return runs


async def _send_frames(
    nc: NatsClient, chunk: Sequence[Message], prefix: str, first: int, total: int, conditions: dict[str, str] | None
) -> None:
    """Messages ``first..`` of a batch of ``total``, as frames built in the core and written in one call."""
    frames = _core.fast_ingest_frames(chunk, prefix, first, total, conditions or None)
    await write_frames(nc, frames, len(chunk), sum(len(message.data) for message in chunk))


async def _send_each(
    nc: NatsClient, chunk: Sequence[Message], prefix: str, first: int, total: int, conditions: dict[str, str] | None
) -> None:
    """The same, one ``publish`` per message (a nats-py without what :mod:`hub.nats.frames` uses)."""
    for sequence, message in enumerate(chunk, start=first):
        operation = _COMMIT if sequence == total else _START if sequence == 1 else _APPEND
        reply = f"{prefix}{sequence}.{operation}.$FI"
        await nc.publish(message.subject, message.data, reply=reply, headers=message.all_headers(conditions))
        conditions = None


async def _window_open(replies: _Replies, sequence: int, timeout: float) -> bool:
    """Wait while message ``sequence`` would leave more than ``FLOW × WINDOW`` messages unacknowledged; False
    once the batch has ended."""
    while sequence > replies.acked + FLOW * WINDOW and not replies.final.done():
        replies.progress.clear()
        try:
            await asyncio.wait_for(replies.progress.wait(), timeout)
        except TimeoutError:
            raise BatchFailed(f"no flow ack within {timeout:g} s") from None
    return not replies.final.done()


class Publisher:
    """Publishes messages to their streams, one fast-ingest batch per stream and call, concurrently; falls
    back to per-message ``publish_async`` for good once the server shows it cannot take fast ingest."""

    def __init__(
        self,
        nc: NatsClient,
        stream_of: Callable[[str], str] = topology.stream_of,
        timeout: float = 10.0,
        fast_ingest: bool = True,
        fence: Fence = UNFENCED,
    ):
        self.fence = fence
        self.stream_of = stream_of
        self.timeout = timeout
        self.fast = fast_ingest
        self.sizes = SizeGuard(lambda: self.js)
        self.use_connection(nc)

    def use_connection(self, nc: NatsClient) -> None:
        """Publish on ``nc`` from now on (the hub replaces a connection the server closed)."""
        self.nc = nc
        self.js = nc.jetstream(timeout=self.timeout)

    async def publish_until_stored(self, messages: Sequence[Message]) -> None:
        """Publish ``messages``, each made to fit the server's max_payload first (:mod:`hub.nats.sizes`), and retry
        the ones not known to be stored (same msg ids, so nothing is stored twice), with a growing pause, until
        JetStream has stored them all, however long NATS is away."""
        pending = list(await self.sizes.fit(messages, self.nc.max_payload))
        attempt = 0
        while pending:
            failed, reason = await self.publish(pending)
            if failed:
                attempt += 1
                log.warning("%d of %d messages not stored (%s); retry %d", len(failed), len(pending), reason, attempt)
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                await self.fence.refresh()
            pending = failed

    async def publish(self, messages: Sequence[Message]) -> tuple[list[Message], str | None]:
        """Publish ``messages``; return the ones not known to be stored, and why."""
        self.fence.check()
        if self.fast:
            try:
                return await self._publish_fast(messages)
            except FastIngestUnsupported as exc:
                log.warning("JetStream fast ingest unavailable (%s); publishing message by message", exc)
                self.fast = False
        return await self._publish_each(messages)

    async def _publish_fast(self, messages: Sequence[Message]) -> tuple[list[Message], str | None]:
        by_stream: dict[str, list[Message]] = {}
        for message in messages:
            by_stream.setdefault(self.stream_of(message.subject), []).append(message)
        groups = list(by_stream.values())
        outcomes = await asyncio.gather(
            *(
                publish_fast_batch(self.nc, group, self.timeout, self.fence, stream)
                for stream, group in by_stream.items()
            ),
            return_exceptions=True,
        )
        self.fence.check()  # a batch the fence stopped ends the publication here, not in a retry
        failed, reasons = [], []
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, FastIngestUnsupported):
                raise outcome
            if isinstance(outcome, BaseException):
                failed.extend(group)
                reasons.append(f"{type(outcome).__name__}: {outcome}")
            else:
                not_taken, reason = outcome
                failed.extend(group[index] for index in not_taken)
                if reason:
                    reasons.append(f"{len(not_taken)} not stored by {self.stream_of(group[0].subject)} ({reason})")
        return failed, "; ".join(reasons) or None

    async def _publish_each(self, messages: Sequence[Message]) -> tuple[list[Message], str | None]:
        futures = []
        for message in messages:
            self.fence.check()
            try:
                futures.append(
                    await self.js.publish_async(message.subject, message.data, headers=message.all_headers())
                )
            except Exception as exc:  # not connected: report it as not stored
                futures.append(_failed_future(exc))
        done, waiting = await asyncio.wait(futures, timeout=self.timeout) if futures else (set(), set())
        for future in waiting:
            future.cancel()
        failed = [
            message
            for message, future in zip(messages, futures, strict=True)
            if future not in done or future.exception() is not None
        ]
        errors = [future.exception() for future in done if future.exception() is not None]
        reason = (
            f"{type(errors[0]).__name__}: {errors[0]}"
            if errors
            else (f"no ack within {self.timeout:g} s" if failed else None)
        )
        return failed, reason


def _failed_future(exc: BaseException) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future
