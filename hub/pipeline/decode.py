"""Decoding and validating ingest messages: raw bytes → canonical events, close requests and rejections.

A message is rejected (to ``cityhub.dlq.<source>``, with its original bytes) when it is too large, not JSON,
not a valid event or close request, of a category the taxonomy does not know (:mod:`hub.taxonomy`; the reason
names the known ones), published on another source's subject, or dated outside the event-time window around its
reception (:class:`~hub.pipeline.engines.EventTimeWindow`). An event without a severity gets its category's
default severity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter, ValidationError

from hub import topology, wire
from hub.errors import InvalidEventError, validation_kind, validation_problems
from hub.models import CloseRequest, Event
from hub.pipeline.engines import EventTimeWindow
from hub.taxonomy import BUILTIN_TAXONOMY, Taxonomy

_EVENTS = TypeAdapter(list[Event])
_INGEST_TYPES = (wire.TYPE_EVENT, wire.TYPE_CLOSE_REQUEST)


class IngestMessage(NamedTuple):
    """One message of the ingest stream as the pipeline processes it."""

    seq: int  # stream sequence
    subject: str
    data: bytes
    received: float  # when the stream stored it, epoch seconds: the hub's clock for this message


@dataclass(slots=True)
class Rejection:
    """Input that cannot become an event: where it came from and why."""

    raw: bytes
    subject: str
    kind: str
    reason: str
    seq: int


def source_of(subject: str) -> str:
    """The ``<source>`` token of ``cityhub.ingest.<source>``."""
    return subject.rsplit(".", 1)[-1]


def _validation_kind(error: ValidationError) -> tuple[str, str]:
    where, message = validation_problems(error, "(event)")[0]
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return validation_kind(error), f"{where}: {message}{more}"


def decode_event(
    raw: bytes, subject: str, max_bytes: int, taxonomy: Taxonomy = BUILTIN_TAXONOMY
) -> tuple[Event, dict[str, Any]]:
    """One ingest message → its canonical event and the JSON object it came from. Accepts a bare Event
    JSON or a CloudEvent of type ``cityhub.event``. Raises :class:`InvalidEventError` with ``kind`` set."""
    type_, document = _ingest_document(raw, max_bytes)
    if type_ != wire.TYPE_EVENT:
        raise _invalid("invalid", f"CloudEvent type {type_!r} is not an event")
    return _checked_event(_validate_event(_with_severity(document, taxonomy)), subject, taxonomy), document


@dataclass
class DecodedBatch:
    """A batch of ingest messages, decoded: the events with the messages they came in, the close requests with
    the number of events that precede each (the order decides what a close applies to) and the message each came
    in, and what was rejected."""

    events: list[Event] = field(default_factory=list)
    messages: list[IngestMessage] = field(default_factory=list)
    closes: list[tuple[int, CloseRequest, str, IngestMessage]] = field(
        default_factory=list
    )  # (events before, request, requester, message)
    rejected: list[Rejection] = field(default_factory=list)


def decode_events(
    batch: Sequence[IngestMessage], max_bytes: int, window: EventTimeWindow, taxonomy: Taxonomy = BUILTIN_TAXONOMY
) -> DecodedBatch:
    """:func:`decode_event` for a batch, validating all its event documents in one pydantic call (half the
    cost of one call per event; a batch holding an invalid event is validated again event by event), and
    close requests (CloudEvents of type ``cityhub.close_request``) one by one. Events dated outside
    ``window`` are rejected as ``time_out_of_range`` unless the window accepts them."""
    decoded = DecodedBatch()
    parsed: list[IngestMessage] = []
    documents: list[dict[str, Any]] = []
    close_at: list[
        tuple[int, CloseRequest, str, IngestMessage]
    ] = []  # (parsed documents before it, request, requester, message)
    for message in batch:
        try:
            type_, document = _ingest_document(message.data, max_bytes)
            if type_ == wire.TYPE_CLOSE_REQUEST:
                request = _validate_close(document, message.subject)
                close_at.append((len(parsed), request, source_of(message.subject), message))
                continue
        except InvalidEventError as exc:
            decoded.rejected.append(_rejection(message, exc))
            continue
        documents.append(document)
        parsed.append(message)
    completed = [_with_severity(document, taxonomy) for document in documents]
    try:
        validated: list[Event | InvalidEventError] = list(_EVENTS.validate_python(completed))
    except ValidationError:
        validated = [_validated_or_error(document) for document in completed]
    kept_before = [0]  # events kept among the first n parsed documents
    for message, event in zip(parsed, validated, strict=True):
        try:
            decoded.events.append(
                _in_window(_checked_event(event, message.subject, taxonomy), message.received, window)
            )
            decoded.messages.append(message)
        except InvalidEventError as exc:
            decoded.rejected.append(_rejection(message, exc))
        kept_before.append(len(decoded.events))
    decoded.closes = [
        (kept_before[position], request, requester, received) for position, request, requester, received in close_at
    ]
    decoded.rejected.sort(key=lambda rejection: rejection.seq)
    return decoded


def event_document(raw: bytes) -> dict[str, Any]:
    """The JSON object of an accepted event's ingest message (the ``data`` of a CloudEvent), as it arrived."""
    return _ingest_document(raw, len(raw))[1]


def _rejection(message: IngestMessage, exc: InvalidEventError) -> Rejection:
    return Rejection(message.data, message.subject, getattr(exc, "kind", "invalid"), exc.reason, message.seq)


def _in_window(event: Event, received: float, window: EventTimeWindow) -> Event:
    """``event`` unless its time is outside ``window`` around ``received`` and the window rejects that."""
    if window.accept_out_of_range:
        return event
    why = window.out_of_range(event.time.timestamp(), received)
    if why is not None:
        raise _invalid("time_out_of_range", f"time {event.time.isoformat()} is {why}")
    return event


def _ingest_document(raw: bytes, max_bytes: int) -> tuple[str, dict[str, Any]]:
    """The type and JSON object of an ingest message (the ``data`` of a CloudEvent; a bare JSON object is
    an event), not yet validated."""
    if len(raw) > max_bytes:
        raise _invalid("oversized", f"message of {len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid("not_json", f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("invalid", f"an event must be a JSON object, got {type(document).__name__}")
    if "specversion" in document:
        return document["type"] if isinstance(document.get("type"), str) else "", _cloudevent_data(document)
    return wire.TYPE_EVENT, document


def _validate_event(document: dict[str, Any]) -> Event:
    try:
        return Event.model_validate(document)
    except ValidationError as exc:
        raise _invalid(*_validation_kind(exc)) from None


def _validated_or_error(document: dict[str, Any]) -> Event | InvalidEventError:
    try:
        return _validate_event(document)
    except InvalidEventError as exc:
        return exc


def _with_severity(document: dict[str, Any], taxonomy: Taxonomy) -> dict[str, Any]:
    """The document with its category's default severity when it sets none (a new dict; the original stays)."""
    if "severity" in document or not isinstance(document.get("category"), str):
        return document
    return {**document, "severity": taxonomy.default_severity(document["category"]).value}


def _checked_event(event: Event | InvalidEventError, subject: str, taxonomy: Taxonomy) -> Event:
    """``event`` when its category is known and it came on its own source's subject; raises the validation
    error it stands for."""
    if isinstance(event, InvalidEventError):
        raise event
    if event.category not in taxonomy:
        raise _invalid("unknown_category", taxonomy.unknown(event.category))
    if event.source != source_of(subject):
        raise _invalid("source_mismatch", f"event source {event.source!r} published on {subject}")
    return event


def _cloudevent_data(envelope: dict[str, Any]) -> dict[str, Any]:
    wire.check_envelope(envelope)
    if envelope["type"] not in _INGEST_TYPES:
        raise _invalid(
            "invalid",
            f"CloudEvent type {envelope['type']!r} on ingest; expected one of {', '.join(map(repr, _INGEST_TYPES))}",
        )
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise _invalid("invalid", "CloudEvent data must be a JSON object")
    return data


def _validate_close(document: dict[str, Any], subject: str) -> CloseRequest:
    if source_of(subject) not in topology.CLOSE_REQUESTERS:
        raise _invalid(
            "invalid",
            "close requests are taken only on "
            + " and ".join(topology.ingest_subject(requester) for requester in topology.CLOSE_REQUESTERS),
        )
    try:
        return CloseRequest.model_validate(document)
    except ValidationError as exc:
        raise _invalid("invalid", "close request " + _validation_kind(exc)[1]) from None


def _invalid(kind: str, reason: str) -> InvalidEventError:
    return InvalidEventError(reason, kind)
