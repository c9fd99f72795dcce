"""The pure part of the pipeline: a batch of ingest messages → outputs, mutating :class:`PipelineState`.

Per batch: decode + validate → dedup → coordinates to WGS-84 → geofence → hand-off to a lower tier → reception
stamp and triage → rules → merge into incidents (closing the incidents whose window ran out as the watermark
moves) → transforms → outputs. The batch's events are columns from decoding to encoding
(:mod:`hub.pipeline.columns`): the Rust core decodes them and encodes the unified events and incident changes,
and no stage builds a model object per event (a transform that asks for :class:`~hub.models.Event` objects
gets them, at a cost: docs/plugin_hooks.md). Every output is a function of its input and the state before it,
not of where the input was cut into batches: each event gets its own incident update, and incidents expire at
the event that moves the watermark past their deadline.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import orjson
from pydantic import TypeAdapter

from hub import _core, ids
from hub.coords import convert
from hub.federation.handoff import handoff_output, outside_scope_output
from hub.federation.ownership import KEEP, OutsideScope, Ownership
from hub.geofence import GridIndex, Resolution
from hub.incidents import ExpiredIncidents, ExpiringMerge, MergeBatch
from hub.models import Area, CloseRequest, CoordSystem, GridCell, IncidentChange, Severity, Triage
from hub.nats.publisher import Message
from hub.pipeline import areas
from hub.pipeline.batch_decode import BatchDecoder
from hub.pipeline.batch_encode import Change, Extension, event_messages, incident_messages
from hub.pipeline.columns import EventColumns
from hub.pipeline.decode import IngestMessage, Rejection, event_document
from hub.pipeline.engines import Engines, PipelineOptions, TransformOutcome
from hub.pipeline.outputs import (
    build_order,
    dispatch_output,
    district_and_street,
    dlq_output,
    event_subject,
    incident_subject,
    utc,
)
from hub.pipeline.state import MAX_ORDER_REPORTS, IncidentRecord, PipelineState
from hub.rules import RuleMatch
from hub.transforms import Transform

log = logging.getLogger("cityhub.pipeline")

_Place = tuple[tuple[GridCell, ...], str, str, str]  # grid path, admin names and ids joined by "/", path as JSON
_PlaceKey = tuple[int, bytes, bytes]  # a geofence answer: admin cell count, cell indices and distances (raw)
_PLACE_CACHE_LIMIT = 100_000
_NAMED_TARGETS = ("dept:", "connector:")  # route targets that name who serves them rather than a cell
_SEVERITIES = {severity.value: severity for severity in Severity}
_SEVERITY_NAMES = [severity.value for severity in Severity]
_GRID_PATH = TypeAdapter(list[GridCell])
_WGS84 = CoordSystem.WGS84.value
_NO_CELL = Triage.NO_CELL.value


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
class _Rows:
    """The events of a batch being processed, with what the stages add to each, row by row."""

    columns: EventColumns
    messages: list[IngestMessage]  # the message each came in: its bytes, subject and reception
    checked: list[bool]  # accepted by the core's decoder (else decided by the model: lax input)
    times: list[float] = field(default_factory=list)  # its own time, epoch seconds
    keys: list[str] = field(default_factory=list)
    clocks: list[float] = field(default_factory=list)  # the hub's time for it (EventTimeWindow.clock)
    admin_paths: list[tuple[str, str]] = field(default_factory=list)  # admin names and ids joined by "/"

    def take(self, rows: list[int]) -> _Rows:
        """The events at ``rows``, with what belongs to each."""
        if len(rows) == len(self.messages):
            return self
        getter = operator.itemgetter(*rows) if len(rows) > 1 else (lambda values: tuple(values[row] for row in rows))

        def pick(values: list[Any]) -> list[Any]:  # what a stage has not filled in yet stays empty
            return list(getter(values)) if values else []

        return _Rows(
            self.columns.take(rows),
            pick(self.messages),
            pick(self.checked),
            pick(self.times),
            pick(self.keys),
            pick(self.clocks),
            pick(self.admin_paths),
        )


class Report(NamedTuple):
    """One event as the incident bookkeeping and dispatch orders read it, after the transforms."""

    id: str
    source: str
    source_event_id: str | None
    category: str
    severity: Severity
    grid_path: tuple[GridCell, ...]
    address: str | None
    late: bool
    triage: str | None
    area: Area | None


class _Path(NamedTuple):
    """A ``grid_path`` column value's cells, with what the outputs read of them."""

    cells: tuple[GridCell, ...]
    district: str | None
    street: str | None
    gridcell: str | None  # the most specific cell's id (the ``gridcell`` extension)

    @classmethod
    def of(cls, cells: tuple[GridCell, ...]) -> _Path:
        return cls(cells, *district_and_street(cells), cells[0].id if cells else None)


class BatchProcessor:
    """Processes batches of ingest messages against a :class:`PipelineState`; holds the engines and caches."""

    def __init__(
        self, engines: Engines, options: PipelineOptions, on_transform_outcome: TransformOutcome | None = None
    ):
        self._engines = engines
        self._grid_cells: dict[Any, GridCell] = {}
        self._place_cache: dict[_PlaceKey, _Place] = {}
        self._paths: dict[str, _Path] = {}  # grid path JSON → its cells
        self._routes_of: dict[tuple[int, ...], list[tuple[str, RuleMatch | None, GridCell | None]]] = {}
        self.options = options
        self.on_transform_outcome = on_transform_outcome
        self._decoder = BatchDecoder(engines.taxonomy)

    @property
    def engines(self) -> Engines:
        return self._engines

    @engines.setter
    def engines(self, engines: Engines) -> None:
        self._engines = engines
        self._grid_cells = {}  # new grids: new cells
        self._place_cache = {}
        self._paths = {}
        self._routes_of = {}  # new rules: new match objects
        if engines.taxonomy is not self._decoder.taxonomy:
            self._decoder = BatchDecoder(engines.taxonomy)

    def process(self, state: PipelineState, batch: Sequence[IngestMessage], evaluate: bool = False) -> BatchResult:
        """``batch``: messages in stream order. Raises whatever a stage raises, leaving ``state`` partly
        updated: :mod:`hub.pipeline.isolation` decides what to do about it."""
        result = BatchResult()
        with result.timed("decode"):
            decoded = self._decoder.decode(batch, self.options.max_message_bytes, self.options.event_time)
        result.rejected = decoded.rejected
        rows = _Rows(decoded.events, decoded.messages, decoded.checked)
        start = 0
        for end, request, requester, message in [*decoded.closes, (len(rows.messages), None, "", None)]:
            if end > start:  # the events before a close request may still merge into its incident
                self._process_events(state, rows.take(list(range(start, end))), result, evaluate)
                start = end
            if request is not None and message is not None:
                self._close(state, request, requester, message.received, result)
        for rejection in result.rejected:
            result.outputs.append(dlq_output(rejection))
        return result

    def _close(
        self, state: PipelineState, request: CloseRequest, requester: str, received: float, result: BatchResult
    ) -> None:
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
        closed_at = self.options.event_time.clock(request.time.timestamp(), received)
        change = _closed(record, request.incident_id, closed_at, f"{request.reason} ({requester})")
        result.outputs += incident_messages([change], None)

    def _process_events(self, state: PipelineState, rows: _Rows, result: BatchResult, evaluate: bool) -> None:
        with result.timed("dedup"):
            rows = self._deduplicated(state, rows, result)
        if not rows.messages:
            return
        with result.timed("geo"):
            self._normalise_and_locate(rows)
        if self.engines.ownership is not None:
            with result.timed("tiers"):
                rows = self._kept_here(self.engines.ownership, rows, result)
            if not rows.messages:
                return
        result.accepted += len(rows.messages)
        self._stamp_reception(rows)
        self._triage_unplaced(rows.columns)
        with result.timed("rules"):
            matches = self._match_rules(rows)
        with result.timed("merge"):
            merge = self._merge(state, rows)
        result.merged += sum(
            1
            for is_new, area in zip(merge.merge.is_new, rows.columns["area"], strict=True)
            if not is_new and area is None
        )  # area reports count as they join, in _outputs
        with result.timed("transforms"):
            self._apply_transforms(rows.columns)
        with result.timed("encode"):
            self._outputs(state, rows, merge, matches, result, evaluate)

    def _deduplicated(self, state: PipelineState, rows: _Rows, result: BatchResult) -> _Rows:
        window = self.options.event_time
        rows.times = [micros / 1_000_000 for micros in rows.columns["time"]]
        rows.keys = self._keys(rows.columns)
        rows.clocks = [
            window.clock(at, message.received) for at, message in zip(rows.times, rows.messages, strict=True)
        ]
        duplicate = state.deduper.check_many(rows.keys, rows.clocks)
        kept = [i for i, dup in enumerate(duplicate) if not dup]
        result.duplicates += len(duplicate) - len(kept)
        return rows.take(kept)

    @staticmethod
    def _keys(columns: EventColumns) -> list[str]:
        """Each event's idempotency key (:func:`hub.ids.idempotency_key`); the content hash of an event without
        a source id hashes its model's JSON, so those few are read as models."""
        keys = list(map(ids.source_key, columns["source"], columns["source_event_id"], columns["status"]))
        unnamed = [row for row, source_event_id in enumerate(columns["source_event_id"]) if not source_event_id]
        if unnamed:
            for row, event in zip(unnamed, columns.take(unnamed).events(), strict=True):
                keys[row] = ids.idempotency_key(event)
        return keys

    def _kept_here(self, ownership: Ownership, rows: _Rows, result: BatchResult) -> _Rows:
        """The events this hub handles. The others are handed down to the child hub that owns their place, or
        dead-lettered when it is outside this hub's scope (:mod:`hub.federation`), as they arrived."""
        kept = []
        for row, (source, path, message, key) in enumerate(
            zip(rows.columns["source"], rows.columns["grid_path"], rows.messages, rows.keys, strict=True)
        ):
            try:
                place = self._path(path)
                child = ownership.route(place.district, place.street)
            except OutsideScope as exc:
                result.outputs.append(outside_scope_output(source, event_document(message.data), key, str(exc)))
                result.outside_scope.append((source, str(exc)))
                continue
            if child == KEEP:
                kept.append(row)
            else:
                result.outputs.append(handoff_output(child, source, event_document(message.data), key))
                result.handed_down += 1
        return rows.take(kept)

    def _stamp_reception(self, rows: _Rows) -> None:
        """Each event's second clock: when the hub received it, and whether that was late."""
        window, columns = self.options.event_time, rows.columns
        received = [message.received for message in rows.messages]
        columns["received_at"] = received
        columns["received_at.utcoffset"] = [0] * len(received)
        columns["late"] = [window.is_late(at, when) for at, when in zip(rows.times, received, strict=True)]

    def _triage_unplaced(self, columns: EventColumns) -> None:
        """With grids, an event on no cell (outside them, or with no location, grid path or area cells) goes to
        triage. What a sender wrote in triage is not taken."""
        if self.engines.geofence is None:
            columns["triage"] = [None] * len(columns)
            return
        columns["triage"] = [
            None if path != "[]" or (area is not None and cells != "[]") else _NO_CELL
            for path, area, cells in zip(columns["grid_path"], columns["area"], columns["area.cells"], strict=True)
        ]

    def _merge(self, state: PipelineState, rows: _Rows) -> ExpiringMerge:
        """Every report but an area's goes through the merger, whose results and expiry positions are mapped back
        onto the whole batch; an area report's place holds ``("", False, 0)`` until :meth:`_outputs` joins it to
        its area's incident (:mod:`hub.pipeline.areas`) in stream order, after the expiries before it."""
        area = rows.columns["area"]
        merged = [row for row, present in enumerate(area) if present is None]
        if len(merged) == len(area):
            return self._merge_reports(state, rows.columns, rows.clocks)
        merge = self._merge_reports(state, rows.columns.take(merged), [rows.clocks[i] for i in merged])
        results = iter(zip(*merge.merge, strict=True))
        incident_ids, is_new, counts = zip(
            *[("", False, 0) if present is not None else next(results) for present in area], strict=True
        )
        expired = merge.closed
        return ExpiringMerge(
            MergeBatch(list(incident_ids), list(is_new), list(counts)),
            ExpiredIncidents([merged[p] for p in expired.positions], expired.incident_ids, expired.closed_at),
            merge.watermark,
        )

    @staticmethod
    def _merge_reports(state: PipelineState, columns: EventColumns, clocks: list[float]) -> ExpiringMerge:
        located = columns["location"]
        merge = state.merger.add_columns_expiring(
            columns["id"],
            clocks,
            columns["category"],
            [lon if present else None for lon, present in zip(columns["location.lon"], located, strict=True)],
            [lat if present else None for lat, present in zip(columns["location.lat"], located, strict=True)],
            columns["address"],
            columns["text"],
            state.watermark,
        )
        state.watermark = merge.watermark
        return merge

    def _outputs(
        self,
        state: PipelineState,
        rows: _Rows,
        merge: ExpiringMerge,
        matches: list[list[RuleMatch]],
        result: BatchResult,
        evaluate: bool,
    ) -> None:
        """Per event, in order: the incidents that expired before it, its unified event, its dispatch orders,
        its incident's update and the area incidents whose area expired by its clock. The unified events and
        incident changes are encoded for the whole batch at the end and put in their places."""
        columns = rows.columns
        paths = [self._path(path) for path in columns["grid_path"]]
        reports = self._reports(columns, paths)
        incident_ids = list(merge.merge.incident_ids)
        outputs = result.outputs
        changes: list[tuple[int, Change]] = []  # (place in outputs, change)
        event_slots = []
        expired = iter(zip(*merge.closed, strict=True))
        next_expired = next(expired, None)
        for row, (report, path, is_new, count, event_matches, message, clock) in enumerate(
            zip(
                reports,
                paths,
                merge.merge.is_new,
                merge.merge.report_counts,
                matches,
                rows.messages,
                rows.clocks,
                strict=True,
            )
        ):
            while next_expired is not None and next_expired[0] == row:
                self._expired(state, next_expired[1], next_expired[2], result, changes)
                next_expired = next(expired, None)
            if report.area is not None:
                incident_ids[row], is_new, count = areas.join(state, report)
                result.merged += not is_new
            incident_id = incident_ids[row]
            record = record_report(
                state, report, incident_id, clock, message.received, count, event_matches, path.district
            )
            event_slots.append(len(outputs))
            outputs.append(None)  # type: ignore[arg-type]  # the unified event, encoded below
            if event_matches or report.triage is not None or report.area is not None:
                outputs.extend(self._dispatch_outputs(report, incident_id, record, event_matches, message.received))
            change = IncidentChange.OPENED if is_new else IncidentChange.MERGED
            changes.append((len(outputs), _update(record, incident_id, change, count, clock, row)))
            outputs.append(None)  # type: ignore[arg-type]
            state.area_watermark = max(state.area_watermark, clock)
            if state.areas:
                self._expire_areas(state, result, changes)
        self._fill(result, rows, paths, incident_ids, event_slots, changes)
        if evaluate:
            self._evaluations(result, reports, incident_ids, merge, matches, event_slots)

    def _reports(self, columns: EventColumns, paths: list[_Path]) -> list[Report]:
        """Each event as the bookkeeping reads it, with its grid path's cells; the area of an area event."""
        area_rows = [row for row, present in enumerate(columns["area"]) if present is not None]
        area_of = (
            dict(zip(area_rows, [event.area for event in columns.take(area_rows).events()], strict=True))
            if area_rows
            else {}
        )
        return [
            Report(
                event_id,
                source,
                source_event_id,
                category,
                _SEVERITIES[severity],
                path.cells,
                address,
                late,
                triage,
                area_of.get(row),
            )
            for row, (event_id, source, source_event_id, category, severity, path, address, late, triage) in enumerate(
                zip(
                    columns["id"],
                    columns["source"],
                    columns["source_event_id"],
                    columns["category"],
                    columns["severity"],
                    paths,
                    columns["address"],
                    columns["late"],
                    columns["triage"],
                    strict=True,
                )
            )
        ]

    @staticmethod
    def _fill(
        result: BatchResult,
        rows: _Rows,
        paths: list[_Path],
        incident_ids: list[str],
        event_slots: list[int],
        changes: list[tuple[int, Change]],
    ) -> None:
        """The unified events and incident changes of the batch, encoded, in the places kept for them."""
        columns = rows.columns
        subjects = list(
            map(
                event_subject,
                [path.district for path in paths],
                [path.street for path in paths],
                columns["category"],
                columns["severity"],
            )
        )
        extensions = [
            Extension("category", columns["category"]),
            Extension("severity", columns["severity"]),
            Extension("incidentid", incident_ids),
            Extension("district", [path.district for path in paths]),
            Extension("street", [path.street for path in paths]),
            Extension("gridcell", [path.gridcell for path in paths]),
            Extension("late", [late or None for late in columns["late"]]),
            Extension("triage", columns["triage"]),
        ]
        outputs = result.outputs
        for slot, message in zip(event_slots, event_messages(columns, subjects, extensions), strict=True):
            outputs[slot] = message
        if changes:
            slots, batch = zip(*changes, strict=True)
            for slot, message in zip(slots, incident_messages(batch, columns), strict=True):
                outputs[slot] = message

    @staticmethod
    def _evaluations(
        result: BatchResult,
        reports: list[Report],
        incident_ids: list[str],
        merge: ExpiringMerge,
        matches: list[list[RuleMatch]],
        event_slots: list[int],
    ) -> None:
        """What ``Hub.dry_run`` shows of each event: the unified event's data, its place, incident and rules."""
        for report, incident_id, is_new, count, event_matches, slot in zip(
            reports, incident_ids, merge.merge.is_new, merge.merge.report_counts, matches, event_slots, strict=True
        ):
            result.evaluations.append(
                {
                    "event": orjson.loads(result.outputs[slot].data)["data"],
                    "grid_path": [cell.model_dump(mode="json") for cell in report.grid_path],
                    "incident": {"id": incident_id, "is_new": is_new, "report_count": count},
                    "matched_rules": [match.rule_id for match in event_matches],
                }
            )

    @staticmethod
    def _expired(
        state: PipelineState, incident_id: str, closed_at: float, result: BatchResult, changes: list[tuple[int, Change]]
    ) -> None:
        """An incident no report joined within its merge window: its ``closed`` change, dated when the window
        ran out (by the hub's clock, so a replay after a crash closes the same incidents at the same time)."""
        record = state.incidents.pop(incident_id, None)
        if record is not None:
            changes.append(
                (len(result.outputs), _closed(record, incident_id, closed_at, "no report within the merge window"))
            )
            result.outputs.append(None)  # type: ignore[arg-type]  # encoded with the batch's other changes

    @staticmethod
    def _expire_areas(state: PipelineState, result: BatchResult, changes: list[tuple[int, Change]]) -> None:
        """After a report: close the area incidents whose area expired by the latest clock seen."""
        for incident_id, expires_at in list(areas.expired(state, state.area_watermark)):
            record = state.incidents.pop(incident_id)
            areas.forget(state, record)
            changes.append((len(result.outputs), _closed(record, incident_id, expires_at, "the area warning expired")))
            result.outputs.append(None)  # type: ignore[arg-type]

    def _normalise_and_locate(self, rows: _Rows) -> None:
        """Convert every location to WGS-84 and resolve its grid path (the ``grid_path`` column); each event's
        admin path as (names, ids) joined by ``/`` is what rules see as ``grid`` and ``grid_ids``."""
        columns = rows.columns
        located = [row for row, present in enumerate(columns["location"]) if present]
        lons, lats = columns["location.lon"], columns["location.lat"]
        self._to_wgs84(columns, located)
        rows.admin_paths = [("", "")] * len(columns)
        if self.engines.geofence is None or not located:
            return
        paths = columns["grid_path"]
        places = self._places(self.engines.geofence, [lons[row] for row in located], [lats[row] for row in located])
        for row, (_, grid, grid_ids, path) in zip(located, places, strict=True):
            paths[row] = path
            rows.admin_paths[row] = grid, grid_ids

    @staticmethod
    def _to_wgs84(columns: EventColumns, located: list[int]) -> None:
        lons, lats, systems = columns["location.lon"], columns["location.lat"], columns["location.crs"]
        for crs in {systems[row] for row in located} - {_WGS84}:
            group = [row for row in located if systems[row] == crs]
            converted = convert([lons[row] for row in group], [lats[row] for row in group], crs, _WGS84)
            for row, lon, lat in zip(group, *converted, strict=True):
                lons[row], lats[row], systems[row] = lon, lat, _WGS84

    def _places(self, geofence: GridIndex, lons: list[float], lats: list[float]) -> list[_Place]:
        """Each WGS-84 point's place, from one geofence call for the batch. A place is built once per distinct
        geofence answer (cells and distances, keyed by their raw bytes) and reused: events cluster on far fewer
        answers than points."""
        arrays = geofence.locate_arrays(lons, lats, "wgs84")
        offsets, cells, distances = arrays.offsets.tolist(), arrays.cells.tobytes(), arrays.distances_m.tobytes()
        if len(self._place_cache) > _PLACE_CACHE_LIMIT:
            self._place_cache.clear()
            self._paths.clear()
        cache, places = self._place_cache, []
        for point, admin_count in enumerate(arrays.admin_counts.tolist()):
            start, end = offsets[point], offsets[point + 1]
            key = (admin_count, cells[start * 4 : end * 4], distances[start * 8 : end * 8])
            place = cache.get(key)
            if place is None:
                place = cache[key] = self._place(geofence, key)
            places.append(place)
        return places

    def _place(self, geofence: GridIndex, key: _PlaceKey) -> _Place:
        admin_count, cells, distances = key[0], memoryview(key[1]).cast("I"), memoryview(key[2]).cast("d")
        resolved = [geofence.cell(index, distance) for index, distance in zip(cells, distances, strict=True)]
        admin_path = resolved[:admin_count][::-1]
        grid_path = tuple(self._grid_path(Resolution(resolved, admin_path, not resolved)))
        path_json = _GRID_PATH.dump_json(list(grid_path), exclude_none=True).decode()
        self._paths[path_json] = _Path.of(grid_path)
        return (
            grid_path,
            "/".join(cell.name for cell in admin_path),
            "/".join(cell.id for cell in admin_path),
            path_json,
        )

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

    def _path(self, path_json: str) -> _Path:
        """The cells of a ``grid_path`` column value: a place the geofence resolved, or what the event came with."""
        path = self._paths.get(path_json)
        if path is None:
            if len(self._paths) > _PLACE_CACHE_LIMIT:
                self._paths.clear()
            path = self._paths[path_json] = _Path.of(tuple(_GRID_PATH.validate_json(path_json)))
        return path

    def _match_rules(self, rows: _Rows) -> list[list[RuleMatch]]:
        """Each event's id, and the rules it matches; a rule's ``severity`` action raises the event's severity."""
        columns = rows.columns
        event_ids = columns["id"] = ids.time_ordered_ids(rows.clocks, rows.keys)
        if not len(self.engines.rules):
            return [[] for _ in event_ids]
        fields = [
            ("id", event_ids),
            ("category", columns["category"]),
            ("severity", columns["severity"]),
            ("grid", [grid for grid, _ in rows.admin_paths]),
            ("grid_ids", [grid_ids for _, grid_ids in rows.admin_paths]),
        ]
        documents = _core.rule_documents(
            [message.data if checked else None for message, checked in zip(rows.messages, rows.checked, strict=True)],
            fields,
        )
        for row, document in enumerate(documents):
            if document is None:  # lax input the model decided: patched as orjson parsed it
                patched = event_document(rows.messages[row].data)
                patched.update((name, values[row]) for name, values in fields)
                documents[row] = orjson.dumps(patched)
        matches = self.engines.rules.match_many(cast("list[bytes]", documents))  # every row has its document now
        severities = columns["severity"]
        for row, event_matches in enumerate(matches):
            for match in event_matches:
                raised = match.actions.get("severity")
                if raised and Severity(raised).rank > _SEVERITIES[severities[row]].rank:
                    severities[row] = Severity(raised).value
        return matches

    def _apply_transforms(self, columns: EventColumns) -> None:
        """Each transform in stage order: on the columns when it has ``apply_columns``, else on :class:`Event`
        objects made from them and read back (:meth:`EventColumns.events`)."""
        ordered = sorted(self.engines.transforms, key=lambda item: (item[1].stage, item[1].order))
        for plugin, transform in ordered:
            try:
                on_columns = getattr(transform, "apply_columns", None)
                if on_columns is not None:
                    on_columns(columns)
                else:
                    columns.set_events(transform.apply(columns.events()))
            except Exception as exc:  # contained: this transform is skipped for this batch, counted
                self._report_transform(plugin, transform, exc)
            else:
                self._report_transform(plugin, transform, None)

    def _report_transform(self, plugin: str, transform: Transform, exc: BaseException | None) -> None:
        if self.on_transform_outcome is not None:
            self.on_transform_outcome(plugin, transform, exc)

    def _dispatch_outputs(
        self, report: Report, incident_id: str, record: IncidentRecord, matches: list[RuleMatch], received: float
    ) -> Iterable[Message]:
        for target, match, cell in self._routes(report, matches):
            if target in record.dispatched:
                continue
            record.dispatched.append(target)
            order = build_order(
                report,
                incident_id,
                target,
                match,
                attempt=1,
                reports=record.reports,
                dispatched_at=utc(received),
                cell=cell,
            )
            yield dispatch_output(order)

    def _routes(self, report: Report, matches: list[RuleMatch]) -> list[tuple[str, RuleMatch | None, GridCell | None]]:
        """Each route target with the rule match that gives its deadline and the cell it serves. The rules'
        routes; for an event in triage the unplaced route instead; for an area event one ``cell:<id>`` order per
        cell of its area instead of the rules' cell-served targets (grid workers, grid levels, five-way), beside
        their departments and connectors. Triage and area orders go out whether or not a rule matched, with the
        first deadline its rules give."""
        if report.triage is None and report.area is None:
            return self._rule_routes(matches)
        timed = next((match for match in matches if match.actions.get("escalate_after_s")), None)
        if report.triage is not None:
            return [(target, timed, None) for target in self.engines.unplaced_route]
        routes = [(target, match) for match in matches for target in match.actions.get("route", ())]
        assert report.area is not None  # neither in triage nor without an area
        per_cell: list[tuple[str, RuleMatch | None, GridCell | None]] = [
            (areas.cell_target(cell), timed, cell) for cell in report.area.cells
        ]
        return per_cell + [(target, match, None) for target, match in routes if target.startswith(_NAMED_TARGETS)]

    def _rule_routes(self, matches: list[RuleMatch]) -> list[tuple[str, RuleMatch | None, GridCell | None]]:
        """The routes of the rules matched, per set of rules (a rule's match is one object for as long as the
        rule set lives)."""
        key = tuple(map(id, matches))
        routes = self._routes_of.get(key)
        if routes is None:
            if len(self._routes_of) > _PLACE_CACHE_LIMIT:
                self._routes_of.clear()
            routes = self._routes_of[key] = [
                (target, match, None) for match in matches for target in match.actions.get("route", ())
            ]
        return routes


def record_report(
    state: PipelineState,
    report: Report,
    incident_id: str,
    clock: float,
    received: float,
    count: int,
    matches: list[RuleMatch],
    district: str | None,
) -> IncidentRecord:
    """What the pipeline remembers of ``report``'s incident, updated by it (opened by it when new)."""
    record = state.incidents.get(incident_id)
    if record is None:
        record = state.incidents[incident_id] = IncidentRecord(
            report.category,
            clock,
            report.severity.rank,
            [],
            [],
            [],
            received_at=received,
            late=report.late,
            area_key=areas.area_key(report) if report.area is not None else None,
        )
    if report.area is not None:
        record.expires_at = report.area.expires_at.timestamp() if report.area.expires_at else None
    record.severity = max(record.severity, report.severity.rank)
    record.district = district
    record.report_count = count
    if report.source not in record.sources:
        record.sources.append(report.source)
    if len(record.reports) < MAX_ORDER_REPORTS:
        record.reports.append([report.source, report.source_event_id or report.id])  # no source id: the hub's
    for match in matches:
        if match.rule_id not in record.matched_rules:
            record.matched_rules.append(match.rule_id)
    return record


def _update(
    record: IncidentRecord, incident_id: str, change: IncidentChange, count: int, clock: float, row: int
) -> Change:
    """The incident as it stands after its ``count``-th report (the event at ``row``): one update per report,
    named by the report count, so the updates do not depend on how the reports were cut into batches."""
    return _change(record, incident_id, change, f"{incident_id}:{count}", clock, count, row)


def _closed(record: IncidentRecord, incident_id: str, closed_at: float, reason: str) -> Change:
    """The ``closed`` change of an incident, from what the pipeline remembers of it."""
    return _change(
        record, incident_id, IncidentChange.CLOSED, incident_id, closed_at, max(1, record.report_count), reason
    )


def _change(
    record: IncidentRecord,
    incident_id: str,
    change: IncidentChange,
    msg_id: str,
    updated_at: float,
    count: int,
    report_or_reason: int | str,
) -> Change:
    """A ``change`` of ``record``'s incident, carrying the incident as the pipeline remembers it."""
    return Change(
        incident_subject(record.district, record.category, change),
        msg_id,
        change,
        incident_id,
        record.category,
        _SEVERITY_NAMES[record.severity],
        record.district,
        record.late,
        record.opened_at,
        updated_at,
        record.received_at,
        tuple(record.sources),
        tuple(record.matched_rules),
        count,
        report_or_reason,
    )
