"""Durable consumers named after the lease term, so the server refuses a deposed hub's acknowledgements.

The active hub's pipeline and escalator read through durable consumers and acknowledge with AckAll. With one
name for every hub, an acknowledgement a paused hub had handed to its client before the pause reached the
consumer its successor had re-created under that name, and acknowledged there whatever the successor had in
hand up to that sequence — input whose outputs the successor had not stored yet (a crash of the successor would
then lose them), orders its escalator had not acted on (tests/test_availability.py shows it on a real server).
Named ``<name>-<term>`` — the term is the revision at which the hub took the lease — each hub's consumer is its
own. A hub that takes over starts where the earlier consumers' acknowledgements end and deletes them; a deposed
hub's acknowledgements and fetches then reach no consumer, whatever it had in hand when it was paused.

A process that runs alone (no election, a term of None) uses the plain name.
"""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError


def named(name: str, term: int | None) -> str:
    """The durable consumer ``name`` of the hub holding lease ``term``."""
    return name if term is None else f"{name}-{term}"


def _of(name: str, consumer: str) -> bool:
    """Whether ``consumer`` is ``name`` of some term (or of none)."""
    return consumer == name or (consumer.startswith(f"{name}-") and consumer[len(name) + 1 :].isdigit())


async def acknowledged(js: JetStreamContext, stream: str, name: str) -> int:
    """The highest stream sequence any term's consumer ``name`` on ``stream`` acknowledged (0: none)."""
    return (await last_acknowledgement(js, stream, name))[0]


async def last_acknowledgement(js: JetStreamContext, stream: str, name: str) -> tuple[int, float | None]:
    """The highest stream sequence any term's consumer ``name`` on ``stream`` acknowledged, and when the server
    took that acknowledgement (epoch seconds; None when it does not say)."""
    latest: tuple[int, float | None] = (0, None)
    for info in await js.consumers_info(stream):
        floor = info.ack_floor
        if _of(name, info.name) and floor is not None and floor.stream_seq >= latest[0]:
            latest = (floor.stream_seq, floor.last_active.timestamp() if floor.last_active else None)
    return latest


async def retire(js: JetStreamContext, stream: str, name: str, keep: str) -> int:
    """Delete every term's consumer ``name`` on ``stream`` but ``keep``; returns the highest sequence they had
    acknowledged (0: none), where ``keep`` starts when it is new."""
    floor = 0
    for info in await js.consumers_info(stream):
        if _of(name, info.name) and info.name != keep:
            floor = max(floor, info.ack_floor.stream_seq if info.ack_floor else 0)
            with contextlib.suppress(NotFoundError):  # another hub retired it meanwhile
                await js.delete_consumer(stream, info.name)
    return floor
