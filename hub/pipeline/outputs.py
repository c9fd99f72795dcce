"""The messages the pipeline publishes one at a time, encoded as CloudEvents: dispatch orders, incident changes
of the hub's other services (escalation, tiers) and dead letters; unified events and the pipeline's incident
changes are encoded a batch at a time (:mod:`hub.pipeline.batch_encode`). Each is named by its input
(``Nats-Msg-Id``) so re-publication after a crash is dropped by JetStream's duplicate window."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from hub import topology, wire
from hub.models import DispatchOrder, GridCell, Incident, IncidentChange, ReportRef, Severity
from hub.nats.publisher import Message
from hub.pipeline.decode import Rejection, source_of
from hub.rules import RuleMatch

event_subject = functools.lru_cache(maxsize=65_536)(topology.event_subject)
incident_subject = functools.lru_cache(maxsize=65_536)(topology.incident_subject)


class Reported(Protocol):
    """What an order is made from: the reported event's category, severity, place and address."""

    @property
    def category(self) -> str: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def grid_path(self) -> Sequence[GridCell]: ...
    @property
    def address(self) -> str | None: ...


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
    event: Reported,
    incident_id: str,
    target: str,
    match: RuleMatch | None,
    attempt: int,
    reports: Sequence[Sequence[str]],
    dispatched_at: datetime,
    cell: GridCell | None = None,
) -> DispatchOrder:
    """The order for ``target``, for ``cell`` (default: the event's deepest cell); its escalation deadline (the
    ``escalate_after_s`` of ``match``, none without one) counts from ``dispatched_at`` (the hub's clock when the
    order was made), never from the event's own time."""
    where = cell or next((step for step in reversed(event.grid_path) if step.layer), None)
    after = match.actions.get("escalate_after_s") if match is not None else None
    return DispatchOrder(
        id=f"{incident_id}:{target}:{attempt}",
        incident_id=incident_id,
        target=target,
        connector=connector_for_target(target),
        grid_cell=where,
        category=event.category,
        severity=event.severity,
        summary=_summary(event, cell),
        created_at=dispatched_at,
        deadline=dispatched_at + timedelta(seconds=after) if after else None,
        attempt=attempt,
        reports=[ReportRef(source=source, source_event_id=ref) for source, ref in reports],
    )


def _summary(event: Reported, cell: GridCell | None = None) -> str:
    where = (
        cell.name if cell else event.address or (event.grid_path[-1].name if event.grid_path else "unknown location")
    )
    return f"{event.category} ({event.severity.value}) at {where}"


def dispatch_output(order: DispatchOrder) -> Message:
    subject = topology.dispatch_order_subject(order.connector or "gridworker")
    raw = wire.encode(
        type_=wire.TYPE_DISPATCH_ORDER,
        id_=order.id,
        source=wire.HUB_SOURCE,
        time=order.created_at,
        data=order,
        subject=subject,
        extensions={"category": order.category, "severity": order.severity.value, "incidentid": order.incident_id},
    )
    return Message(subject, raw, order.id)


def incident_output(
    data: Incident | dict[str, Any],
    incident_id: str,
    category: str,
    severity: str,
    district: str | None,
    change: IncidentChange,
    msg_id: str,
    time: datetime,
    late: bool = False,
    triage: str | None = None,
) -> Message:
    """An incident change on ``cityhub.incidents.<district>.<category>.<change>``."""
    subject = incident_subject(district, category, change)
    raw = wire.encode(
        type_=f"{wire.TYPE_INCIDENT_PREFIX}{change}",
        id_=msg_id,
        source=wire.HUB_SOURCE,
        time=time,
        data=data,
        subject=subject,
        extensions={
            "category": category,
            "severity": severity,
            "incidentid": incident_id,
            "district": district,
            "late": late or None,
            "triage": triage,
        },
    )
    return Message(subject, raw, f"{msg_id}:{change}")


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
    return datetime.fromtimestamp(clock, UTC)
