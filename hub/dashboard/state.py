"""LiveState: the operations centre's picture of the unified stream, kept in memory.

It follows ``cityhub.events.>``, ``cityhub.incidents.>`` and ``cityhub.dispatch.>`` — and, on a hub among
tiers, the cross-scope incidents of ``cityhub.links.>`` (docs/deployment.md), which mark the incidents they
link — from a time window back (``window``) with :class:`hub.nats.follower.Follower`, so a restarted dashboard
replays the recent stream and shows the open incidents again, and a NATS restart or a lost consumer costs no
message and repeats none. Messages are CloudEvents as written by :mod:`hub.wire`; the three streams are not
ordered against each other, so a report or dispatch order may arrive before its incident and is held on a view
that becomes visible once the incident itself arrives.

Everything a request needs is kept ready: a cached summary per incident, open-incident counts per grid cell,
sorted response-time samples (:mod:`hub.dashboard.figures`), so 10,000 open incidents cost a scan at most.
Pages follow changes through :class:`ChangeFeed`: the ids of incidents changed since the last look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import insort
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub import topology, wire
from hub.dashboard.figures import Durations, EventRates
from hub.errors import InvalidEventError
from hub.models import DispatchStatus, IncidentChange, IncidentState, Triage, utcnow
from hub.nats.follower import Follower, Start
from hub.pipeline.areas import CELL_TARGET_PREFIX
from hub.tasks import cancel_and_wait

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from nats.aio.client import Client

log = logging.getLogger("cityhub.dashboard")

WATCHED_STREAMS = (topology.EVENTS_STREAM, topology.INCIDENTS_STREAM, topology.DISPATCH_STREAM)
DISTRICT_LEVEL = "district"
STREET_LEVEL = "street"
OPEN = IncidentState.OPEN.value
OPEN_STATES = frozenset({IncidentState.OPEN.value, IncidentState.ACKNOWLEDGED.value})
ACCEPTING_STATUSES = frozenset({DispatchStatus.ACCEPTED.value, DispatchStatus.ON_SITE.value})
FINISHED_ORDER_STATUSES = frozenset(
    {DispatchStatus.RESOLVED.value, DispatchStatus.EVALUATED.value, DispatchStatus.REJECTED.value}
)
# An area warning's grid counts as confirmed once its grid worker's order reached one of these.
CONFIRMING_STATUSES = frozenset(
    {
        DispatchStatus.ACCEPTED.value,
        DispatchStatus.ON_SITE.value,
        DispatchStatus.RESOLVED.value,
        DispatchStatus.EVALUATED.value,
    }
)
# Changes that carry only part of the incident, overlaid on what the view already holds: the escalation timer
# knows the order, not the incident; a closed change carries the incident's summary, not its place.
PARTIAL_CHANGES = {
    IncidentChange.ESCALATED.value: (
        "escalation_level",
        "escalate_at",
        "updated_at",
        "escalated_to",
        "escalation_cause",
    ),
    IncidentChange.CLOSED.value: ("state", "updated_at", "report_count", "sources", "matched_rules", "closed_reason"),
}


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(slots=True)
class OrderView:
    """One dispatch order and the status updates reported back for it, in time order."""

    order: dict[str, Any]
    status: str = DispatchStatus.CREATED.value
    updates: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {**self.order, "status": self.status, "updates": self.updates}


@dataclass(slots=True)
class IncidentView:
    """Everything known about one incident. ``incident`` is the latest snapshot from the incidents stream
    (None while only its reports or orders have arrived)."""

    id: str
    incident: dict[str, Any] | None = None
    opened_at: datetime | None = None
    change: str | None = None
    reports: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    orders: dict[str, OrderView] = field(default_factory=dict)
    pending_updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    accepted_at: datetime | None = None
    resolved_at: datetime | None = None
    recorded: dict[str, tuple[list[str], float]] = field(default_factory=dict)
    deadline_at: datetime | None = None
    counted_cells: tuple[str, ...] = ()
    summary: dict[str, Any] | None = None
    cross_scope: dict[str, Any] | None = None  # the cross-scope incident that links it with another scope's

    @property
    def state(self) -> str | None:
        return self.incident.get("state", OPEN) if self.incident else None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def cell(self, level: str) -> dict[str, Any] | None:
        for cell in (self.incident or {}).get("grid_path", ()):
            if cell.get("level") == level:
                return cell
        return None

    def cell_ids(self) -> tuple[str, ...]:
        return tuple(cell.get("id") for cell in (self.incident or {}).get("grid_path", ()))

    def current_orders(self) -> list[OrderView]:
        """The latest attempt per target and grid cell (an area warning has an order per grid): a re-dispatch
        (二次派单) supersedes the order before it."""
        latest: dict[tuple[str, str | None], OrderView] = {}
        for order in self.orders.values():
            key = (order.order["target"], (order.order.get("grid_cell") or {}).get("id"))
            known = latest.get(key)
            if known is None or order.order.get("attempt", 1) > known.order.get("attempt", 1):
                latest[key] = order
        return list(latest.values())

    def response_clock_start(self) -> datetime | None:
        """Where response times start (受理): when the hub received the incident's first report (its
        ``received_at``), or, from a pipeline that does not record it, its first dispatch order's creation
        (orders are created at reception). None for a late incident (a flushed buffer, an import), which the
        figures leave out, and for one with neither time."""
        incident = self.incident or {}
        if incident.get("late"):
            return None
        created = [o.order["created_at"] for o in self.orders.values() if o.order.get("created_at")]
        first_order = min((datetime.fromisoformat(value) for value in created), default=None)
        return parse_time(incident.get("received_at")) or first_order

    def next_deadline(self) -> str | None:
        """The earliest escalation deadline of the incident: its own or a current, unfinished order's."""
        deadlines = [self.incident.get("escalate_at")] if self.incident else []
        deadlines += [o.order.get("deadline") for o in self.current_orders() if o.status not in FINISHED_ORDER_STATUSES]
        known = [d for d in deadlines if d]
        return min(known, key=datetime.fromisoformat) if known else None

    def build_summary(self) -> dict[str, Any]:
        """The compact form the list, the map and the filters use."""
        incident = self.incident or {}
        district = self.cell(DISTRICT_LEVEL) or {}
        street = self.cell(STREET_LEVEL) or {}
        location = incident.get("location") or {}
        latest_order = max(self.orders.values(), key=lambda o: o.order.get("created_at", ""), default=None)
        return {
            "id": self.id,
            "category": incident.get("category"),
            "severity": incident.get("severity"),
            "state": self.state,
            "opened_at": incident.get("opened_at"),
            "updated_at": incident.get("updated_at"),
            "lon": location.get("lon"),
            "lat": location.get("lat"),
            "address": incident.get("address"),
            "district": district.get("id"),
            "district_name": district.get("name"),
            "street": street.get("id"),
            "street_name": street.get("name"),
            "cells": list(self.cell_ids()),
            "sources": incident.get("sources", []),
            "reports": max(incident.get("report_count", 1), len(self.reports)),
            "deadline": self.next_deadline(),
            "order_status": latest_order.status if latest_order else None,
            "escalation_level": incident.get("escalation_level", 0),
            "escalated_to": incident.get("escalated_to"),  # a lower tier sent it up (docs/deployment.md)
            "escalation_cause": incident.get("escalation_cause"),
            "late": bool(incident.get("late")),
            "area": (incident.get("area") or {}).get("geometry"),
            "confirmation": self.confirmation(),
            "cross_scope": self.cross_scope,
        }

    def confirmation(self) -> dict[str, Any] | None:
        """For an area incident (a flood warning over several grids): ``confirmed`` of ``cells`` grids whose
        grid worker's order (target ``cell:<id>``, its latest attempt) was accepted, on site, resolved or
        evaluated, and the ``unconfirmed`` cells (id, name); None for any other incident."""
        area = (self.incident or {}).get("area")
        if not area:
            return None
        status = {order.order["target"]: order.status for order in self.current_orders()}
        cells = area.get("cells", [])
        unconfirmed = [
            {"id": cell["id"], "name": cell.get("name")}
            for cell in cells
            if status.get(f"{CELL_TARGET_PREFIX}{cell['id']}") not in CONFIRMING_STATUSES
        ]
        return {"confirmed": len(cells) - len(unconfirmed), "cells": len(cells), "unconfirmed": unconfirmed}

    def as_json(self) -> dict[str, Any]:
        """The incident page: snapshot, reports in time order, orders with their updates (``superseded``
        when a later attempt for the same target replaced them)."""
        current = {order.order["id"] for order in self.current_orders()}
        return {
            "summary": self.build_summary(),
            "incident": self.incident,
            "change": self.change,
            "reports": [report for _, _, report in self.reports],
            "orders": sorted(
                ({**o.as_json(), "superseded": o.order["id"] not in current} for o in self.orders.values()),
                key=lambda o: (o.get("created_at", ""), o.get("attempt", 1)),
            ),
        }


class ChangeFeed:
    """The ids of incidents that changed since the feed was last read; one per connected page."""

    def __init__(self) -> None:
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    def mark(self, incident_id: str) -> None:
        self._dirty.add(incident_id)
        self._wake.set()

    async def wait(self, timeout: float) -> set[str]:
        """Wait up to ``timeout`` seconds for a change; return (and forget) every id changed so far."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        return self.take()

    def take(self) -> set[str]:
        """Every id changed so far, forgotten once returned."""
        self._wake.clear()
        changed, self._dirty = self._dirty, set()
        return changed


class LiveState:
    """Open incidents and the centre's figures, fed from the unified stream (see the module docstring).

    ``window`` is how far back the consumers start; ``keep_closed`` is how many closed incidents stay
    available to the incident page and the ``closed`` filter; ``clock`` gives "now" for overdue figures;
    ``links``: follow the cross-scope incidents too (a hub among tiers: only those have the stream).
    """

    def __init__(
        self,
        *,
        window: timedelta = timedelta(hours=24),
        keep_closed: int = 5000,
        clock: Callable[[], datetime] = utcnow,
        links: bool = False,
    ) -> None:
        self.streams = (*WATCHED_STREAMS, topology.LINKS_STREAM) if links else WATCHED_STREAMS
        self.window = window
        self.keep_closed = keep_closed
        self.clock = clock
        self.views: dict[str, IncidentView] = {}
        self.cell_counts: Counter[str] = Counter()
        self.unreadable = 0
        self.messages = 0
        self._closed: deque[str] = deque()
        self._accept = Durations()
        self._resolve = Durations()
        self._rates = EventRates()
        self._feeds: set[ChangeFeed] = set()
        self._followers: list[Follower] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._figures: tuple[tuple[int, int], dict[str, Any]] | None = None

    # --- consuming ---------------------------------------------------------------------------------

    async def start(self, nc: Client) -> None:
        """Follow the unified stream on ``nc`` from ``window`` back. Each stream is followed through NATS
        restarts and lost consumers (:mod:`hub.nats.follower`), waiting while the hub has not created it yet."""
        since = Start(time=self.clock() - self.window)
        self._followers = [
            Follower(nc, stream, topology.STREAM_SUBJECTS[stream][0], since, name="dashboard")
            for stream in self.streams
        ]
        self._tasks = [
            asyncio.create_task(self._follow(follower), name=f"cityhub.dashboard.{follower.stream}")
            for follower in self._followers
        ]

    async def use_connection(self, nc: Client) -> None:
        """Follow the stream on ``nc`` (the hub replaced a connection the server closed): each stream is
        followed again from the message after the last one applied."""
        await self.stop()
        for follower in self._followers:
            follower.use_connection(nc)
        self._tasks = [
            asyncio.create_task(self._follow(follower), name=f"cityhub.dashboard.{follower.stream}")
            for follower in self._followers
        ]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()

    @property
    def caught_up(self) -> bool:
        """True once every watched stream has been replayed up to its end."""
        return bool(self._followers) and all(follower.pending == 0 for follower in self._followers)

    def health(self) -> dict[str, Any]:
        """Whether the dashboard is current: its consumers, and the last error of any that had to recover."""
        return {
            "caught_up": self.caught_up,
            "messages": self.messages,
            "unreadable": self.unreadable,
            "consumers": [follower.health() for follower in self._followers],
        }

    async def _follow(self, follower: Follower) -> None:
        async for message in follower.messages():
            self.apply(message.subject, message.data, datetime.fromtimestamp(message.stored_at, UTC))

    # --- applying messages -------------------------------------------------------------------------

    def apply(self, subject: str, raw: bytes, stored_at: datetime) -> None:
        """Apply one message of the unified stream. A message that cannot be read is counted and logged
        with its subject and reason; it never stops the feed."""
        self.messages += 1
        try:
            envelope = wire.decode(raw)
            self._apply_envelope(envelope, stored_at)
        except (InvalidEventError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.unreadable += 1
            log.warning("dashboard: unreadable message on %s: %s: %s", subject, type(exc).__name__, exc)

    def _apply_envelope(self, envelope: dict[str, Any], stored_at: datetime) -> None:
        type_ = envelope["type"]
        data = envelope["data"]
        if type_ == wire.TYPE_EVENT:
            self._apply_event(envelope, data, stored_at)
        elif type_.startswith(wire.TYPE_INCIDENT_PREFIX):
            self._apply_incident(data, type_.removeprefix(wire.TYPE_INCIDENT_PREFIX))
        elif type_ == wire.TYPE_DISPATCH_ORDER:
            self._apply_order(data)
        elif type_ == wire.TYPE_DISPATCH_UPDATE:
            self._apply_update(data)
        elif type_ == wire.TYPE_LINK:
            self._apply_link(data)
        else:
            raise ValueError(f"unknown CloudEvents type {type_!r}")

    def _view(self, incident_id: str) -> IncidentView:
        if not isinstance(incident_id, str) or not incident_id:
            raise ValueError(f"incident id must be a non-empty string, got {incident_id!r}")
        view = self.views.get(incident_id)
        if view is None:
            view = self.views[incident_id] = IncidentView(incident_id)
        return view

    def _apply_event(self, envelope: dict[str, Any], event: dict[str, Any], stored_at: datetime) -> None:
        self._rates.add(event["source"], stored_at)
        incident_id = envelope.get("incidentid")
        if not incident_id:
            return
        view = self._view(incident_id)
        event_id = event.get("id") or envelope["id"]
        if any(known_id == event_id for _, known_id, _ in view.reports):
            return
        insort(view.reports, (event["time"], event_id, event), key=lambda report: report[:2])
        self._changed(view)

    def _apply_incident(self, incident: dict[str, Any], change: str) -> None:
        opened_at = parse_time(incident["opened_at"])
        if opened_at is None:
            raise ValueError(f"incident {incident['id']!r} has no opened_at")
        view = self._view(incident["id"])
        if change in PARTIAL_CHANGES and view.incident is not None:
            incident = {
                **view.incident,
                **{name: incident[name] for name in PARTIAL_CHANGES[change] if name in incident},
            }
        else:
            view.opened_at = opened_at
        view.incident = incident
        view.change = change
        state = view.state
        if state == IncidentState.ACKNOWLEDGED.value:
            view.accepted_at = _earliest(view.accepted_at, parse_time(incident.get("updated_at")))
        if state == IncidentState.RESOLVED.value:  # closed is not 办结: a sensor recovered, its window ran out
            view.resolved_at = _earliest(view.resolved_at, parse_time(incident.get("updated_at")))
        if state == IncidentState.CLOSED.value:
            self._remember_closed(view.id)
        self._changed(view)

    def _apply_order(self, order: dict[str, Any]) -> None:
        view = self._view(order["incident_id"])
        order_view = view.orders.get(order["id"])
        if order_view is None:
            order_view = view.orders[order["id"]] = OrderView(order)
            for update in view.pending_updates.pop(order["id"], []):
                self._add_update(view, order_view, update)
        else:
            order_view.order = order
        self._changed(view)

    def _apply_update(self, update: dict[str, Any]) -> None:
        DispatchStatus(update["status"])  # an unknown status is unreadable input, not a new state
        view = self._view(update["incident_id"])
        order_view = view.orders.get(update["order_id"])
        if order_view is None:
            view.pending_updates.setdefault(update["order_id"], []).append(update)
        else:
            self._add_update(view, order_view, update)
        self._changed(view)

    def _apply_link(self, link: dict[str, Any]) -> None:
        """Mark every incident a cross-scope incident links with it. A link grows (one more side's incident
        joins) by a new publication, which names more incidents: the one naming the most stays."""
        mark = {
            "id": link["id"],
            "linked_by": link["linked_by"],
            "incidents": [{"id": linked["id"], "scope": linked["scope"]} for linked in link["incidents"]],
        }
        for linked in mark["incidents"]:
            view = self._view(linked["id"])
            if view.cross_scope is None or len(view.cross_scope["incidents"]) <= len(mark["incidents"]):
                view.cross_scope = mark
                self._changed(view)

    @staticmethod
    def _add_update(view: IncidentView, order_view: OrderView, update: dict[str, Any]) -> None:
        insort(order_view.updates, update, key=lambda u: u["time"])
        order_view.status = order_view.updates[-1]["status"]
        status, time = update["status"], parse_time(update["time"])
        if status in ACCEPTING_STATUSES or status == DispatchStatus.RESOLVED.value:
            view.accepted_at = _earliest(view.accepted_at, time)
        if status == DispatchStatus.RESOLVED.value:
            view.resolved_at = _earliest(view.resolved_at, time)

    def _remember_closed(self, incident_id: str) -> None:
        self._closed.append(incident_id)
        while len(self._closed) > self.keep_closed:
            forgotten = self.views.get(self._closed.popleft())
            if forgotten is not None and forgotten.state == IncidentState.CLOSED.value:
                self._count_cells(forgotten, ())
                del self.views[forgotten.id]

    def _changed(self, view: IncidentView) -> None:
        view.summary = None
        view.deadline_at = parse_time(view.next_deadline())
        self._count_cells(view, view.cell_ids() if view.is_open else ())
        self._record_response_times(view)
        if view.incident is not None:
            for feed in self._feeds:
                feed.mark(view.id)

    def _count_cells(self, view: IncidentView, cells: tuple[str, ...]) -> None:
        if cells == view.counted_cells:
            return
        self.cell_counts.subtract(view.counted_cells)
        self.cell_counts.update(cells)
        view.counted_cells = cells

    def _record_response_times(self, view: IncidentView) -> None:
        """Each incident counts once in each distribution, as the centres are measured (受理 → 办结): from its
        reception (:meth:`IncidentView.response_clock_start`), never from the event's own time, which a late
        or back-filled report puts hours or years back. A sample is corrected when earlier evidence arrives
        later (the streams are not ordered against each other)."""
        received = view.response_clock_start()
        if received is None or view.incident is None:
            return
        keys = self._figure_keys(view)
        for name, durations, reached in (
            ("accept", self._accept, view.accepted_at),
            ("resolve", self._resolve, view.resolved_at),
        ):
            if reached is None:
                continue
            seconds = max(0.0, (reached - received).total_seconds())
            previous = view.recorded.get(name)
            if previous == (keys, seconds):
                continue
            if previous is not None:
                durations.remove(*previous)
            durations.add(keys, seconds)
            view.recorded[name] = (keys, seconds)

    @staticmethod
    def _figure_keys(view: IncidentView) -> list[str]:
        keys = ["all", f"category:{view.incident['category'] if view.incident else None}"]
        street = view.cell(STREET_LEVEL)
        if street:
            keys.append(f"street:{street.get('name') or street.get('id')}")
        return keys

    # --- reading -----------------------------------------------------------------------------------

    def summary(self, view: IncidentView) -> dict[str, Any]:
        if view.summary is None:
            view.summary = view.build_summary()
        return view.summary

    def incidents(self, filters: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
        """Summaries of known incidents, newest first. Filters: district and street (id or name),
        category, severity, source, and status: an incident state, ``active`` (open or acknowledged,
        the default), ``overdue`` or ``all``."""
        wanted = {name: value for name, value in (filters or {}).items() if value}
        status = wanted.pop("status", "active")
        now = self.clock()
        found = [
            self.summary(view)
            for view in self.views.values()
            if view.incident is not None and _status_matches(view, status, now) and _matches(self.summary(view), wanted)
        ]
        found.sort(key=lambda s: s["opened_at"] or "", reverse=True)
        return found

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        view = self.views.get(incident_id)
        return view.as_json() if view is not None and view.incident is not None else None

    def summaries_of(self, incident_ids: Iterable[str]) -> list[dict[str, Any]]:
        return [self.summary(self.views[i]) for i in incident_ids if i in self.views]

    def figures(self) -> dict[str, Any]:
        """Open and overdue counts, response times (median, p90) per category and street, event rates.
        Computed at most once per second while nothing changes, however many pages ask."""
        now = self.clock()
        key = (self.messages, int(now.timestamp()))
        if self._figures is None or self._figures[0] != key:
            self._figures = (key, self._compute_figures(now))
        return self._figures[1]

    def _compute_figures(self, now: datetime) -> dict[str, Any]:
        open_count = overdue = no_cell = 0
        by_category: dict[str, int] = {}
        by_severity: dict[str, int] = {}
        for view in self.views.values():  # one plain loop: this runs over every incident
            incident = view.incident
            if incident is None or incident.get("state", OPEN) not in OPEN_STATES:
                continue
            open_count += 1
            if view.deadline_at is not None and view.deadline_at < now:
                overdue += 1
            by_category[incident["category"]] = by_category.get(incident["category"], 0) + 1
            by_severity[incident["severity"]] = by_severity.get(incident["severity"], 0) + 1
            no_cell += incident.get("triage") == Triage.NO_CELL
        return {
            "now": now.isoformat(),
            "caught_up": self.caught_up,
            "open": open_count,
            "overdue": overdue,
            "no_cell": no_cell,
            "open_by_category": by_category,
            "open_by_severity": by_severity,
            "time_to_accept": _durations_json(self._accept),
            "time_to_resolve": _durations_json(self._resolve),
            "events_per_minute": self._rates.per_source(now),
            "messages": self.messages,
            "unreadable": self.unreadable,
        }

    def open_cell_counts(self) -> dict[str, int]:
        return {cell: count for cell, count in self.cell_counts.items() if count > 0}

    def open_feed(self) -> ChangeFeed:
        feed = ChangeFeed()
        self._feeds.add(feed)
        return feed

    def close_feed(self, feed: ChangeFeed) -> None:
        self._feeds.discard(feed)


def _earliest(known: datetime | None, candidate: datetime | None) -> datetime | None:
    if known is None:
        return candidate
    if candidate is None:
        return known
    return min(known, candidate)


def _is_overdue(view: IncidentView, now: datetime) -> bool:
    return view.deadline_at is not None and view.deadline_at < now


def _status_matches(view: IncidentView, status: str, now: datetime) -> bool:
    if status == "all":
        return True
    if status == "active":
        return view.is_open
    if status == "overdue":
        return view.is_open and _is_overdue(view, now)
    return view.state == status


def _matches(summary: dict[str, Any], wanted: dict[str, str]) -> bool:
    for name, value in wanted.items():
        if name == "source":
            if value not in summary["sources"]:
                return False
        elif name in ("district", "street"):
            if value not in (summary[name], summary[f"{name}_name"]):
                return False
        elif summary.get(name) != value:
            return False
    return True


def _durations_json(durations: Durations) -> dict[str, Any]:
    return {
        "all": durations.summary("all"),
        "by_category": durations.summaries("category:"),
        "by_street": durations.summaries("street:"),
    }
