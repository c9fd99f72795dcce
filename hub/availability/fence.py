"""The active hub's writes, fenced by JetStream itself.

On taking over, the active hub puts a mark on the fence subject of every output stream
(:func:`hub.topology.fence_subject`), each conditional on the mark before it, and a roll-up so only the
latest mark stays. From then on the first message of each fast-ingest batch it publishes carries
``Nats-Expected-Last-Subject-Sequence`` (the sequence of its mark) with
``Nats-Expected-Last-Subject-Sequence-Subject`` (the fence subject) (:func:`hub.nats.publisher.publish_fast_batch`):
JetStream takes the batch only while that mark is still the latest. Once another hub has taken over and put its
own mark, every batch of the old one is refused by the server — however long it was paused, and whatever it had
already handed to its NATS client. (A re-publication of an output that is already stored is still dropped as a
duplicate first, so nothing is stored twice either way.)

The lease check (:meth:`hub.availability.lease.Lease.check`) comes first, before every write; the mark is
what makes the server enforce it. The escalator's single publishes carry the same headers.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from hub import topology, wire
from hub.availability.lease import Lease

log = logging.getLogger("cityhub.availability")

EXPECTED_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
_WRONG_LAST_SEQUENCE = 10071


def _mark_attributes(stream: str, after: int) -> dict[str, str]:
    """A mark is a binary-mode CloudEvent like everything under ``cityhub.>`` (:mod:`hub.wire`): its payload is
    the holder's name."""
    return wire.binary_mode_headers(f"fence:{stream}:{after}", wire.HUB_SOURCE, wire.TYPE_FENCE_MARK, "text/plain")


class OutputFence:
    """The :class:`hub.nats.publisher.Fence` of the active hub: its lease, and its marks on the output streams."""

    def __init__(self, js: JetStreamContext, lease: Lease):
        self.js = js
        self.lease = lease
        self._conditions: dict[str, dict[str, str]] = {}  # stream → the headers its outputs carry
        self._marks: dict[str, int] = {}  # stream → sequence of this hub's mark

    def use_connection(self, js: JetStreamContext) -> None:
        """Write the marks through ``js`` (the hub replaced a connection the server closed)."""
        self.js = js

    def check(self) -> None:
        self.lease.check()

    def headers(self, stream: str) -> dict[str, str]:
        return self._conditions.get(stream, {})

    async def mark(self) -> None:
        """Put this hub's mark on every output stream (on taking over, before the first output), all at once."""
        await asyncio.gather(*(self._mark(stream) for stream in topology.OUTPUT_STREAMS))

    async def refresh(self) -> None:
        """Mark again the streams whose mark is no longer the latest on its subject and this hub still holds
        the lease (the mark aged out of the stream, or the stream was recreated)."""
        for stream in topology.OUTPUT_STREAMS:
            self.lease.check()
            if await self._latest(stream) != self._marks.get(stream):
                log.warning("the fence mark on %s is gone; marking it again", stream)
                await self._mark(stream)

    async def _mark(self, stream: str) -> None:
        subject = topology.fence_subject(stream)
        while True:
            self.lease.check()
            latest = await self._latest(stream)
            try:
                ack = await self.js.publish(
                    subject,
                    self.lease.me.encode(),
                    stream=stream,
                    headers={**_mark_attributes(stream, latest), EXPECTED_SEQUENCE: str(latest), "Nats-Rollup": "sub"},
                )
            except APIError as exc:
                if exc.err_code == _WRONG_LAST_SEQUENCE:
                    continue  # another mark landed in between: read it and try again
                raise
            self._marks[stream] = ack.seq
            self._conditions[stream] = {EXPECTED_SEQUENCE: str(ack.seq), EXPECTED_SUBJECT: subject}
            return

    async def _latest(self, stream: str) -> int:
        try:
            return (await self.js.get_last_msg(stream, topology.fence_subject(stream))).seq or 0
        except NotFoundError:
            return 0
