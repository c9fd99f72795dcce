"""The pure part of the pipeline: a batch of ingest messages → outputs, mutating :class:`PipelineState`.

Per batch: decode + validate → dedup → coordinates to WGS-84 → geofence → rules → merge into incidents
(closing the incidents whose window ran out as the watermark moves) → transforms → outputs. Every output is a
function of its input and the state before it, not of where the input was cut into batches: each event gets
its own incident update, and incidents expire at the event that moves the watermark past their deadline.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from hub import ids
from hub.coords import convert
from hub.federation.handoff import handoff_output, outside_scope_output
from hub.federation.ownership import KEEP, OutsideScope, Ownership
from hub.geofence import GridIndex, Resolution
from hub.incidents import ExpiredIncidents, ExpiringMerge, MergeBatch
from hub.models import CloseRequest, CoordSystem, Event, GridCell, IncidentChange, Severity, Triage
from hub.pipeline import areas
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
from hub.nats.publisher import Message
from hub.rules import RuleMatch
from hub.transforms import Transform

log = logging.getLogger("cityhub.pipeline")

_Place = tuple[tuple[GridCell, ...], str, str]  # grid path, admin names and admin ids joined by "/"
_PLACE_CACHE_LIMIT = 100_000
_NAMED_TARGETS = ("dept:", "connector:")  # route targets that name who serves them rather than a cell


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


class BatchProcessor:
    """Processes batches of ingest messages against a :class:`PipelineState`; holds the engines and caches."""

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

    def process(self, state: PipelineState, batch: Sequence[IngestMessage], evaluate: bool = False) -> BatchResult:
        """``batch``: messages in stream order. Raises whatever a stage raises, leaving ``state`` partly
        updated: :mod:`hub.pipeline.isolation` decides what to do about it."""
        result = BatchResult()
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

    def _close(self, state: PipelineState, request: CloseRequest, requester: str, received: float, result: BatchResult) -> None:
        """Close an open incident on request; one that is not open (closed before, expired, unknown) stays
        as it is."""
        record = state.incidents.get(request.incident_id)
        is_area = record is not None and record.area_key is not None
        if not (state.merger.close(request.incident_id) or is_area) or record is None:
            log.info("close request for %s from %s: not an open incident", request.incident_id, requester)
            return
        del state.incidents[request.incident_id]
        areas.forget(state, record)
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
        self._stamp_reception(fresh)
        self._triage_unplaced(fresh.events)
        with result.timed("rules"):
            matches = self._match_rules(fresh.events, fresh.documents, fresh.keys, fresh.clocks, admin_paths)
        with result.timed("merge"):
            merge = self._merge(state, fresh)
        result.merged += sum(1 for event, is_new in zip(fresh.events, merge.merge.is_new, strict=True)
                             if not is_new and event.area is None)  # area reports count as they join, in _outputs
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

    def _stamp_reception(self, fresh: _Fresh) -> None:
        """Each event's second clock: when the hub received it, and whether that was late."""
        window = self.options.event_time
        for event, received in zip(fresh.events, fresh.received, strict=True):
            event.received_at = utc(received)
            event.late = window.is_late(event.time.timestamp(), received)

    def _merge(self, state: PipelineState, fresh: _Fresh) -> ExpiringMerge:
        """Every report but an area's goes through the merger, whose results and expiry positions are mapped back
        onto the whole batch; an area report's place holds ``("", False, 0)`` until :meth:`_outputs` joins it to
        its area's incident (:mod:`hub.pipeline.areas`) in stream order, after the expiries before it."""
        merged = [position for position, event in enumerate(fresh.events) if event.area is None]
        if len(merged) == len(fresh.events):
            return self._merge_reports(state, fresh.events, fresh.clocks)
        merge = self._merge_reports(state, [fresh.events[i] for i in merged], [fresh.clocks[i] for i in merged])
        results = iter(zip(*merge.merge, strict=True))
        incident_ids, is_new, counts = zip(*[("", False, 0) if event.area is not None else next(results)
                                             for event in fresh.events], strict=True)
        expired = merge.closed
        return ExpiringMerge(
            MergeBatch(list(incident_ids), list(is_new), list(counts)),
            ExpiredIncidents([merged[p] for p in expired.positions], expired.incident_ids, expired.closed_at),
            merge.watermark,
        )

    @staticmethod
    def _merge_reports(state: PipelineState, events: list[Event], clocks: list[float]) -> ExpiringMerge:
        merge = state.merger.add_columns_expiring(
            [event.id or "" for event in events],
            clocks,
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
        """Per event, in order: the incidents that expired before it, its unified event, its dispatch orders,
        its incident's update and the area incidents whose area expired by its clock."""
        batch = merge.merge
        expired = iter(zip(*merge.closed, strict=True))
        next_expired = next(expired, None)
        for position, (event, incident_id, is_new, count, event_matches) in enumerate(zip(
            fresh.events, batch.incident_ids, batch.is_new, batch.report_counts, matches, strict=True
        )):
            while next_expired is not None and next_expired[0] == position:
                self._expired(state, next_expired[1], next_expired[2], result)
                next_expired = next(expired, None)
            if event.area is not None:
                incident_id, is_new, count = areas.join(state, event)
                result.merged += not is_new
            district, street = district_and_street(event.grid_path)
            clock, received = fresh.clocks[position], fresh.received[position]
            record = self._record(state, event, incident_id, clock, received, count, event_matches, district)
            result.outputs.append(event_output(event, incident_id, district, street))
            if event_matches or event.triage is not None or event.area is not None:
                result.outputs.extend(self._dispatch_outputs(event, incident_id, record, event_matches, received))
            change = IncidentChange.OPENED if is_new else IncidentChange.MERGED
            result.outputs.append(incident_update_output(record, incident_id, event, change, count, utc(clock)))
            self._expire_areas(state, clock, result)
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

    def _expire_areas(self, state: PipelineState, clock: float, result: BatchResult) -> None:
        """After each report: close the area incidents whose area expired by the latest clock seen."""
        state.area_watermark = max(state.area_watermark, clock)
        if not state.areas:
            return
        for incident_id, expires_at in list(areas.expired(state, state.area_watermark)):
            record = state.incidents.pop(incident_id)
            areas.forget(state, record)
            result.outputs.append(closed_output(record, incident_id, utc(expires_at), "the area warning expired"))

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

    def _triage_unplaced(self, events: list[Event]) -> None:
        """With grids, an event on no cell (outside them, or with no location, grid path or area cells) goes to
        triage."""
        with_grids = self.engines.geofence is not None
        for event in events:  # what a sender wrote in triage is not taken
            placed = event.grid_path or (event.area is not None and event.area.cells)
            event.triage = Triage.NO_CELL if with_grids and not placed else None

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
        self, state: PipelineState, event: Event, incident_id: str, clock: float, received: float, count: int,
        matches: list[RuleMatch], district: str | None,
    ) -> IncidentRecord:
        record = state.incidents.get(incident_id)
        if record is None:
            record = state.incidents[incident_id] = IncidentRecord(
                event.category, clock, event.severity.rank, [], [], [], received_at=received, late=event.late,
                area_key=areas.area_key(event) if event.area is not None else None)
        if event.area is not None:
            record.expires_at = event.area.expires_at.timestamp() if event.area.expires_at else None
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

    def _dispatch_outputs(
        self, event: Event, incident_id: str, record: IncidentRecord, matches: list[RuleMatch], received: float
    ) -> Iterable[Message]:
        for target, match, cell in self._routes(event, matches):
            if target in record.dispatched:
                continue
            record.dispatched.append(target)
            order = build_order(event, incident_id, target, match, attempt=1, reports=record.reports,
                                dispatched_at=utc(received), cell=cell)
            yield dispatch_output(order)

    def _routes(self, event: Event, matches: list[RuleMatch]) -> list[tuple[str, RuleMatch | None, GridCell | None]]:
        """Each route target with the rule match that gives its deadline and the cell it serves. The rules'
        routes; for an event in triage the unplaced route instead; for an area event one ``cell:<id>`` order per
        cell of its area instead of the rules' cell-served targets (grid workers, grid levels, five-way), beside
        their departments and connectors. Triage and area orders go out whether or not a rule matched, with the
        first deadline its rules give."""
        timed = next((match for match in matches if match.actions.get("escalate_after_s")), None)
        if event.triage is not None:
            return [(target, timed, None) for target in self.engines.unplaced_route]
        routes = [(target, match) for match in matches for target in match.actions.get("route", ())]
        if event.area is None:
            return [(target, match, None) for target, match in routes]
        per_cell: list[tuple[str, RuleMatch | None, GridCell | None]] = [
            (areas.cell_target(cell), timed, cell) for cell in event.area.cells]
        return per_cell + [(target, match, None) for target, match in routes if target.startswith(_NAMED_TARGETS)]
