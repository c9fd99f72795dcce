"""The batch pipeline: ingest → the unified stream, incidents and dispatch orders.

One durable pull consumer reads ``cityhub.ingest.>``. Per batch::

    fetch → decode + validate → normalise coordinates (→ WGS-84) → dedup → geofence → rules
          → merge into incidents → transforms (enrich, redact) → publish outputs, await their acks → ack input

Bad input of any kind goes to ``cityhub.dlq.<source>`` with the original bytes and the reason in headers;
the good events of the same batch carry on.

Exactly once, across crashes. Every output is named by its input (:mod:`hub.ids`) and published with
``Nats-Msg-Id``; input is acknowledged only after every output of its batch is stored. The state that the
input builds up (dedup keys, open incidents) is snapshotted to a JetStream object store, between batches,
together with the stream sequence it covers. On start the pipeline restores the snapshot and re-reads the
ingest stream from there up to the consumer's ack floor *without publishing* (those outputs are stored),
which gives exactly the state the crashed process had; then it consumes the unacknowledged rest, whose
re-published outputs JetStream drops as duplicates. Messages at or below the last processed sequence
(redeliveries of a batch still being published) are acknowledged without processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ObjectNotFoundError
from pydantic import TypeAdapter, ValidationError

from hub import ids, topology, wire
from hub.connector_runtime import raise_if_cancelled
from hub.coords import convert
from hub.errors import InvalidEventError
from hub.geofence import GridIndex, Resolution
from hub.incidents import Deduper, IncidentMerger, MergeBatch, MergePolicy
from hub.fetcher import ConsumerGone, Delivered, Fetcher
from hub.metrics import Metrics
from hub.publisher import UNFENCED, Fence, Message, Publisher
from hub.models import (
    CloseRequest,
    CoordSystem,
    DispatchOrder,
    Event,
    GridCell,
    Incident,
    IncidentChange,
    IncidentState,
    Location,
    ReportRef,
    Severity,
)
from hub.rules import RuleMatch, RuleSet
from hub.streams import SNAPSHOT_BUCKET, open_object_store
from hub.transforms import Transform

log = logging.getLogger("cityhub.pipeline")

PIPELINE_CONSUMER = "cityhub-pipeline"
SNAPSHOT_NAME = "state"
MAX_ORDER_REPORTS = 20  # report references an incident keeps for its dispatch orders (bounds the snapshot)
_SOURCE = "/cityhub/pipeline"
_SEVERITIES = list(Severity)
_EVENTS = TypeAdapter(list[Event])
_INGEST_TYPES = (wire.TYPE_EVENT, wire.TYPE_CLOSE_REQUEST)
_INGEST_FILTER = topology.STREAM_SUBJECTS[topology.INGEST_STREAM][0]
YOUNG_COLLECTION_EVERY = 50_000  # container allocations between young-generation garbage collections


# --- what the pipeline is built from -----------------------------------------------------------------


@dataclass(frozen=True)
class PipelineOptions:
    """Tuning of the consume loop (``[pipeline]`` of ``cityhub.toml``)."""

    batch_size: int = 500
    fetch_timeout_s: float = 0.2
    max_message_bytes: int = 256 * 1024
    snapshot_interval_s: float = 5.0
    ack_wait_s: float = 60.0


@dataclass(frozen=True)
class Engines:
    """The config-derived parts of the pipeline, built once and swapped whole on reload between batches."""

    rules: RuleSet
    merge_policy: MergePolicy
    geofence: GridIndex | None = None
    transforms: tuple[tuple[str, Transform], ...] = ()
    dedup_window_s: float = 86_400.0
    dedup_max_keys: int = 1_000_000


# Told of each transform run: (plugin, transform, None) on success, the exception when it raised.
TransformOutcome = Callable[[str, Transform, BaseException | None], None]


# --- decoding ----------------------------------------------------------------------------------------


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
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "(event)"
    if first["loc"][:1] == ("category",):
        kind = "unknown_category"
    elif first["loc"][:1] == ("location",):
        kind = "coordinates"
    else:
        kind = "invalid"
    return kind, f"{where}: {first['msg']}" + (f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else "")


def decode_event(raw: bytes, subject: str, max_bytes: int) -> tuple[Event, dict[str, Any]]:
    """One ingest message → its canonical event and the JSON object it came from. Accepts a bare Event
    JSON or a CloudEvent of type ``cityhub.event``. Raises :class:`InvalidEventError` with ``kind`` set."""
    type_, document = _ingest_document(raw, max_bytes)
    if type_ != wire.TYPE_EVENT:
        raise _invalid("invalid", f"CloudEvent type {type_!r} is not an event")
    return _checked_event(_validate_event(document), subject), document


@dataclass
class DecodedBatch:
    """A batch of ingest messages, decoded: the events with the JSON objects they came from, the close
    requests with the number of events that precede each (the order decides what a close applies to), and
    what was rejected."""

    events: list[Event] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    closes: list[tuple[int, CloseRequest, str]] = field(default_factory=list)  # (events before, request, requester)
    rejected: list[Rejection] = field(default_factory=list)


def decode_events(batch: Sequence[tuple[int, str, bytes]], max_bytes: int) -> DecodedBatch:
    """:func:`decode_event` for a batch, validating all its event documents in one pydantic call (half the
    cost of one call per event; a batch holding an invalid event is validated again event by event), and
    close requests (CloudEvents of type ``cityhub.close_request``) one by one."""
    decoded = DecodedBatch()
    parsed: list[tuple[int, str, bytes]] = []
    documents: list[dict[str, Any]] = []
    close_at: list[tuple[int, CloseRequest, str]] = []  # (parsed documents before it, request, requester)
    for seq, subject, raw in batch:
        try:
            type_, document = _ingest_document(raw, max_bytes)
            if type_ == wire.TYPE_CLOSE_REQUEST:
                close_at.append((len(parsed), _validate_close(document, subject), source_of(subject)))
                continue
        except InvalidEventError as exc:
            decoded.rejected.append(Rejection(raw, subject, getattr(exc, "kind", "invalid"), exc.reason, seq))
            continue
        documents.append(document)
        parsed.append((seq, subject, raw))
    try:
        validated: list[Event | InvalidEventError] = list(_EVENTS.validate_python(documents))
    except ValidationError:
        validated = [_validated_or_error(document) for document in documents]
    kept_before = [0]  # events kept among the first n parsed documents
    for (seq, subject, raw), document, event in zip(parsed, documents, validated, strict=True):
        try:
            decoded.events.append(_checked_event(event, subject))
            decoded.documents.append(document)
        except InvalidEventError as exc:
            decoded.rejected.append(Rejection(raw, subject, getattr(exc, "kind", "invalid"), exc.reason, seq))
        kept_before.append(len(decoded.events))
    decoded.closes = [(kept_before[position], request, requester) for position, request, requester in close_at]
    decoded.rejected.sort(key=lambda rejection: rejection.seq)
    return decoded


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


def _checked_event(event: Event | InvalidEventError, subject: str) -> Event:
    """``event`` when it came on its own source's subject; raises the validation error it stands for."""
    if isinstance(event, InvalidEventError):
        raise event
    if event.source != source_of(subject):
        raise _invalid("source_mismatch", f"event source {event.source!r} published on {subject}")
    return event


def _cloudevent_data(envelope: dict[str, Any]) -> dict[str, Any]:
    wire.check_envelope(envelope)
    if envelope["type"] not in _INGEST_TYPES:
        raise _invalid("invalid", f"CloudEvent type {envelope['type']!r} on ingest; expected one of "
                                  f"{', '.join(map(repr, _INGEST_TYPES))}")
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise _invalid("invalid", "CloudEvent data must be a JSON object")
    return data


def _validate_close(document: dict[str, Any], subject: str) -> CloseRequest:
    if source_of(subject) not in topology.CLOSE_REQUESTERS:
        raise _invalid("invalid", "close requests are taken only on " + " and ".join(
            topology.ingest_subject(requester) for requester in topology.CLOSE_REQUESTERS))
    try:
        return CloseRequest.model_validate(document)
    except ValidationError as exc:
        raise _invalid("invalid", "close request " + _validation_kind(exc)[1]) from None


def _invalid(kind: str, reason: str) -> InvalidEventError:
    error = InvalidEventError(reason)
    error.kind = kind  # type: ignore[attr-defined]
    return error


# --- state ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class IncidentRecord:
    """What the pipeline remembers of an open incident beyond the merger's own state."""

    category: str
    opened_at: float
    severity: int
    sources: list[str]
    dispatched: list[str]
    matched_rules: list[str]
    reports: list[list[str]] = field(default_factory=list)  # [source, source_event_id], the first MAX_ORDER_REPORTS
    district: str | None = None  # district cell id of the latest report: the subject of the closing update
    report_count: int = 0

    def dump(self) -> list[Any]:
        return [self.category, self.opened_at, self.severity, self.sources, self.dispatched, self.matched_rules,
                self.reports, self.district, self.report_count]


@dataclass
class PipelineState:
    """Everything the input builds up, with the ingest stream sequence it covers."""

    deduper: Deduper
    merger: IncidentMerger
    incidents: dict[str, IncidentRecord] = field(default_factory=dict)
    last_seq: int = 0

    @classmethod
    def fresh(cls, engines: Engines) -> PipelineState:
        return cls(Deduper(engines.dedup_window_s, engines.dedup_max_keys), IncidentMerger(engines.merge_policy))

    def snapshot(self) -> bytes:
        header = orjson.dumps({
            "last_seq": self.last_seq,
            "incidents": {key: record.dump() for key, record in self.incidents.items()},
        })
        dedup, merger = self.deduper.snapshot(), self.merger.snapshot()
        lengths = orjson.dumps([len(header), len(dedup), len(merger)])
        return len(lengths).to_bytes(4, "big") + lengths + header + dedup + merger

    @classmethod
    def restore(cls, blob: bytes, engines: Engines) -> PipelineState:
        size = int.from_bytes(blob[:4], "big")
        header_len, dedup_len, merger_len = orjson.loads(blob[4 : 4 + size])
        start = 4 + size
        header = orjson.loads(blob[start : start + header_len])
        dedup = blob[start + header_len : start + header_len + dedup_len]
        merger = blob[start + header_len + dedup_len : start + header_len + dedup_len + merger_len]
        return cls(
            Deduper.restore(dedup),
            IncidentMerger.restore(merger, engines.merge_policy),
            {key: IncidentRecord(*value) for key, value in header["incidents"].items()},
            header["last_seq"],
        )


# --- the outputs of one batch -----------------------------------------------------------------------


@dataclass
class BatchResult:
    """What one batch produced; ``evaluations`` feed ``Hub.dry_run``."""

    outputs: list[Message] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    merged: int = 0
    closed: int = 0  # incidents closed on request
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # processing time per pipeline stage

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + time.perf_counter() - started


# Subjects repeat (a few per district × category × severity): build each once.
_event_subject = functools.lru_cache(maxsize=65_536)(topology.event_subject)
_incident_subject = functools.lru_cache(maxsize=65_536)(topology.incident_subject)
_Place = tuple[tuple[GridCell, ...], str, str]  # grid path, admin names and admin ids joined by "/"
_PLACE_CACHE_LIMIT = 100_000


def _district_and_street(path: Sequence[GridCell]) -> tuple[str | None, str | None]:
    """The district and street cell ids on a grid path, None where the path has no such level."""
    district = street = None
    for cell in path:
        if cell.level == "district" and district is None:
            district = cell.id
        elif cell.level == "street" and street is None:
            street = cell.id
    return district, street


def connector_for_target(target: str) -> str:
    """Which connector delivers orders for a route target: ``connector:<name>`` names it outright (e.g.
    ``connector:eldercare`` for visit orders); a department ``dept:<name>`` is served by a connector named
    ``dept_<name>``; grid workers, the grid levels and the five-way responders they coordinate are reached
    through ``gridworker``. Orders wait in JetStream until their connector runs."""
    kind, _, name = target.partition(":")
    if kind == "connector":
        return topology.token(name)
    if kind == "dept":
        return topology.token(f"dept_{name}")
    return "gridworker"


class BatchProcessor:
    """The pure part of the pipeline: a batch of raw messages → outputs, mutating :class:`PipelineState`."""

    def __init__(self, engines: Engines, options: PipelineOptions, on_transform_outcome: TransformOutcome | None = None):
        self._engines = engines
        self._grid_cells: dict[Any, GridCell] = {}
        self._place_cache: dict[tuple[int, tuple[int, ...], tuple[float, ...]], _Place] = {}
        self.options = options
        self.on_transform_outcome = on_transform_outcome

    @property
    def engines(self) -> Engines:
        return self._engines

    @engines.setter
    def engines(self, engines: Engines) -> None:
        self._engines = engines
        self._grid_cells = {}  # new grids: new cells
        self._place_cache = {}

    def process(self, state: PipelineState, batch: Sequence[tuple[int, str, bytes]], evaluate: bool = False) -> BatchResult:
        """``batch``: ``(stream sequence, subject, bytes)`` per message, in stream order."""
        result = BatchResult()
        with result.timed("decode"):
            decoded = decode_events(batch, self.options.max_message_bytes)
        result.rejected = decoded.rejected
        start = 0
        for end, request, requester in [*decoded.closes, (len(decoded.events), None, "")]:
            if end > start:  # the events before a close request may still merge into its incident
                self._process_events(state, decoded.events[start:end], decoded.documents[start:end], result, evaluate)
                start = end
            if request is not None:
                self._close(state, request, requester, result)
        for rejection in result.rejected:
            result.outputs.append(dlq_output(rejection))
        return result

    def _close(self, state: PipelineState, request: CloseRequest, requester: str, result: BatchResult) -> None:
        """Close an open incident on request; one that is not open (closed before, expired, unknown) stays
        as it is."""
        record = state.incidents.get(request.incident_id)
        if not state.merger.close(request.incident_id) or record is None:
            log.info("close request for %s from %s: not an open incident", request.incident_id, requester)
            return
        del state.incidents[request.incident_id]
        result.closed += 1
        result.outputs.append(closed_output(record, request.incident_id, request.time,
                                            f"{request.reason} ({requester})"))

    def _process_events(
        self, state: PipelineState, events: list[Event], documents: list[dict[str, Any]], result: BatchResult,
        evaluate: bool,
    ) -> None:
        with result.timed("dedup"):
            keys = [ids.idempotency_key(event) for event in events]
            times = [event.time.timestamp() for event in events]
            duplicate = state.deduper.check_many(keys, times)
        fresh = [i for i, dup in enumerate(duplicate) if not dup]
        result.duplicates += len(events) - len(fresh)
        events = [events[i] for i in fresh]
        documents = [documents[i] for i in fresh]
        keys = [keys[i] for i in fresh]
        times = [times[i] for i in fresh]
        if not events:
            return
        result.accepted += len(events)
        with result.timed("geo"):
            admin_paths = self._normalise_and_locate(events)
        with result.timed("rules"):
            matches = self._match_rules(events, documents, keys, times, admin_paths)
        with result.timed("merge"):
            merge = state.merger.add_columns(
                [event.id or "" for event in events],
                times,
                [event.category for event in events],  # StrEnum members are str
                [event.location.lon if event.location else None for event in events],
                [event.location.lat if event.location else None for event in events],
                [event.address for event in events],
                [event.text for event in events],
            )
        result.merged += sum(1 for is_new in merge.is_new if not is_new)
        with result.timed("transforms"):
            events = self._apply_transforms(events)
        with result.timed("encode"):
            self._outputs(state, events, merge, matches, result, evaluate)
            self._expire(state, max(times), result)

    def _outputs(
        self, state: PipelineState, events: list[Event], merge: MergeBatch, matches: list[list[RuleMatch]],
        result: BatchResult, evaluate: bool,
    ) -> None:
        """The unified events, dispatch orders and one incident update per incident the batch touched."""
        touched: dict[str, tuple[Event, bool, int]] = {}
        for event, incident_id, is_new, count, event_matches in zip(
            events, merge.incident_ids, merge.is_new, merge.report_counts, matches, strict=True
        ):
            district, street = _district_and_street(event.grid_path)
            record = self._record(state, event, incident_id, count, event_matches, district)
            result.outputs.append(self._event_output(event, incident_id, district, street))
            if event_matches:
                result.outputs.extend(self._dispatch_outputs(event, incident_id, record, event_matches))
            opened = is_new or touched.get(incident_id, (event, False, 0))[1]
            touched[incident_id] = (event, opened, count)
            if evaluate:
                result.evaluations.append({
                    "event": event.model_dump(mode="json", exclude_none=True),
                    "grid_path": [cell.model_dump(mode="json") for cell in event.grid_path],
                    "incident": {"id": incident_id, "is_new": is_new, "report_count": count},
                    "matched_rules": [match.rule_id for match in event_matches],
                })
        for incident_id, (event, opened, count) in touched.items():
            result.outputs.append(self._incident_output(state.incidents[incident_id], incident_id, event, opened, count))

    def _normalise_and_locate(self, events: list[Event]) -> list[tuple[str, str]]:
        """Convert every location to WGS-84 and resolve its grid path; returns each event's admin path as
        (names, ids) joined by ``/``, the ``grid`` and ``grid_ids`` fields rules see."""
        located = [event for event in events if event.location is not None]
        self._to_wgs84(located)
        if self.engines.geofence is None or not located:
            return [("", "")] * len(events)
        admin_paths = {id(event): ("", "") for event in events}
        for event, (grid_path, grid, grid_ids) in zip(located, self._places(self.engines.geofence, located), strict=True):
            event.grid_path = list(grid_path)
            admin_paths[id(event)] = grid, grid_ids
        return [admin_paths[id(event)] for event in events]

    @staticmethod
    def _to_wgs84(located: list[Event]) -> None:
        for crs in {event.location.crs for event in located} - {CoordSystem.WGS84}:  # type: ignore[union-attr]
            group = [event for event in located if event.location.crs is crs]  # type: ignore[union-attr]
            lons, lats = convert([e.location.lon for e in group], [e.location.lat for e in group], crs, "wgs84")  # type: ignore[union-attr]
            for event, lon, lat in zip(group, lons, lats, strict=True):
                location = event.location  # decoded from this event's message: converted in place
                location.lon, location.lat, location.crs = lon, lat, CoordSystem.WGS84  # type: ignore[union-attr]

    def _places(self, geofence: GridIndex, located: list[Event]) -> list[_Place]:
        """Each event's place, from one geofence call for the batch. A place is built once per distinct
        geofence answer (cells and distances) and reused: events cluster on far fewer answers than points."""
        arrays = geofence.locate_arrays(
            [e.location.lon for e in located], [e.location.lat for e in located], "wgs84"  # type: ignore[union-attr]
        )
        offsets, cells, distances = arrays.offsets.tolist(), arrays.cells.tolist(), arrays.distances_m.tolist()
        if len(self._place_cache) > _PLACE_CACHE_LIMIT:
            self._place_cache.clear()
        places = []
        for point, admin_count in enumerate(arrays.admin_counts.tolist()):
            start, end = offsets[point], offsets[point + 1]
            key = (admin_count, tuple(cells[start:end]), tuple(distances[start:end]))
            place = self._place_cache.get(key)
            if place is None:
                place = self._place_cache[key] = self._place(geofence, *key)
            places.append(place)
        return places

    def _place(self, geofence: GridIndex, admin_count: int, cells: tuple[int, ...], distances: tuple[float, ...]) -> _Place:
        resolved = [geofence.cell(index, distance) for index, distance in zip(cells, distances, strict=True)]
        admin_path = resolved[:admin_count][::-1]
        grid_path = self._grid_path(Resolution(resolved, admin_path, not resolved))
        return (tuple(grid_path), "/".join(cell.name for cell in admin_path), "/".join(cell.id for cell in admin_path))

    def _grid_path(self, resolution: Resolution) -> list[GridCell]:
        """Admin path from the district down, then overlay cells. GridCell models are built once per cell
        (and distance) and shared: transforms must treat them as read-only."""
        admin_ids = {cell.id for cell in resolution.admin_path}
        overlays = [cell for cell in resolution.cells if cell.id not in admin_ids]
        path = []
        for cell in [*resolution.admin_path, *overlays]:
            grid_cell = self._grid_cells.get(cell)
            if grid_cell is None:
                grid_cell = self._grid_cells[cell] = cell.to_grid_cell()
            path.append(grid_cell)
        return path

    def _match_rules(
        self, events: list[Event], documents: list[dict[str, Any]], keys: list[str], times: list[float],
        admin_paths: list[tuple[str, str]],
    ) -> list[list[RuleMatch]]:
        rule_docs = []
        event_ids = ids.time_ordered_ids(times, keys)
        for event, event_id, document, (grid, grid_ids) in zip(events, event_ids, documents, admin_paths, strict=True):
            event.id = document["id"] = event_id
            document["category"] = event.category
            document["severity"] = event.severity
            document["grid"] = grid
            document["grid_ids"] = grid_ids
            rule_docs.append(orjson.dumps(document))
        matches = self.engines.rules.match_many(rule_docs) if len(self.engines.rules) else [[] for _ in events]
        for event, event_matches in zip(events, matches, strict=True):
            for match in event_matches:
                raised = match.actions.get("severity")
                if raised and Severity(raised).rank > event.severity.rank:
                    event.severity = Severity(raised)
        return matches

    def _apply_transforms(self, events: list[Event]) -> list[Event]:
        ordered = sorted(self.engines.transforms, key=lambda item: (item[1].stage, item[1].order))
        for plugin, transform in ordered:
            try:
                events = transform.apply(events)
            except Exception as exc:  # contained: this transform is skipped for this batch, counted
                self._report_transform(plugin, transform, exc)
            else:
                self._report_transform(plugin, transform, None)
        return events

    def _report_transform(self, plugin: str, transform: Transform, exc: BaseException | None) -> None:
        if self.on_transform_outcome is not None:
            self.on_transform_outcome(plugin, transform, exc)

    def _record(
        self, state: PipelineState, event: Event, incident_id: str, count: int, matches: list[RuleMatch],
        district: str | None,
    ) -> IncidentRecord:
        record = state.incidents.get(incident_id)
        if record is None:
            record = state.incidents[incident_id] = IncidentRecord(
                event.category, event.time.timestamp(), event.severity.rank, [], [], []
            )
        record.severity = max(record.severity, event.severity.rank)
        record.district = district
        record.report_count = count
        if event.source not in record.sources:
            record.sources.append(event.source)
        if len(record.reports) < MAX_ORDER_REPORTS:
            record.reports.append([event.source, event.source_event_id or event.id or ""])  # no source id: the hub's
        for match in matches:
            if match.rule_id not in record.matched_rules:
                record.matched_rules.append(match.rule_id)
        return record

    def _event_output(self, event: Event, incident_id: str, district: str | None, street: str | None) -> Message:
        subject = _event_subject(district, street, event.category, event.severity)
        raw = wire.encode(
            type_=wire.TYPE_EVENT, id_=event.id or "", source=_SOURCE, time=event.time, data=event, subject=subject,
            extensions={
                "category": event.category, "severity": event.severity, "incidentid": incident_id,
                "district": district, "street": street,
                "gridcell": event.grid_path[0].id if event.grid_path else None,
            },
        )
        return Message(subject, raw, event.id or "")

    def _dispatch_outputs(
        self, event: Event, incident_id: str, record: IncidentRecord, matches: list[RuleMatch]
    ) -> Iterable[Message]:
        for match in matches:
            for target in match.actions.get("route", ()):
                if target in record.dispatched:
                    continue
                record.dispatched.append(target)
                yield dispatch_output(build_order(event, incident_id, target, match, attempt=1, reports=record.reports))

    def _incident_output(self, record: IncidentRecord, incident_id: str, event: Event, opened: bool, count: int) -> Message:
        """The incident update as :class:`Incident` JSON, written directly from validated parts (a test checks
        it against the model) because it is published once per touched incident per batch."""
        data = _incident_data(record, incident_id, IncidentState.OPEN, event.time)
        data["grid_path"] = [cell.__dict__ for cell in event.grid_path]  # str/float fields only
        data["event_ids"] = [event.id]
        if event.location is not None:
            data["location"] = _location_json(event.location)
        if event.address is not None:
            data["address"] = event.address
        change = IncidentChange.OPENED if opened else IncidentChange.MERGED
        return incident_output(data, incident_id, record.category, data["severity"], record.district, change,
                               f"{incident_id}:{count}", event.time)

    def _expire(self, state: PipelineState, watermark: float, result: BatchResult) -> None:
        """Close the incidents whose merge window has passed (event time, not wall time: a replay after a
        crash closes the same incidents) and publish their ``closed`` change."""
        for incident_id in state.merger.expire(watermark):
            record = state.incidents.pop(incident_id, None)
            if record is not None:
                closed_at = datetime.fromtimestamp(watermark, timezone.utc)
                result.outputs.append(closed_output(record, incident_id, closed_at, "no report within the merge window"))




def build_order(
    event: Event, incident_id: str, target: str, match: RuleMatch, attempt: int, reports: Sequence[Sequence[str]]
) -> DispatchOrder:
    deepest = next((cell for cell in reversed(event.grid_path) if cell.layer), None)
    after = match.actions.get("escalate_after_s")
    return DispatchOrder(
        id=f"{incident_id}:{target}:{attempt}", incident_id=incident_id, target=target,
        connector=connector_for_target(target), grid_cell=deepest, category=event.category,
        severity=event.severity, summary=_summary(event), created_at=event.time,
        deadline=datetime.fromtimestamp(event.time.timestamp() + after, timezone.utc) if after else None,
        attempt=attempt, reports=[ReportRef(source=source, source_event_id=ref) for source, ref in reports],
    )


def _summary(event: Event) -> str:
    where = event.address or (event.grid_path[-1].name if event.grid_path else "unknown location")
    return f"{event.category.value} ({event.severity.value}) at {where}"


def dispatch_output(order: DispatchOrder) -> Message:
    subject = topology.dispatch_order_subject(order.connector or "gridworker")
    raw = wire.encode(
        type_=wire.TYPE_DISPATCH_ORDER, id_=order.id, source=_SOURCE, time=order.created_at, data=order,
        subject=subject, extensions={"category": order.category.value, "severity": order.severity.value,
                                     "incidentid": order.incident_id},
    )
    return Message(subject, raw, order.id)


def _location_json(location: Location) -> dict[str, Any]:
    data: dict[str, Any] = {"lon": location.lon, "lat": location.lat, "crs": location.crs}
    if location.accuracy_m is not None:
        data["accuracy_m"] = location.accuracy_m
    return data


def incident_output(
    data: Incident | dict[str, Any], incident_id: str, category: str, severity: str, district: str | None,
    change: IncidentChange, msg_id: str, time: datetime,
) -> Message:
    """An incident change on ``cityhub.incidents.<district>.<category>.<change>``."""
    subject = _incident_subject(district, category, change)
    raw = wire.encode(
        type_=f"{wire.TYPE_INCIDENT_PREFIX}{change}", id_=msg_id, source=_SOURCE, time=time, data=data,
        subject=subject,
        extensions={"category": category, "severity": severity, "incidentid": incident_id, "district": district},
    )
    return Message(subject, raw, f"{msg_id}:{change}")


def _incident_data(record: IncidentRecord, incident_id: str, state: IncidentState, updated_at: datetime) -> dict[str, Any]:
    """The :class:`Incident` fields the pipeline remembers of an incident, as JSON-ready values."""
    return {
        "id": incident_id, "category": record.category, "severity": _SEVERITIES[record.severity], "state": state,
        "opened_at": datetime.fromtimestamp(record.opened_at, timezone.utc), "updated_at": updated_at,
        "report_count": max(1, record.report_count), "sources": record.sources,
        "matched_rules": record.matched_rules, "escalation_level": 0,
    }


def closed_output(record: IncidentRecord, incident_id: str, closed_at: datetime, reason: str) -> Message:
    """The ``closed`` change of an incident, from what the pipeline remembers of it."""
    data = {**_incident_data(record, incident_id, IncidentState.CLOSED, closed_at), "closed_reason": reason}
    return incident_output(data, incident_id, record.category, data["severity"], record.district,
                           IncidentChange.CLOSED, incident_id, closed_at)


def dlq_output(rejection: Rejection) -> Message:
    source = source_of(rejection.subject)
    headers = {
        topology.HEADER_REASON: " ".join(rejection.reason.split())[:1024],
        topology.HEADER_REASON_KIND: rejection.kind,
        topology.HEADER_ORIGINAL_SUBJECT: rejection.subject,
    }
    msg_id = f"dlq:{rejection.seq}"
    return Message(topology.dlq_subject(source), rejection.raw, msg_id, headers)


# --- the consume loop -------------------------------------------------------------------------------


def _tune_garbage_collector() -> None:
    """A batch allocates tens of thousands of short-lived containers (documents, models, output dicts), almost
    none of them in reference cycles, so reference counting frees them and the cycle collector finds nothing.
    With CPython's default threshold it still ran every 700 allocations and its older generations walked every
    long-lived object (open incidents, grid cells, rules): a third of the pipeline's CPU per event
    (docs/runtime.md). What is alive once the state is restored is frozen out of collection, and young
    collections run every ``YOUNG_COLLECTION_EVERY`` allocations; cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 20, 20)


class Pipeline:
    """Runs :class:`BatchProcessor` over the durable ingest consumer, with snapshots and crash recovery."""

    def __init__(
        self, nc: NatsClient, engines: Engines, metrics: Metrics, options: PipelineOptions | None = None,
        on_transform_outcome: TransformOutcome | None = None, fence: Fence = UNFENCED,
    ):
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.fence = fence
        self.publisher = Publisher(nc, fence=fence)
        self.metrics = metrics
        self.options = options or PipelineOptions()
        self.processor = BatchProcessor(engines, self.options, on_transform_outcome)
        self.state = PipelineState.fresh(engines)
        self.counts: dict[str, int] = {"in": 0, "out": 0, "dlq": 0, "duplicates": 0, "merged": 0, "closed": 0,
                                       "batches": 0}
        self.last_batch_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._publishing: asyncio.Task[None] | None = None  # the latest batch's outputs on their way
        self._stopping = asyncio.Event()
        self._last_snapshot = time.monotonic()
        self._fresh_consumer = True
        self._consumer: Fetcher | None = None

    @property
    def engines(self) -> Engines:
        return self.processor.engines

    def swap_engines(self, engines: Engines) -> None:
        """Use new rules / grids / merge policy / transforms from the next batch on (the loop is between
        batches whenever other coroutines run, so no batch sees half of each)."""
        if engines.merge_policy != self.engines.merge_policy:
            self.state.merger.update_policy(engines.merge_policy)
        self.processor.engines = engines

    async def start(self) -> None:
        self._publishing = None
        await self._recover()
        _tune_garbage_collector()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="cityhub.pipeline")

    async def stop(self) -> None:
        """Finish the batch in hand, snapshot, and stop."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=self.options.fetch_timeout_s + 15)
        except asyncio.TimeoutError:
            self._task.cancel()
        self._task = None
        await self._snapshot()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # recovery

    async def _snapshot_store(self):  # noqa: ANN202 - nats ObjectStore
        return await open_object_store(self.js, SNAPSHOT_BUCKET)

    async def _snapshot(self) -> None:
        self.fence.check()
        store = await self._snapshot_store()
        await store.put(SNAPSHOT_NAME, self.state.snapshot())
        self._last_snapshot = time.monotonic()

    async def _recover(self) -> None:
        store = await self._snapshot_store()
        try:
            blob = (await store.get(SNAPSHOT_NAME)).data
        except (ObjectNotFoundError, NotFoundError):
            blob = None
        if blob:
            self.state = PipelineState.restore(blob, self.engines)
        ack_floor = await self._ack_floor()
        if ack_floor > self.state.last_seq:
            replayed = await self._replay(self.state.last_seq + 1, ack_floor)
            log.info("recovered pipeline state: snapshot at %d, replayed %d acknowledged messages up to %d",
                     self.state.last_seq - replayed, replayed, ack_floor)
        self._consumer = await self._durable_consumer(self.state.last_seq + 1)

    async def _ack_floor(self) -> int:
        try:
            info = await self.js.consumer_info(topology.INGEST_STREAM, PIPELINE_CONSUMER)
        except NotFoundError:
            return 0
        return info.ack_floor.stream_seq if info.ack_floor else 0

    async def _durable_consumer(self, first_seq: int) -> Fetcher:
        """The durable consumer, re-created to deliver from ``first_seq`` in stream order. A consumer left by
        a crashed process would first deliver past the messages that process had in flight (those come back
        only after ack_wait), and processing out of order would change dedup and merge results."""
        if self._consumer is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._consumer.stop()
        try:
            await self.js.delete_consumer(topology.INGEST_STREAM, PIPELINE_CONSUMER)
        except NotFoundError:
            pass
        self._fresh_consumer = True
        await self.js.add_consumer(topology.INGEST_STREAM, ConsumerConfig(
            durable_name=PIPELINE_CONSUMER, filter_subject=_INGEST_FILTER,
            ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first_seq,
            ack_wait=self.options.ack_wait_s, max_deliver=-1,
            max_ack_pending=max(10_000, self.options.batch_size * 4), max_waiting=16,
        ))
        return await Fetcher(self.nc, topology.INGEST_STREAM, PIPELINE_CONSUMER, prefetch=True).start()

    async def _replay(self, first: int, last: int) -> int:
        """Rebuild state from stream sequences ``first..last`` without publishing (their outputs are stored)."""
        consumer = await self.js.add_consumer(topology.INGEST_STREAM, ConsumerConfig(
            filter_subject=_INGEST_FILTER, ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first, inactive_threshold=30.0,
        ))
        fetcher = await Fetcher(self.nc, topology.INGEST_STREAM, consumer.name).start()
        replayed = 0
        try:
            while self.state.last_seq < last:
                msgs = await fetcher.fetch(min(self.options.batch_size, last - self.state.last_seq), timeout=5.0)
                batch = [(m.seq, m.subject, m.data) for m in msgs if self.state.last_seq < m.seq <= last]
                if batch:
                    self.processor.process(self.state, batch)
                    self.state.last_seq = batch[-1][0]
                    replayed += len(batch)
        finally:
            await fetcher.stop()
            with contextlib.suppress(nats.errors.Error, NotFoundError):
                await self.js.delete_consumer(topology.INGEST_STREAM, consumer.name)
        return replayed

    # the loop

    async def _run(self) -> None:
        """Fetch and process batch k+1 while JetStream stores batch k's outputs; acknowledge k once they are
        stored. Input is acknowledged in order, so the ack floor never passes unstored output."""
        in_flight: tuple[list[Delivered], Any, float] | None = None
        while not self._stopping.is_set():
            msgs = await self._fetch()
            if msgs and self._skipped_ahead(msgs):
                if in_flight is not None:
                    await self._complete(*in_flight)
                    in_flight = None
                log.warning("ingest delivery skipped past sequence %d (messages lost in flight, e.g. by a server "
                            "restart); re-reading from there", self.state.last_seq + 1)
                await self._reopen_consumer()
                continue
            started = time.monotonic()
            publishing = self._process(msgs) if msgs else None
            if in_flight is not None:
                await self._complete(*in_flight)
            in_flight = (msgs, publishing, started) if msgs else None
            if time.monotonic() - self._last_snapshot >= self.options.snapshot_interval_s:
                if in_flight is not None:  # a snapshot covers only input whose outputs are all stored
                    await self._complete(*in_flight)
                    in_flight = None
                await self._snapshot_retrying()
        if in_flight is not None:
            await self._complete(*in_flight)

    def _skipped_ahead(self, msgs: list[Delivered]) -> bool:
        """True when deliveries were lost in flight (e.g. across a reconnect): the batch starts past the next
        unprocessed sequence, or its consumer sequences are not consecutive. Lost messages come back only
        after ack_wait — too late for in-order processing, and AckAll on the batch would acknowledge them.
        Right after the consumer is (re)created a gap before the batch is genuine (messages aged out of the
        stream) and accepted."""
        fresh, self._fresh_consumer = self._fresh_consumer, False
        consecutive = all(later.consumer_seq == earlier.consumer_seq + 1 for earlier, later in itertools.pairwise(msgs))
        return not consecutive or (not fresh and msgs[0].seq > self.state.last_seq + 1)

    async def _reopen_consumer(self) -> None:
        """Re-create the durable consumer from the next unprocessed sequence, retrying while NATS is away."""
        while True:
            try:
                self._consumer = await self._durable_consumer(self.state.last_seq + 1)
                return
            except Exception as exc:  # not connected, or JetStream not answering yet
                log.warning("re-creating the ingest consumer failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    async def _fetch(self) -> list[Delivered]:
        assert self._consumer is not None, "start() creates the consumer"
        self.fence.check()
        try:
            msgs = await self._consumer.fetch(self.options.batch_size, timeout=self.options.fetch_timeout_s)
        except ConsumerGone as exc:
            log.warning("the ingest consumer is gone (%s); re-creating it from sequence %d", exc, self.state.last_seq + 1)
            await self._reopen_consumer()
            msgs = []
        except Exception as exc:  # connection trouble: nats-py reconnects; try again shortly
            log.warning("fetch failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(0.5)
            msgs = []
        raise_if_cancelled()
        return msgs

    def _process(self, msgs: list[Delivered]) -> tuple[asyncio.Task[None], BatchResult, int] | None:
        """Process a batch (skipping what was processed before) and start publishing its outputs."""
        batch = [(msg.seq, msg.subject, msg.data) for msg in msgs if msg.seq > self.state.last_seq]
        if not batch:
            return None
        result = self.processor.process(self.state, batch)
        self.state.last_seq = max(self.state.last_seq, batch[-1][0])
        self._publishing = asyncio.create_task(self._publish_all(result, after=self._publishing))
        return self._publishing, result, len(batch)

    async def _complete(
        self, msgs: list[Delivered], publishing: tuple[asyncio.Task[None], BatchResult, int] | None, started: float
    ) -> None:
        """Wait until the batch's outputs are stored, then acknowledge its input."""
        if publishing is not None:
            task, result, received = publishing
            await task
            self._count(result, received, started, msgs)
        await self._ack(msgs)
        self.last_batch_at = time.time()

    async def _publish_all(self, result: BatchResult, after: asyncio.Task[None] | None) -> None:
        """Publish every output and wait until JetStream has stored them all; retry the ones not known to
        be stored (same msg ids, so nothing is stored twice), however long NATS is away. Starts once the
        previous batch's outputs (``after``) are stored, so an incident's changes reach the stream in order
        even when a batch needs retries."""
        if after is not None:
            await after
        with result.timed("publish"):
            await self.publisher.publish_until_stored(result.outputs)

    async def _ack(self, msgs: list[Delivered]) -> None:
        """AckAll: acknowledging the highest sequence acknowledges the whole batch; wait for the server."""
        last = max(msgs, key=lambda msg: msg.seq)
        self.fence.check()
        try:
            await last.msg.ack_sync(timeout=5.0)
        except Exception as exc:  # the batch is redelivered and skipped as already processed
            log.warning("ack failed (%s: %s); the batch will be redelivered and skipped", type(exc).__name__, exc)

    async def _snapshot_retrying(self) -> None:
        try:
            await self._snapshot()
        except Exception as exc:  # a later snapshot covers the same state; recovery replays the gap
            log.warning("snapshot failed (%s: %s)", type(exc).__name__, exc)
            self._last_snapshot = time.monotonic()

    def _count(self, result: BatchResult, received: int, started: float, msgs: list[Delivered]) -> None:
        now = time.time()
        self.counts["in"] += received
        self.counts["out"] += result.accepted
        self.counts["dlq"] += len(result.rejected)
        self.counts["duplicates"] += result.duplicates
        self.counts["merged"] += result.merged
        self.counts["closed"] += result.closed
        self.counts["batches"] += 1
        self.metrics.stage_batch("pipeline", received, result.accepted, time.monotonic() - started)
        for stage, seconds in result.stage_seconds.items():
            self.metrics.stage_batch(stage, *self._stage_counts(stage, result, received), seconds)
        self.metrics.merged(result.merged)
        for rejection in result.rejected:
            self.metrics.dead_letter(source_of(rejection.subject), rejection.kind, rejection.reason)
        self.metrics.latency("end_to_end", (now - msg.stored_at for msg in msgs))

    @staticmethod
    def _stage_counts(stage: str, result: BatchResult, received: int) -> tuple[int, int]:
        """Events into and out of ``stage``: decode drops rejected input, dedup drops duplicates, publish
        emits every output message; the other stages emit what they receive."""
        decoded = received - len(result.rejected)
        if stage == "decode":
            return received, decoded
        if stage == "dedup":
            return decoded, result.accepted
        if stage == "publish":
            return result.accepted, len(result.outputs)
        return result.accepted, result.accepted
