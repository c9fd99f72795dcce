"""The messages the pipeline publishes, encoded as CloudEvents: unified events' companions — incident
changes, dispatch orders — and dead letters. Each is named by its input (``Nats-Msg-Id``) so re-publication
after a crash is dropped by JetStream's duplicate window."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from hub import topology, wire
from hub.models import DispatchOrder, Event, GridCell, Incident, IncidentChange, IncidentState, Location, ReportRef, Severity
from hub.pipeline.decode import Rejection, source_of
from hub.pipeline.state import IncidentRecord
from hub.nats.publisher import Message
from hub.rules import RuleMatch

_SEVERITIES = list(Severity)

_event_subject = functools.lru_cache(maxsize=65_536)(topology.event_subject)
_incident_subject = functools.lru_cache(maxsize=65_536)(topology.incident_subject)


def district_and_street(path: Sequence[GridCell]) -> tuple[str | None, str | None]:
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


def build_order(
    event: Event, incident_id: str, target: str, match: RuleMatch | None, attempt: int,
    reports: Sequence[Sequence[str]], dispatched_at: datetime, cell: GridCell | None = None,
) -> DispatchOrder:
    """The order for ``target``, for ``cell`` (default: the event's deepest cell); its escalation deadline (the
    ``escalate_after_s`` of ``match``, none without one) counts from ``dispatched_at`` (the hub's clock when the
    order was made), never from the event's own time."""
    where = cell or next((step for step in reversed(event.grid_path) if step.layer), None)
    after = match.actions.get("escalate_after_s") if match is not None else None
    return DispatchOrder(
        id=f"{incident_id}:{target}:{attempt}", incident_id=incident_id, target=target,
        connector=connector_for_target(target), grid_cell=where, category=event.category,
        severity=event.severity, summary=_summary(event, cell), created_at=dispatched_at,
        deadline=dispatched_at + timedelta(seconds=after) if after else None,
        attempt=attempt, reports=[ReportRef(source=source, source_event_id=ref) for source, ref in reports],
    )


def event_output(event: Event, incident_id: str, district: str | None, street: str | None) -> Message:
    """The unified event on ``cityhub.events.<district>.<street>.<category>.<severity>``."""
    subject = _event_subject(district, street, event.category, event.severity)
    raw = wire.encode(
        type_=wire.TYPE_EVENT, id_=event.id or "", source=wire.source_uri(event.source), time=event.time, data=event,
        subject=subject,
        extensions={
            "category": event.category, "severity": event.severity, "incidentid": incident_id,
            "district": district, "street": street,
            "gridcell": event.grid_path[0].id if event.grid_path else None, "late": event.late or None,
            "triage": event.triage,
        },
    )
    return Message(subject, raw, event.id or "")


def incident_update_output(
    record: IncidentRecord, incident_id: str, event: Event, change: IncidentChange, count: int, updated_at: datetime
) -> Message:
    """The incident as it stands after its ``count``-th report (``event``), as :class:`Incident` JSON written
    directly from validated parts (a test checks it against the model): one per report, named by the report
    count, so the updates do not depend on how the reports were cut into batches."""
    data = _incident_data(record, incident_id, IncidentState.OPEN, updated_at)
    data["report_count"] = count
    data["grid_path"] = [cell.__dict__ for cell in event.grid_path]  # str/float fields only
    data["event_ids"] = [event.id]
    if event.location is not None:
        data["location"] = _location_json(event.location)
    if event.address is not None:
        data["address"] = event.address
    if event.triage is not None:
        data["triage"] = event.triage
    if event.area is not None:
        data["area"] = event.area.model_dump(mode="json", exclude_none=True)
    return incident_output(data, incident_id, record.category, data["severity"], record.district, change,
                           f"{incident_id}:{count}", updated_at, late=record.late, triage=event.triage)


def _summary(event: Event, cell: GridCell | None = None) -> str:
    where = cell.name if cell else event.address or (event.grid_path[-1].name if event.grid_path else "unknown location")
    return f"{event.category} ({event.severity.value}) at {where}"


def dispatch_output(order: DispatchOrder) -> Message:
    subject = topology.dispatch_order_subject(order.connector or "gridworker")
    raw = wire.encode(
        type_=wire.TYPE_DISPATCH_ORDER, id_=order.id, source=wire.HUB_SOURCE, time=order.created_at, data=order,
        subject=subject, extensions={"category": order.category, "severity": order.severity.value,
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
    change: IncidentChange, msg_id: str, time: datetime, late: bool = False, triage: str | None = None,
) -> Message:
    """An incident change on ``cityhub.incidents.<district>.<category>.<change>``."""
    subject = _incident_subject(district, category, change)
    raw = wire.encode(
        type_=f"{wire.TYPE_INCIDENT_PREFIX}{change}", id_=msg_id, source=wire.HUB_SOURCE, time=time, data=data,
        subject=subject,
        extensions={"category": category, "severity": severity, "incidentid": incident_id, "district": district,
                    "late": late or None, "triage": triage},
    )
    return Message(subject, raw, f"{msg_id}:{change}")


def _incident_data(record: IncidentRecord, incident_id: str, state: IncidentState, updated_at: datetime) -> dict[str, Any]:
    """The :class:`Incident` fields the pipeline remembers of an incident, as JSON-ready values."""
    return {
        "id": incident_id, "category": record.category, "severity": _SEVERITIES[record.severity], "state": state,
        "opened_at": utc(record.opened_at), "updated_at": updated_at,
        "report_count": max(1, record.report_count), "sources": record.sources,
        "matched_rules": record.matched_rules, "escalation_level": 0, "late": record.late,
        **({"received_at": utc(record.received_at)} if record.received_at is not None else {}),
    }


def closed_output(record: IncidentRecord, incident_id: str, closed_at: datetime, reason: str) -> Message:
    """The ``closed`` change of an incident, from what the pipeline remembers of it."""
    data = {**_incident_data(record, incident_id, IncidentState.CLOSED, closed_at), "closed_reason": reason}
    return incident_output(data, incident_id, record.category, data["severity"], record.district,
                           IncidentChange.CLOSED, incident_id, closed_at, late=record.late)


def dlq_output(rejection: Rejection) -> Message:
    source = source_of(rejection.subject)
    msg_id = f"dlq:{rejection.seq}"
    headers = {
        **wire.dead_letter_headers(msg_id, wire.source_uri(source)),
        topology.HEADER_REASON: " ".join(rejection.reason.split())[:1024],
        topology.HEADER_REASON_KIND: rejection.kind,
        topology.HEADER_ORIGINAL_SUBJECT: rejection.subject,
    }
    return Message(topology.dlq_subject(source), rejection.raw, msg_id, headers)


def utc(clock: float) -> datetime:
    """A hub clock (epoch seconds, always within the event-time window of a reception) as a UTC datetime."""
    return datetime.fromtimestamp(clock, timezone.utc)
