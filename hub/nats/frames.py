"""Protocol frames written on a nats-py connection in one call.

Why: nats-py's ``publish`` costs the client several µs per message (subject and header checks, the header block
built in Python, a command appended to its pending list) — for the pipeline, which publishes two or three messages
per event, more than its own processing. The Rust core builds a run of messages' frames in one buffer, with the
same checks (:func:`hub._core.fast_ingest_frames`), and :func:`write_frames` hands it to the client's pending buffer
as ``publish`` hands one message's: the client's flusher, reconnection buffer and limits apply unchanged.

nats-py has no public call for this, so this module uses the four members its own ``publish`` uses
(``_send_command``, ``_flush_pending``, ``_flush_queue``, ``_max_pending_size``); :func:`can_write_frames` checks
that the installed client has them, and the publisher goes message by message when it does not.
"""

from __future__ import annotations

from nats import errors
from nats.aio.client import Client as NatsClient

_MEMBERS = ("_send_command", "_flush_pending", "_flush_queue", "_max_pending_size", "_pending_data_size", "stats")


def can_write_frames(nc: NatsClient) -> bool:
    """Whether ``nc`` has what :func:`write_frames` uses."""
    return all(hasattr(nc, member) for member in _MEMBERS)


async def write_frames(nc: NatsClient, frames: bytes, messages: int, payload_bytes: int) -> None:
    """Queue ``frames`` (``messages`` messages carrying ``payload_bytes`` of payload) for the socket, as
    ``nc.publish`` queues one message: refused when the connection is closed or draining, or when it is
    reconnecting and its reconnection buffer has no room left."""
    if nc.is_closed:
        raise errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise errors.ConnectionDrainingError
    if not nc.is_connected and (
        nc._max_pending_size <= 0 or len(frames) + nc._pending_data_size > nc._max_pending_size
    ):
        raise errors.OutboundBufferLimitError
    nc.stats["out_msgs"] += messages
    nc.stats["out_bytes"] += payload_bytes
    await nc._send_command(frames)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
