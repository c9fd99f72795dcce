"""Outputs stored before a long outage, so they are not stored twice when their input is processed again.

After a crash the pipeline processes the unacknowledged input again and publishes its outputs once more; those
the crashed process had stored are dropped by JetStream's duplicate window (2 minutes by default) — only while
they are younger than it. A hub that stayed down longer, restarted by hand, would store them a second time. A
longer window does not fix it for any outage: JetStream keeps every message id of the window in memory, about
220 bytes each (measured on nats-server 2.15), so a day of 1,000 outputs/s would hold 19 GB.

The outputs of unacknowledged input were stored after that input was (a bound that can be long ago when the
hub worked through a backlog), and no earlier than about when the server took the last acknowledgement: a
batch's outputs are published once the batch before is stored, which is when that batch is acknowledged;
``ACK_MARGIN`` allows for the time between the two. So on taking over, when the later of those two moments is
longer ago than half an output stream's duplicate window, the pipeline reads the ``Nats-Msg-Id`` of every
message that stream stored since (headers only) and leaves those out of what it publishes again, until it has
processed the input that was in the ingest stream when it looked. A takeover within seconds reads nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from hub import topology
from hub.nats.fetcher import Fetcher
from hub.nats.publisher import Message

log = logging.getLogger("cityhub.pipeline")

READ_BATCH = 1_000
ACK_MARGIN_S = 30.0


class StoredOutputs:
    """The message ids found stored in the output streams, left out of re-publication while ``covers`` says."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.until_seq = 0  # the last ingest sequence whose outputs may be among them

    async def look(self, nc: NatsClient, first_unacknowledged_at: float, acknowledged_at: float | None) -> None:
        """Read the ids stored since the outputs of unacknowledged input may have been (see the module) in each
        output stream whose duplicate window no longer covers that moment safely. Times in epoch seconds:
        when the first unacknowledged input was stored, when the server took the last acknowledgement."""
        js = nc.jetstream(timeout=10.0)
        since = max(first_unacknowledged_at, (acknowledged_at or 0.0) - ACK_MARGIN_S)
        age = time.time() - since
        self.until_seq = (await js.stream_info(topology.INGEST_STREAM)).state.last_seq
        for stream in _output_streams():
            try:
                window = (await js.stream_info(stream)).config.duplicate_window or 0
            except NotFoundError:  # a tier stream this hub does not have
                continue
            if age > window / 2:
                self.ids |= await _ids_since(nc, stream, since)
        if self.ids:
            log.warning(
                "outputs of unacknowledged input may be %.0f s old, beyond the duplicate window of an "
                "output stream: %d outputs stored since then are left out when that input is processed "
                "again",
                age,
                len(self.ids),
            )

    def unpublished(self, outputs: Sequence[Message], last_seq: int) -> Sequence[Message]:
        """``outputs`` of input up to ``last_seq`` without those found stored; forgets them past ``until_seq``."""
        if not self.ids:
            return outputs
        kept = [output for output in outputs if output.msg_id not in self.ids]
        if last_seq >= self.until_seq:
            self.ids = set()
        return kept


def _output_streams() -> list[str]:
    return [stream for stream in topology.STREAM_SUBJECTS if stream != topology.INGEST_STREAM]


async def _ids_since(nc: NatsClient, stream: str, since: float) -> set[str]:
    """The ``Nats-Msg-Id`` of every message ``stream`` stored at or after ``since``."""
    js = nc.jetstream(timeout=10.0)
    info = await js.add_consumer(
        stream,
        ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=datetime.fromtimestamp(since, UTC),
            ack_policy=AckPolicy.NONE,
            headers_only=True,
            mem_storage=True,
            inactive_threshold=30.0,
        ),
    )
    fetcher = await Fetcher(nc, stream, info.name).start()
    ids: set[str] = set()
    try:
        pending = info.num_pending or 0
        while pending > 0:
            msgs = await fetcher.fetch(min(READ_BATCH, pending), timeout=5.0)
            if not msgs:  # the pipeline restarts and looks again: an id missed here would be stored twice
                raise TimeoutError(f"reading the message ids stored in {stream} since the outage stopped")
            ids.update(
                msg.msg.headers[topology.HEADER_MSG_ID]
                for msg in msgs
                if msg.msg.headers and topology.HEADER_MSG_ID in msg.msg.headers
            )
            pending = msgs[-1].pending or 0
    finally:
        await fetcher.stop()
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, info.name)
    return ids
