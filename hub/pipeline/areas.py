"""Area incidents: every report of one area — an area warning, the same source and area id — is one incident,
keyed by the area rather than merged by place and time (:class:`hub.models.Area`). A resent or updated warning
updates it; it closes when its area expires (at the first report whose clock passes ``expires_at``, dated by
it, so a replay closes it at the same place in the stream) or on request, never by a merge window. Each cell
the area touches gets its own dispatch order (target ``cell:<cell id>``, the grid worker of that cell)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from hub.models import Area, Event, GridCell
from hub.pipeline.state import IncidentRecord, PipelineState

CELL_TARGET_PREFIX = "cell:"


class AreaReport(Protocol):
    """An event or a row of the batch's columns, as far as its area goes."""

    @property
    def source(self) -> str: ...
    @property
    def area(self) -> Area | None: ...


def area_key(report: AreaReport) -> str:
    """What makes two reports the same area: their source and the area's id there."""
    assert report.area is not None
    return f"{report.source}\x1f{report.area.id}"


def join(state: PipelineState, event: Event) -> tuple[str, bool, int]:
    """The area incident ``event`` (an area report whose ``id`` is set) belongs to: (incident id, whether it
    opens it, its report count). A new area opens ``inc-<event id>``, like a merged incident."""
    key = area_key(event)
    known = state.areas.get(key)
    if known is None:
        state.areas[key] = known = [f"inc-{event.id}", 0]
    known[1] += 1
    return known[0], known[1] == 1, known[1]


def forget(state: PipelineState, record: IncidentRecord) -> None:
    """The area incident of ``record`` closed: a later report of its area opens a new one."""
    if record.area_key is not None:
        state.areas.pop(record.area_key, None)


def expired(state: PipelineState, watermark: float) -> Iterator[tuple[str, float]]:
    """(incident id, expiry) of every open area incident whose area expired by ``watermark``, oldest first."""
    due = [
        (record.expires_at, incident_id)
        for incident_id, record in state.incidents.items()
        if record.area_key is not None and record.expires_at is not None and record.expires_at <= watermark
    ]
    for expires_at, incident_id in sorted(due):
        yield incident_id, expires_at


def cell_target(cell: GridCell) -> str:
    """The route target of one cell's order: the grid worker responsible for it."""
    return f"{CELL_TARGET_PREFIX}{cell.id}"
