"""Deterministic identifiers. Everything the hub derives from its input is named by the input alone, so that
processing the same input twice (after a crash, on redelivery) yields the same ids and JetStream's
``Nats-Msg-Id`` duplicate window drops the second publication.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from hub import _core
from hub.models import Event


def idempotency_key(event: Event) -> str:
    """``<source>:<source_event_id>``, plus ``:<status>`` when the event carries a source-side status (a status
    change is a new version of the same report, not a re-delivery); a content hash stands in when the source has
    no id."""
    if event.source_event_id:
        return source_key(event.source, event.source_event_id, event.status)
    content = event.model_dump_json(exclude={"id", "grid_path"}).encode()
    return f"{event.source}:sha256:{hashlib.sha256(content).hexdigest()[:32]}"


def source_key(source: str, source_event_id: str, status: str | None) -> str:
    """:func:`idempotency_key` of an event whose source gave it an id."""
    key = f"{source}:{source_event_id}"
    return f"{key}:{status}" if status else key


def time_ordered_ids(times: Sequence[float], keys: Sequence[str]) -> list[str]:
    """One 26-character ULID-shaped id per event: 48 bits of milliseconds from its time (epoch seconds),
    80 bits of BLAKE2b over its idempotency key (computed in the Rust core for a whole batch)."""
    return _core.time_ordered_ids(times, keys)


def time_ordered_id(time: datetime, key: str) -> str:
    """:func:`time_ordered_ids` for one event."""
    return time_ordered_ids([time.timestamp()], [key])[0]
