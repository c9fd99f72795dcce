"""The pipeline's outputs for events that are not this hub's: handed down to the child hub that owns the
place, or dead-lettered when the place is outside the hub's scope (:mod:`hub.federation.ownership`)."""

from __future__ import annotations

from typing import Any

import orjson

from hub import topology
from hub.nats.publisher import Message

OUT_OF_SCOPE = "out_of_scope"  # the DLQ reason kind


def handoff_output(child: str, source: str, document: dict[str, Any], key: str) -> Message:
    """The event as it arrived, for the child hub ``child``; its ``Nats-Msg-Id`` is its ingest id (the
    idempotency key, ``<source>:<source_event_id>``), so the child drops a second hand-off of it."""
    return Message(topology.handoff_subject(child, source), orjson.dumps(document), key)


def outside_scope_output(source: str, document: dict[str, Any], key: str, reason: str) -> Message:
    """The event as it arrived, to ``cityhub.dlq.<source>`` with the reason it is not this hub's."""
    headers = {
        topology.HEADER_REASON: reason,
        topology.HEADER_REASON_KIND: OUT_OF_SCOPE,
        topology.HEADER_ORIGINAL_SUBJECT: topology.ingest_subject(source),
    }
    return Message(topology.dlq_subject(source), orjson.dumps(document), f"dlq:{OUT_OF_SCOPE}:{key}", headers)
