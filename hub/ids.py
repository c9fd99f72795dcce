"""Deterministic identifiers. Everything the hub derives from its input is named by the input alone, so that
processing the same input twice (after a crash, on redelivery) yields the same ids and JetStream's
``Nats-Msg-Id`` duplicate window drops the second publication.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from hub.models import Event

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGIT_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]  # indexed by 10 bits


def idempotency_key(event: Event) -> str:
    """``<source>:<source_event_id>``, plus ``:<status>`` when the event carries a source-side status (a status
    change is a new version of the same report, not a re-delivery); a content hash stands in when the source has
    no id."""
    if event.source_event_id:
        key = f"{event.source}:{event.source_event_id}"
        return f"{key}:{event.status}" if event.status else key
    content = event.model_dump_json(exclude={"id", "grid_path"}).encode()
    return f"{event.source}:sha256:{hashlib.sha256(content).hexdigest()[:32]}"


def time_ordered_id(time: datetime, key: str) -> str:
    """A 26-character ULID-shaped id: 48 bits of milliseconds from ``time``, 80 bits hashed from ``key``."""
    millis = max(0, int(time.timestamp() * 1000)) & ((1 << 48) - 1)
    entropy = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=10).digest(), "big")
    return _base32((millis << 80) | entropy, 26)


def _base32(value: int, length: int) -> str:
    """``value`` as ``length`` (even) Crockford base-32 digits, most significant first, two digits (10 bits)
    per table lookup: ids are made for every event, and this is twice as fast as the standard library's
    pure-Python base-32 encoder."""
    pairs = []
    for _ in range(length // 2):
        pairs.append(_DIGIT_PAIRS[value & 1023])
        value >>= 10
    return "".join(reversed(pairs))
