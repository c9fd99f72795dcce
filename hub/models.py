"""The canonical data model: the single source of truth for what flows through CityHub.

Connectors turn each external system's messages into :class:`Event`; the pipeline adds the grid path,
incident and rule results; the operations centre reads the result from the unified stream. Incidents,
dispatch orders and their status updates are modelled here too. ``hub.schema`` exports the JSON Schema of
these models for the docs and the AsyncAPI document.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from hub.control_characters import refuse_control_characters

CATEGORY_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# A category name; which names the hub accepts is its taxonomy's business (hub.taxonomy), not the model's.
CategoryName = Annotated[str, Field(pattern=CATEGORY_NAME_PATTERN, max_length=64)]


class Category(StrEnum):
    """The names of the built-in categories, for code that uses them (``Category.GAS_LEAK``). The taxonomy
    the hub accepts (:mod:`hub.taxonomy`) starts from these and grows through plugins and config; an event
    of a category it does not know is rejected to the DLQ rather than guessed."""

    GAS_LEAK = "gas_leak"
    FIRE = "fire"
    SMOKE = "smoke"
    WATER_LEAK = "water_leak"
    FLOODING = "flooding"
    MANHOLE_COVER = "manhole_cover"
    HYDRANT_PRESSURE = "hydrant_pressure"
    ELEVATOR_FAULT = "elevator_fault"
    DOOR_ALARM = "door_alarm"
    HIGH_ALTITUDE_THROWING = "high_altitude_throwing"
    PERSON_ALERT = "person_alert"
    BILLBOARD_TILT = "billboard_tilt"
    DEVICE_OFFLINE = "device_offline"
    ELDER_SOS = "elder_sos"
    ELDER_FALL = "elder_fall"
    ELDER_VITALS = "elder_vitals"
    ELDER_INACTIVITY = "elder_inactivity"
    BIN_FULL = "bin_full"
    STATION_FAULT = "station_fault"
    NOISE = "noise"
    ROAD_DAMAGE = "road_damage"
    STREET_LIGHT = "street_light"
    SANITATION = "sanitation"
    ILLEGAL_PARKING = "illegal_parking"
    TREE = "tree"
    ENVIRONMENT = "environment"
    AREA_WARNING = "area_warning"
    COMPLAINT = "complaint"
    OTHER = "other"


class Severity(StrEnum):
    """Ordered from least to most urgent; rules may raise it, never lower it below the source's value."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {severity: rank for rank, severity in enumerate(Severity)}


class Triage(StrEnum):
    """Why an event or incident waits for a person rather than going to a grid worker."""

    NO_CELL = "no_cell"  # its location resolved to no grid cell: dispatched to [geo] unplaced_route


class CoordSystem(StrEnum):
    """WGS-84 (GPS, most IoT), GCJ-02 (Chinese web maps, WeChat) and BD-09 (Baidu maps)."""

    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"


class HubModel(BaseModel):
    """Base of every wire model: unknown fields are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=False, use_enum_values=False)


class Location(HubModel):
    """A point as the source gave it. The pipeline converts it to the hub's system before the geofence."""

    lon: float = Field(ge=-180, le=180, description="Longitude in degrees.")
    lat: float = Field(ge=-90, le=90, description="Latitude in degrees.")
    crs: CoordSystem = Field(CoordSystem.WGS84, description="Coordinate system of lon/lat.")
    accuracy_m: float | None = Field(None, ge=0, description="Horizontal accuracy in metres, if known.")


class Reporter(HubModel):
    """Who reported the event. Personal data: masked in the unified stream unless configured otherwise."""

    name: str | None = None
    phone: str | None = None
    id_card: str | None = Field(None, description="Resident ID-card number (身份证号).")
    account: str | None = Field(None, description="Account or open id in the source system.")


class Attachment(HubModel):
    """A reference to a photo, video or document; the bytes stay in the source system or object store."""

    url: str
    media_type: str
    size_bytes: int | None = Field(None, ge=0)
    sha256: str | None = None


class GridCell(HubModel):
    """One cell the event's location falls in (or, within the tolerance, is nearest to)."""

    layer: str
    level: str
    id: str
    name: str
    distance_m: float = Field(0.0, ge=0, description="0 inside the cell; the gap when resolved by tolerance.")


class Area(HubModel):
    """The area an area event covers (a city-platform flood warning over a polygon) and the cells it touches.
    Every report of one area (same source, same ``id``) is one incident: a resent or updated warning updates it."""

    id: str = Field(min_length=1, max_length=128, description="The area's id in its source (the warning id).")
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon geometry, WGS-84.")
    cells: list[GridCell] = Field(
        default_factory=list, description="The cells it touches at the configured level: one dispatch order per cell."
    )
    expires_at: datetime | None = Field(None, description="When it ends: its incident closes then.")


class Event(HubModel):
    """The canonical event. ``id`` is assigned by the hub; ``(source, source_event_id)`` is the
    idempotency key (a content hash stands in when the source has no id)."""

    id: str | None = Field(None, description="Hub-assigned id (ULID-like, time ordered).")
    source: Annotated[str, Field(pattern=r"^[a-z0-9_]+$", max_length=64)]
    source_event_id: str | None = Field(None, max_length=256)
    category: CategoryName
    severity: Severity = Severity.MEDIUM
    time: datetime = Field(description="When it happened, timezone-aware (naive times are rejected).")
    location: Location | None = None
    address: str | None = Field(None, max_length=512)
    grid_path: list[GridCell] = Field(default_factory=list, description="Set by the pipeline.")
    reporter: Reporter | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    text: str | None = Field(None, max_length=8192, description="Free text (work-order description, ...).")
    payload: dict[str, Any] = Field(default_factory=dict, description="Source-specific fields, rule-visible.")
    device_id: str | None = None
    status: str | None = Field(None, description="Source-side status for updates (e.g. recovered, closed).")
    received_at: datetime | None = Field(
        None, description="Set by the pipeline: when the hub received it (the ingest stream stored it)."
    )
    late: bool = Field(
        False,
        description="Set by the pipeline: received more than [pipeline.event_time] late_after after its time "
        "(a flushed buffer, an import); kept out of response-time figures.",
    )
    triage: Triage | None = Field(
        None, description="Set by the pipeline: no_cell when the hub has grids and the event resolved to no cell."
    )
    area: Area | None = Field(None, description="For an area event (an area warning): the area and its cells.")

    @field_validator("time")
    @classmethod
    def _must_be_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone offset (e.g. 2026-05-01T08:00:00+08:00)")
        return value


class IncidentState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"


class IncidentChange(StrEnum):
    """What happened to an incident; the last token of its subject on the unified stream."""

    OPENED = "opened"
    MERGED = "merged"
    UPDATED = "updated"
    ESCALATED = "escalated"
    CLOSED = "closed"


class EscalationCause(StrEnum):
    """Why a lower tier's incident went up to the hub above (docs/deployment.md)."""

    SEVERITY = "severity"  # it opened or grew to [tier] escalate_severity
    DEADLINE = "deadline"  # its dispatch orders ran through the whole escalation ladder unanswered
    CROSS_SCOPE = "cross_scope"  # the hub above linked it with an incident on the other side of a border
    OPERATOR = "operator"  # an operator asked (POST /incidents/{id}/escalate)


class Incident(HubModel):
    """One real-world incident and every report that described it (a gas alarm, a 12345 call and a
    citizen photo of the same leak are one incident with three reports)."""

    id: str
    category: CategoryName
    severity: Severity
    state: IncidentState = IncidentState.OPEN
    opened_at: datetime = Field(
        description="When its first report happened (the event's time, as the hub's clock holds it)."
    )
    updated_at: datetime
    received_at: datetime | None = Field(
        None, description="When the hub received its first report: response times count from here."
    )
    late: bool = Field(
        False, description="Its first report was late (see Event.late): left out of response-time figures."
    )
    triage: Triage | None = Field(
        None,
        description="no_cell while its latest report resolved to no grid cell: its orders go to [geo] unplaced_route.",
    )
    location: Location | None = None
    address: str | None = None
    grid_path: list[GridCell] = Field(default_factory=list)
    area: Area | None = Field(None, description="An area incident's area and cells, as its latest report gave them.")
    report_count: int = Field(1, ge=1)
    event_ids: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    matched_rules: list[str] = Field(default_factory=list)
    escalate_at: datetime | None = None
    escalation_level: int = 0
    closed_reason: str | None = Field(None, description="Why a closed incident was closed, and by whom.")
    escalated_to: str | None = Field(
        None, description="The scope of the hub one tier up this incident was escalated to (docs/deployment.md)."
    )
    escalation_cause: EscalationCause | None = Field(None, description="Why it was escalated up.")


class LinkedIncident(HubModel):
    """One side of a cross-scope incident."""

    id: str = Field(description="The incident's id at the hub that holds it.")
    scope: str = Field(description="The child scope (district or street code) whose hub holds it.")


class CrossScopeIncident(HubModel):
    """One real incident whose reports fell on both sides of a district or street border: the lowest hub whose
    scope holds both sides links the incident each side opened (docs/deployment.md)."""

    id: str = Field(description="xs-<the id of the first incident linked>.")
    category: CategoryName
    linked_by: str = Field(description="The scope of the hub that linked them.")
    incidents: list[LinkedIncident] = Field(description="The incidents linked, in the order they opened.")
    updated_at: datetime


INCIDENT_ID_PATTERN = r"^inc-[0-9A-HJKMNP-TV-Z]{26}(~[0-9]{1,20}(\.[0-9]{1,10})?)?$"
"""Every incident id: ``inc-<opening event id>`` (the 26 Crockford base-32 digits of :mod:`hub.ids`), with
``~<n>`` or ``~<n>.<m>`` appended when that id was still taken by an open incident
(``core_rs/src/incidents/merge.rs``)."""
_INCIDENT_ID = re.compile(INCIDENT_ID_PATTERN)
INCIDENT_ID_EXAMPLE = "inc-01M83RDEXVGSK35WXJH6BQ1DDC"


def _incident_id_shape(value: str) -> str:
    if _INCIDENT_ID.fullmatch(value) is None:
        raise ValueError(
            f"{value[:80]!r} is not an incident id: expected inc-<26-character event id>, maybe "
            f"followed by ~<n> or ~<n>.<n>, e.g. {INCIDENT_ID_EXAMPLE}"
        )
    return value


IncidentId = Annotated[
    str,
    AfterValidator(refuse_control_characters("an incident id")),
    AfterValidator(_incident_id_shape),
    WithJsonSchema({"type": "string", "pattern": INCIDENT_ID_PATTERN, "examples": [INCIDENT_ID_EXAMPLE]}),
]
"""An incident id from outside (a close request, a URL path): refused, saying why, unless it has the shape of
:data:`INCIDENT_ID_PATTERN`."""

CLOSE_REASON_MAX = 512


class CloseRequest(HubModel):
    """A request to close an open incident. It is published to ingest (CloudEvent type
    ``cityhub.close_request`` on ``cityhub.ingest.ops`` or ``cityhub.ingest.dispatch``, the only two
    requesters the pipeline takes it from) so the pipeline applies it in order with the reports: reports
    before it may still join the incident, reports after it open a new one. The hub sends one on
    ``dispatch`` when a dispatch order of the incident is resolved; ops send one through the admin API."""

    incident_id: IncidentId
    reason: str = Field(min_length=1, max_length=CLOSE_REASON_MAX)
    time: AwareDatetime


class DispatchStatus(StrEnum):
    CREATED = "created"
    SENT = "sent"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    REDISPATCHED = "redispatched"
    ESCALATED = "escalated"
    EVALUATED = "evaluated"


class ReportRef(HubModel):
    """One report of an incident, as its source system knows it (e.g. the 12345 工单 or the eldercare alert),
    so the connector delivering an order can name it back to that system."""

    source: str
    source_event_id: str


class DispatchOrder(HubModel):
    """An order to a responsible party (department, grid worker, one of the five-way responders)."""

    id: str
    incident_id: str
    target: str = Field(description="Route target, e.g. 'gridworker', 'dept:fire', 'level:grid'.")
    connector: str | None = Field(None, description="Connector that delivers it to the external system.")
    grid_cell: GridCell | None = None
    category: CategoryName
    severity: Severity
    summary: str
    created_at: datetime = Field(
        description="When it was dispatched (the hub's reception of the report that caused it, "
        "or the escalation that followed an overdue order)."
    )
    deadline: datetime | None = Field(None, description="created_at plus the rule's escalate_after.")
    attempt: int = Field(1, ge=1, description="2 and up for re-dispatch (二次派单).")
    reports: list[ReportRef] = Field(
        default_factory=list, description="The incident's reports when the order was made, oldest first."
    )


class DispatchUpdate(HubModel):
    """A status change of a dispatch order, reported back by the connector that delivered it."""

    order_id: str
    incident_id: str
    status: DispatchStatus
    time: datetime = Field(description="When the status changed (accepted, resolved, ...), by the reporting system.")
    actor: str | None = None
    note: str | None = Field(None, max_length=2048)
    attachments: list[Attachment] = Field(default_factory=list)
    evaluation: int | None = Field(None, ge=1, le=5, description="Citizen evaluation, 1 to 5 stars.")

    @model_validator(mode="after")
    def _evaluation_only_when_evaluated(self) -> DispatchUpdate:
        if self.evaluation is not None and self.status is not DispatchStatus.EVALUATED:
            raise ValueError("evaluation is only allowed with status 'evaluated'")
        return self


def utcnow() -> datetime:
    """The hub's clock, timezone-aware."""
    return datetime.now(UTC)
