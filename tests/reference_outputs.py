"""The Python encoders of the unified event and the incident changes the pipeline used before they moved into
the Rust core (hub.pipeline.batch_encode): an Event model through pydantic's serializer and hub.wire, an
incident change as a dict through orjson. The oracle of tests/test_batch_encode.py: the core must write the
same bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub import wire
from hub.models import Event, IncidentChange, IncidentState, Location, Severity
from hub.nats.publisher import Message
from hub.pipeline.outputs import event_subject, incident_output, utc
from hub.pipeline.state import IncidentRecord

_SEVERITIES = list(Severity)


def event_output(event: Event, incident_id: str, district: str | None, street: str | None) -> Message:
    """The unified event on ``cityhub.events.<district>.<street>.<category>.<severity>``."""
    subject = event_subject(district, street, event.category, event.severity)
    raw = wire.encode(
        type_=wire.TYPE_EVENT,
        id_=event.id or "",
        source=wire.source_uri(event.source),
        time=event.time,
        data=event,
        subject=subject,
        extensions={
            "category": event.category,
            "severity": event.severity,
            "incidentid": incident_id,
            "district": district,
            "street": street,
            "gridcell": event.grid_path[0].id if event.grid_path else None,
            "late": event.late or None,
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
    return incident_output(
        data,
        incident_id,
        record.category,
        data["severity"],
        record.district,
        change,
        f"{incident_id}:{count}",
        updated_at,
        late=record.late,
        triage=event.triage,
    )


def _location_json(location: Location) -> dict[str, Any]:
    data: dict[str, Any] = {"lon": location.lon, "lat": location.lat, "crs": location.crs}
    if location.accuracy_m is not None:
        data["accuracy_m"] = location.accuracy_m
    return data


def _incident_data(
    record: IncidentRecord, incident_id: str, state: IncidentState, updated_at: datetime
) -> dict[str, Any]:
    """The :class:`Incident` fields the pipeline remembers of an incident, as JSON-ready values."""
    return {
        "id": incident_id,
        "category": record.category,
        "severity": _SEVERITIES[record.severity],
        "state": state,
        "opened_at": utc(record.opened_at),
        "updated_at": updated_at,
        "report_count": max(1, record.report_count),
        "sources": record.sources,
        "matched_rules": record.matched_rules,
        "escalation_level": 0,
        "late": record.late,
        **({"received_at": utc(record.received_at)} if record.received_at is not None else {}),
    }


def closed_output(record: IncidentRecord, incident_id: str, closed_at: datetime, reason: str) -> Message:
    """The ``closed`` change of an incident, from what the pipeline remembers of it."""
    data = {**_incident_data(record, incident_id, IncidentState.CLOSED, closed_at), "closed_reason": reason}
    return incident_output(
        data,
        incident_id,
        record.category,
        data["severity"],
        record.district,
        IncidentChange.CLOSED,
        incident_id,
        closed_at,
        late=record.late,
    )
