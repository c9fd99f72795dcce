"""The pure part of the pipeline: a batch of ingest messages → outputs, mutating :class:`PipelineState`.

Per batch: decode + validate → dedup → coordinates to WGS-84 → geofence → rules → merge into incidents
(closing the incidents whose window ran out as the watermark moves) → transforms → outputs, on columns from
the Rust core when the batch allows it (the column path), else on :class:`Event` models (the model path);
both give the same bytes. Every output is a function of its input and the state before it, not of where the
input was cut into batches: each event gets its own incident update, and incidents expire at the event that
moves the watermark past their deadline.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from hub import ids
from hub.coords import convert
from hub.federation.handoff import handoff_output, outside_scope_output
from hub.federation.ownership import KEEP, OutsideScope, Ownership
from hub.geofence import GridIndex, Resolution
from hub.incidents import ExpiringMerge
from hub.models import CloseRequest, CoordSystem, Event, GridCell, IncidentChange, Severity
from hub.pipeline.batch_decode import BatchDecoder, EventColumns
from hub.pipeline.batch_encode import EventEncoder, grid_path_json
from hub.pipeline.decode import IngestMessage, Rejection, decode_events
from hub.pipeline.engines import Engines, PipelineOptions, TransformOutcome
from hub.pipeline.outputs import (
    build_order,
    closed_output,
    dispatch_output,
    district_and_street,
    dlq_output,
    event_output,
    incident_update_output,
    utc,
)
from hub.pipeline.state import MAX_ORDER_REPORTS, IncidentRecord, PipelineState
from hub.publisher import Message
from hub.rules import RuleMatch
from hub.transforms import Transform

log = logging.getLogger("cityhub.pipeline")

_Place = tuple[tuple[GridCell, ...], str, str, str]  # grid path, admin names and ids joined by "/", path as JSON
_PLACE_CACHE_LIMIT = 100_000


@dataclass
class BatchResult:
    """What one batch produced; ``evaluations`` feed ``Hub.dry_run``."""

    outputs: list[Message] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    merged: int = 0
    closed: int = 0  # incidents closed on request
    handed_down: int = 0  # events located in a child hub's scope, handed to it
    outside_scope: list[tuple[str, str]] = field(default_factory=list)  # (source, reason) of each event dead-lettered
                                                                         # for being outside this hub's scope
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # processing time per pipeline stage

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + time.perf_counter() - started

    def extend(self, other: BatchResult) -> None:
        """Add the results of the next part of the same batch."""
        self.outputs += other.outputs
        self.rejected += other.rejected
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.merged += other.merged
        self.closed += other.closed
        self.handed_down += other.handed_down
        self.outside_scope += other.outside_scope
        self.evaluations += other.evaluations
        for stage, seconds in other.stage_seconds.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds


def _ingest_data(raw: bytes) -> dict[str, Any]:
    """The event document of an ingest message the decoder accepted (a CloudEvent's ``data``, or the
    message itself)."""
    document = orjson.loads(raw)
    return document["data"] if "specversion" in document else document


def _input_grid_path(text: str) -> tuple[GridCell, ...]:
    """A grid path as the event arrived with it (kept when the pipeline does not locate the event)."""
    return () if text == "[]" else tuple(GridCell.model_validate(cell) for cell in orjson.loads(text))


@dataclass
class _Fresh:
    """The events of a batch that passed dedup, with what the stages add to each, index by index."""

    events: list[Event]
    documents: list[dict[str, Any]]
    keys: list[str]
    clocks: list[float]  # the hub's time for each event (EventTimeWindow.clock)
    received: list[float]

    def subset(self, indexes: list[int]) -> _Fresh:
        """The events at ``indexes``, with what belongs to each."""
        return _Fresh([self.events[i] for i in indexes], [self.documents[i] for i in indexes],
                      [self.keys[i] for i in indexes], [self.clocks[i] for i in indexes],
                      [self.received[i] for i in indexes])


def _raised(severity: Severity, matches: list[RuleMatch]) -> Severity:
    """``severity`` raised by the matched rules' ``severity`` actions, never lowered."""
    for match in matches:
        raised = match.actions.get("severity")
        if raised and Severity(raised).rank > severity.rank:
            severity = Severity(raised)
    return severity


class _Point(NamedTuple):
    """An event's location as the outputs read it."""

    lon: float
    lat: float
    crs: str
    accuracy_m: float | None


class _Report(NamedTuple):
    """What the outputs read of an event on the column path (in place of its :class:`Event`)."""

    id: str
    source_event_id: str
    category: str
    severity: Severity
    grid_path: Sequence[GridCell]
    location: _Point | None
    address: str | None


class BatchProcessor:
    """Processes batches of ingest messages against a :class:`PipelineState`; holds the engines and caches."""

    def __init__(self, engines: Engines, options: PipelineOptions, on_transform_outcome: TransformOutcome | None = None):
        self._engines = engines
        self._grid_cells: dict[Any, GridCell] = {}
        self._place_cache: dict[tuple[int, tuple[int, ...], tuple[float, ...]], _Place] = {}
        self.options = options
        self.on_transform_outcome = on_transform_outcome
        self._decoder = BatchDecoder(taxonomy=engines.taxonomy)
        self._encoder = EventEncoder()

    @property
    def engines(self) -> Engines:
        return self._engines

    @engines.setter
    def engines(self, engines: Engines) -> None:
        self._engines = engines
        self._grid_cells = {}  # new grids: new cells
        self._place_cache = {}
        if engines.taxonomy is not self._decoder.taxonomy:
            self._decoder = BatchDecoder(taxonomy=engines.taxonomy)

    def process(self, state: PipelineState, batch: Sequence[IngestMessage], evaluate: bool = False) -> BatchResult:
        """``batch``: messages in stream order. Raises whatever a stage raises, leaving ``state`` partly
        updated: :mod:`hub.pipeline.isolation` decides what to do about it."""
        result = BatchResult()
        if self._columns_apply(evaluate) and self._process_columns(state, batch, result):
            return result
        with result.timed("decode"):
            decoded = decode_events(batch, self.options.max_message_bytes, self.options.event_time, self.engines.taxonomy)
        result.rejected = decoded.rejected
        start = 0
        for end, request, requester, received in [*decoded.closes, (len(decoded.events), None, "", 0.0)]:
            if end > start:  # the events before a close request may still merge into its incident
                self._process_events(state, decoded.events[start:end], decoded.documents[start:end],
                                     decoded.received[start:end], result, evaluate)
                start = end
            if request is not None:
                self._close(state, request, requester, received, result)
        for rejection in result.rejected:
            result.outputs.append(dlq_output(rejection))
        return result

    def _columns_apply(self, evaluate: bool) -> bool:
        """Whether a batch may take the column path: not for a dry run (it reports models), and only when
        every transform works on columns; a transform that wants :class:`Event` objects gets the batch on
        the model path."""
        return not evaluate and all(hasattr(transform, "apply_columns") for _, transform in self.engines.transforms)

    def _process_columns(self, state: PipelineState, batch: Sequence[IngestMessage], result: BatchResult) -> bool:
        """The batch decoded, processed and encoded on columns, without a model per event; False (and
        nothing changed) when the model must decide part of it beyond rejecting it: a lax event, a close
        request, an event without a source id (its dedup key hashes the model's JSON)."""
        options = self.options
        with result.timed("decode"):
            fast, undecided = self._decoder.decode(batch, options.max_message_bytes, options.event_time)
            rest = decode_events(undecided, options.max_message_bytes, options.event_time, self.engines.taxonomy)
        if rest.events or rest.closes or not all(fast.columns["source_event_id"]):
            return False
        result.rejected = rest.rejected
        if fast.positions:
            self._column_stages(state, fast, [batch[position] for position in fast.positions], result)
        for rejection in result.rejected:
            result.outputs.append(dlq_output(rejection))
        return True

    def _column_stages(self, state: PipelineState, fast: EventColumns, messages: list[IngestMessage], result: BatchResult) -> None:
        columns = fast.columns
        window = self.options.event_time
        with result.timed("dedup"):
            keys = list(map(ids.source_key, columns["source"], columns["source_event_id"], columns["status"]))
            clocks = [window.clock(at, message.received) for at, message in zip(columns["time"], messages, strict=True)]
            kept = [i for i, duplicate in enumerate(state.deduper.check_many(keys, clocks)) if not duplicate]
            result.duplicates += len(keys) - len(kept)
            if len(kept) < len(keys):
                columns = {name: [values[i] for i in kept] for name, values in columns.items()}
                keys, clocks, messages = [keys[i] for i in kept], [clocks[i] for i in kept], [messages[i] for i in kept]
        if not keys:
            return
        result.accepted += len(keys)
        with result.timed("geo"):
            places = self._locate_columns(columns)
        with result.timed("rules"):
            event_ids = columns["id"] = ids.time_ordered_ids(clocks, keys)
            admin_paths = [(place[1], place[2]) if place else ("", "") for place in places]
            documents = [_ingest_data(message.data) for message in messages] if len(self.engines.rules) else []
            matches = self._rule_matches(documents, event_ids, columns["category"], columns["severity"], admin_paths)
            severities = [_raised(Severity(severity), found) for severity, found in zip(columns["severity"], matches, strict=True)]
            columns["severity"] = [severity.value for severity in severities]
        with result.timed("merge"):
            located = columns["location"]
            merge = state.merger.add_columns_expiring(
                event_ids, clocks, columns["category"],
                [lon if present else None for lon, present in zip(columns["location.lon"], located, strict=True)],
                [lat if present else None for lat, present in zip(columns["location.lat"], located, strict=True)],
                columns["address"], columns["text"], state.watermark,
            )
            state.watermark = merge.watermark
        result.merged += sum(1 for is_new in merge.merge.is_new if not is_new)
        with result.timed("transforms"):
            self._apply_column_transforms(columns)
        with result.timed("encode"):
            grid_paths = [place[0] if place else _input_grid_path(text) for place, text in zip(places, columns["grid_path"], strict=True)]
            reports = [
                _Report(event_id, reference, category, severity, path,
                        _Point(lon, lat, crs, accuracy) if present else None, address)
                for event_id, reference, category, severity, path, present, lon, lat, crs, accuracy, address in zip(
                    event_ids, columns["source_event_id"], columns["category"], severities, grid_paths, located,
                    columns["location.lon"],
                    columns["location.lat"], columns["location.crs"], columns["location.accuracy_m"],
                    columns["address"], strict=True)
            ]
            self._column_outputs(state, columns, reports, clocks, messages, merge, matches, result)

    def _locate_columns(self, columns: dict[str, list[Any]]) -> list[_Place | None]:
        """Every location converted to WGS-84 in its columns, and each event's place (None when it has no
        location or there is no geofence); a located event's ``grid_path`` column becomes its place's."""
        located = [row for row, present in enumerate(columns["location"]) if present]
        lons, lats, systems = columns["location.lon"], columns["location.lat"], columns["location.crs"]
        for system in {systems[row] for row in located} - {CoordSystem.WGS84.value}:
            group = [row for row in located if systems[row] == system]
            converted = convert([lons[row] for row in group], [lats[row] for row in group], system, CoordSystem.WGS84)
            for row, lon, lat in zip(group, *converted, strict=True):
                lons[row], lats[row], systems[row] = lon, lat, CoordSystem.WGS84.value
        places: list[_Place | None] = [None] * len(lons)
        if self.engines.geofence is None or not located:
            return places
        grid_paths = columns["grid_path"]
        for row, place in zip(located, self._places(self.engines.geofence, [lons[r] for r in located], [lats[r] for r in located]), strict=True):
            places[row] = place
            grid_paths[row] = place[3]
        return places

    def _apply_column_transforms(self, columns: dict[str, list[Any]]) -> None:
        for plugin, transform in sorted(self.engines.transforms, key=lambda item: (item[1].stage, item[1].order)):
            try:
                transform.apply_columns(columns)  # type: ignore[attr-defined]
            except Exception as exc:  # contained: this transform is skipped for this batch, counted
                self._report_transform(plugin, transform, exc)
            else:
                self._report_transform(plugin, transform, None)

    def _column_outputs(
        self, state: PipelineState, columns: dict[str, list[Any]], reports: list[_Report], clocks: list[float],
        messages: list[IngestMessage], merge: ExpiringMerge, matches: list[list[RuleMatch]], result: BatchResult,
    ) -> None:
        """:meth:`_outputs` for the column path: the unified events encoded in one call."""
        batch = merge.merge
        places = [district_and_street(report.grid_path) for report in reports]
        events = self._encoder.encode(
            columns, columns["id"], batch.incident_ids, [place[0] for place in places], [place[1] for place in places],
            [report.grid_path[0].id if report.grid_path else None for report in reports],
        )
        expired = iter(zip(*merge.closed, strict=True))
        next_expired = next(expired, None)
        for position, (report, incident_id, is_new, count, event_matches) in enumerate(zip(
            reports, batch.incident_ids, batch.is_new, batch.report_counts, matches, strict=True
        )):
            while next_expired is not None and next_expired[0] == position:
                self._expired(state, next_expired[1], next_expired[2], result)
                next_expired = next(expired, None)
            clock = clocks[position]
            record = self._record(state, incident_id, clock, count, event_matches, places[position][0], report.category,
                                  report.severity, columns["source"][position], report.source_event_id)
            result.outputs.append(events[position])
            if event_matches:
                result.outputs.extend(self._dispatch_outputs(report, incident_id, record, event_matches,  # type: ignore[arg-type]
                                                             messages[position].received))
            change = IncidentChange.OPENED if is_new else IncidentChange.MERGED
            result.outputs.append(incident_update_output(record, incident_id, report, change, count, utc(clock)))  # type: ignore[arg-type]

    def _close(self, state: PipelineState, request: CloseRequest, requester: str, received: float, result: BatchResult) -> None:
        """Close an open incident on request; one that is not open (closed before, expired, unknown) stays
        as it is."""
        record = state.incidents.get(request.incident_id)
        if not state.merger.close(request.incident_id) or record is None:
            log.info("close request for %s from %s: not an open incident", request.incident_id, requester)
            return
        del state.incidents[request.incident_id]
        result.closed += 1
        closed_at = utc(self.options.event_time.clock(request.time.timestamp(), received))
        result.outputs.append(closed_output(record, request.incident_id, closed_at, f"{request.reason} ({requester})"))

    def _process_events(
        self, state: PipelineState, events: list[Event], documents: list[dict[str, Any]], received: list[float],
        result: BatchResult, evaluate: bool,
    ) -> None:
        with result.timed("dedup"):
            fresh = self._deduplicated(state, events, documents, received, result)
        if not fresh.events:
            return
        with result.timed("geo"):
            admin_paths = self._normalise_and_locate(fresh.events)
        if self.engines.ownership is not None:
            with result.timed("tiers"):
                fresh, admin_paths = self._kept_here(self.engines.ownership, fresh, admin_paths, result)
            if not fresh.events:
                return
        result.accepted += len(fresh.events)
        with result.timed("rules"):
            matches = self._match_rules(fresh.events, fresh.documents, fresh.keys, fresh.clocks, admin_paths)
        with result.timed("merge"):
            merge = self._merge(state, fresh)
        result.merged += sum(1 for is_new in merge.merge.is_new if not is_new)
        with result.timed("transforms"):
            fresh.events = self._apply_transforms(fresh.events)
        with result.timed("encode"):
            self._outputs(state, fresh, merge, matches, result, evaluate)

    def _deduplicated(
        self, state: PipelineState, events: list[Event], documents: list[dict[str, Any]], received: list[float],
        result: BatchResult,
    ) -> _Fresh:
        window = self.options.event_time
        keys = [ids.idempotency_key(event) for event in events]
        clocks = [window.clock(event.time.timestamp(), at) for event, at in zip(events, received, strict=True)]
        duplicate = state.deduper.check_many(keys, clocks)
        kept = [i for i, dup in enumerate(duplicate) if not dup]
        result.duplicates += len(events) - len(kept)
        return _Fresh(events, documents, keys, clocks, received).subset(kept)

    @staticmethod
    def _kept_here(
        ownership: Ownership, fresh: _Fresh, admin_paths: list[tuple[str, str]], result: BatchResult
    ) -> tuple[_Fresh, list[tuple[str, str]]]:
        """The events this hub handles, and their admin paths. The others are handed down to the child hub
        that owns their place, or dead-lettered when it is outside this hub's scope (:mod:`hub.federation`)."""
        kept = []
        for index, event in enumerate(fresh.events):
            document, key = fresh.documents[index], fresh.keys[index]
            try:
                child = ownership.route(*district_and_street(event.grid_path))
            except OutsideScope as exc:
                result.outputs.append(outside_scope_output(event.source, document, key, str(exc)))
                result.outside_scope.append((event.source, str(exc)))
                continue
            if child == KEEP:
                kept.append(index)
            else:
                result.outputs.append(handoff_output(child, event.source, document, key))
                result.handed_down += 1
        return fresh.subset(kept), [admin_paths[index] for index in kept]

    @staticmethod
    def _merge(state: PipelineState, fresh: _Fresh) -> ExpiringMerge:
        events = fresh.events
        merge = state.merger.add_columns_expiring(
            [event.id or "" for event in events],
            fresh.clocks,
            [event.category for event in events],  # StrEnum members are str
            [event.location.lon if event.location else None for event in events],
            [event.location.lat if event.location else None for event in events],
            [event.address for event in events],
            [event.text for event in events],
            state.watermark,
        )
        state.watermark = merge.watermark
        return merge

    def _outputs(
        self, state: PipelineState, fresh: _Fresh, merge: ExpiringMerge, matches: list[list[RuleMatch]],
        result: BatchResult, evaluate: bool,
    ) -> None:
        """Per event, in order: the incidents that expired before it, its unified event, its dispatch orders
        and its incident's update."""
        batch = merge.merge
        expired = iter(zip(*merge.closed, strict=True))
        next_expired = next(expired, None)
        for position, (event, incident_id, is_new, count, event_matches) in enumerate(zip(
            fresh.events, batch.incident_ids, batch.is_new, batch.report_counts, matches, strict=True
        )):
            while next_expired is not None and next_expired[0] == position:
                self._expired(state, next_expired[1], next_expired[2], result)
                next_expired = next(expired, None)
            district, street = district_and_street(event.grid_path)
            clock, received = fresh.clocks[position], fresh.received[position]
            record = self._record(state, incident_id, clock, count, event_matches, district, event.category,
                                  event.severity, event.source, event.source_event_id or event.id or "")
            result.outputs.append(event_output(event, incident_id, district, street))
            if event_matches:
                result.outputs.extend(self._dispatch_outputs(event, incident_id, record, event_matches, received))
            change = IncidentChange.OPENED if is_new else IncidentChange.MERGED
            result.outputs.append(incident_update_output(record, incident_id, event, change, count, utc(clock)))
            if evaluate:
                result.evaluations.append({
                    "event": event.model_dump(mode="json", exclude_none=True),
                    "grid_path": [cell.model_dump(mode="json") for cell in event.grid_path],
                    "incident": {"id": incident_id, "is_new": is_new, "report_count": count},
                    "matched_rules": [match.rule_id for match in event_matches],
                })

    @staticmethod
    def _expired(state: PipelineState, incident_id: str, closed_at: float, result: BatchResult) -> None:
        """An incident no report joined within its merge window: its ``closed`` change, dated when the window
        ran out (by the hub's clock, so a replay after a crash closes the same incidents at the same time)."""
        record = state.incidents.pop(incident_id, None)
        if record is not None:
            result.outputs.append(closed_output(record, incident_id, utc(closed_at), "no report within the merge window"))

    def _normalise_and_locate(self, events: list[Event]) -> list[tuple[str, str]]:
        """Convert every location to WGS-84 and resolve its grid path; returns each event's admin path as
        (names, ids) joined by ``/``, the ``grid`` and ``grid_ids`` fields rules see."""
        located = [event for event in events if event.location is not None]
        self._to_wgs84(located)
        if self.engines.geofence is None or not located:
            return [("", "")] * len(events)
        admin_paths = {id(event): ("", "") for event in events}
        places = self._places(self.engines.geofence, [e.location.lon for e in located], [e.location.lat for e in located])  # type: ignore[union-attr]
        for event, (grid_path, grid, grid_ids, _) in zip(located, places, strict=True):
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

    def _places(self, geofence: GridIndex, lons: list[float], lats: list[float]) -> list[_Place]:
        """Each WGS-84 point's place, from one geofence call for the batch. A place is built once per distinct
        geofence answer (cells and distances) and reused: events cluster on far fewer answers than points."""
        arrays = geofence.locate_arrays(lons, lats, "wgs84")
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
        return (tuple(grid_path), "/".join(cell.name for cell in admin_path), "/".join(cell.id for cell in admin_path),
                grid_path_json(grid_path))

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
        event_ids = ids.time_ordered_ids(times, keys)
        for event, event_id in zip(events, event_ids, strict=True):
            event.id = event_id
        matches = self._rule_matches(documents, event_ids, [e.category for e in events], [e.severity for e in events],
                                     admin_paths)
        for event, event_matches in zip(events, matches, strict=True):
            event.severity = _raised(event.severity, event_matches)
        return matches

    def _rule_matches(
        self, documents: Sequence[dict[str, Any]], event_ids: list[str], categories: Sequence[str],
        severities: Sequence[str], admin_paths: list[tuple[str, str]],
    ) -> list[list[RuleMatch]]:
        """The rules each event matches; rules see its ingest document with the hub's id, category,
        severity and admin path (``grid`` names, ``grid_ids``) written in."""
        if not len(self.engines.rules):
            return [[] for _ in event_ids]
        rule_docs = []
        for document, event_id, category, severity, (grid, grid_ids) in zip(
            documents, event_ids, categories, severities, admin_paths, strict=True
        ):
            document["id"], document["category"], document["severity"] = event_id, category, severity
            document["grid"], document["grid_ids"] = grid, grid_ids
            rule_docs.append(orjson.dumps(document))
        return self.engines.rules.match_many(rule_docs)

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

    @staticmethod
    def _record(
        state: PipelineState, incident_id: str, clock: float, count: int, matches: list[RuleMatch],
        district: str | None, category: str, severity: Severity, source: str, reference: str,
    ) -> IncidentRecord:
        """The incident's record after this report; ``reference`` is the report's source id (the hub's
        event id when the source has none)."""
        record = state.incidents.get(incident_id)
        if record is None:
            record = state.incidents[incident_id] = IncidentRecord(category, clock, severity.rank, [], [], [])
        record.severity = max(record.severity, severity.rank)
        record.district = district
        record.report_count = count
        if source not in record.sources:
            record.sources.append(source)
        if len(record.reports) < MAX_ORDER_REPORTS:
            record.reports.append([source, reference])
        for match in matches:
            if match.rule_id not in record.matched_rules:
                record.matched_rules.append(match.rule_id)
        return record

    @staticmethod
    def _dispatch_outputs(
        event: Event, incident_id: str, record: IncidentRecord, matches: list[RuleMatch], received: float
    ) -> Iterable[Message]:
        for match in matches:
            for target in match.actions.get("route", ()):
                if target in record.dispatched:
                    continue
                record.dispatched.append(target)
                order = build_order(event, incident_id, target, match, attempt=1, reports=record.reports,
                                    dispatched_at=utc(received))
                yield dispatch_output(order)
