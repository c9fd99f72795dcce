"""Unified events and incident changes encoded a batch at a time in the Rust core from the batch's event
columns (:mod:`hub.pipeline.columns`), byte for byte as the Python encoders of :mod:`hub.pipeline.outputs`
wrote them (tests/test_batch_encode.py compares the two over generated inputs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from hub.models import IncidentChange
from hub.nats.publisher import Message
from hub.pipeline.columns import EventColumns, encoder


class Extension(NamedTuple):
    """A CloudEvents extension attribute of every event: per event a str, a bool or None (left out)."""

    name: str
    values: Sequence[str | bool | None]


def event_messages(columns: EventColumns, subjects: Sequence[str], extensions: Sequence[Extension]) -> list[Message]:
    """Each event of ``columns`` as its unified event on its subject, named by its id."""
    ids = columns["id"]
    encoded = encoder().encode(columns.values, ids, subjects, list(extensions))
    return [Message(subject, data, event_id) for subject, data, event_id in zip(subjects, encoded, ids, strict=True)]


class Change(NamedTuple):
    """An incident change as :func:`incident_messages` takes it: the incident as the pipeline keeps it (times in
    epoch seconds), and the row of the report an update is about or the reason a ``closed`` change closes it."""

    subject: str
    msg_id: str
    change: IncidentChange
    incident_id: str
    category: str
    severity: str
    district: str | None
    late: bool
    opened_at: float
    updated_at: float
    received_at: float | None
    sources: tuple[str, ...]
    matched_rules: tuple[str, ...]
    report_count: int
    report_or_reason: int | str


def incident_messages(changes: Sequence[Change], columns: EventColumns | None) -> list[Message]:
    """Each change on ``cityhub.incidents.<district>.<category>.<change>``, named by its id and change; an
    update writes its report's place, location, address, triage and area from ``columns``."""
    values, rows = (columns.values, len(columns)) if columns is not None else (None, 0)
    encoded = encoder().encode_incident_changes(list(changes), values, rows)
    return [
        Message(change.subject, data, f"{change.msg_id}:{change.change}")
        for change, data in zip(changes, encoded, strict=True)
    ]
