"""Test helpers for the dashboard: a synthetic two-district grid in Chengdu, builders of incidents, reports
and dispatch traffic, and a writer that publishes the unified stream exactly as the pipeline does
(hub.wire CloudEvents on hub.topology subjects)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from hub import topology, wire
from hub.geofence import GridIndex, LayerSpec
from hub.models import (
    Category,
    CrossScopeIncident,
    DispatchOrder,
    DispatchStatus,
    DispatchUpdate,
    Event,
    GridCell,
    Incident,
    IncidentChange,
    IncidentState,
    Location,
    Severity,
)
from tests.pipeline_support import GRIDS

SAMPLE_LAYERS_TOML = (
    f'[[geo.layers]]\nname = "admin"\npath = "{GRIDS / "chengdu_admin_gcj02.geojson"}"\ncrs = "gcj02"\n\n'
    f'[[geo.layers]]\nname = "zones"\npath = "{GRIDS / "chengdu_overlays_gcj02.geojson"}"\ncrs = "gcj02"\n'
    'kind = "overlay"\n'
)
TOKEN = "dashboard-test-token"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

# Two districts side by side, each cut into 2 x 2 streets, each street into 2 x 2 grid cells.
DISTRICTS = [("510104", "锦江区", 104.05), ("510105", "青羊区", 104.11)]
STREET_NAMES = {
    "510104": ["春熙路街道", "书院街街道", "合江亭街道", "督院街街道"],
    "510105": ["少城街道", "草市街街道", "西御河街道", "太升路街道"],
}
SOUTH, DISTRICT_SIZE = 30.62, 0.06


def _box(west: float, south: float, size: float) -> dict:
    ring = [[west, south], [west + size, south], [west + size, south + size], [west, south + size], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def _feature(cell_id: str, name: str, level: str, parent: str | None, geometry: dict) -> dict:
    return {
        "type": "Feature",
        "properties": {"id": cell_id, "name": name, "level": level, "parent": parent},
        "geometry": geometry,
    }


def _layout():
    """Each grid cell with its district and street and the south-west corners of all three boxes."""
    half, quarter = DISTRICT_SIZE / 2, DISTRICT_SIZE / 4
    for district_id, district_name, west in DISTRICTS:
        district = GridCell(layer="admin", level="district", id=district_id, name=district_name)
        for s, (sx, sy) in enumerate(itertools.product(range(2), range(2))):
            street_id = f"{district_id}{s + 1:03d}"
            street = GridCell(layer="admin", level="street", id=street_id, name=STREET_NAMES[district_id][s])
            street_corner = (west + sx * half, SOUTH + sy * half)
            for g, (gx, gy) in enumerate(itertools.product(range(2), range(2))):
                grid = GridCell(layer="admin", level="grid", id=f"{street_id}{g + 1:02d}", name=f"第{g + 1}网格")
                grid_corner = (street_corner[0] + gx * quarter, street_corner[1] + gy * quarter)
                yield district, street, grid, (west, SOUTH), street_corner, grid_corner


def grid_cells() -> list[tuple[GridCell, GridCell, GridCell, tuple[float, float]]]:
    """Every grid cell with its district and street, and its centre point."""
    quarter = DISTRICT_SIZE / 4
    return [(d, s, g, (corner[0] + quarter / 2, corner[1] + quarter / 2)) for d, s, g, _, _, corner in _layout()]


def grid_collection() -> dict:
    """The grid as one GeoJSON layer with a ``level`` property, as ``[[geo.layers]]`` loads it."""
    features, seen = [], set()
    for district, street, grid, district_corner, street_corner, grid_corner in _layout():
        if district.id not in seen:
            seen.add(district.id)
            features.append(
                _feature(district.id, district.name, "district", None, _box(*district_corner, DISTRICT_SIZE))
            )
        if street.id not in seen:
            seen.add(street.id)
            features.append(
                _feature(street.id, street.name, "street", district.id, _box(*street_corner, DISTRICT_SIZE / 2))
            )
        features.append(_feature(grid.id, grid.name, "grid", street.id, _box(*grid_corner, DISTRICT_SIZE / 4)))
    return {"type": "FeatureCollection", "features": features}


def sample_city_places(count: int, seed: int = 7) -> list[tuple[list[GridCell], float, float]]:
    """``count`` WGS-84 points inside the shipped sample grids (three Chengdu districts) with the grid path
    the real geofence resolves for each."""
    index = GridIndex.load(
        [
            LayerSpec(name="admin", path=GRIDS / "chengdu_admin_gcj02.geojson", crs="gcj02"),
            LayerSpec(name="zones", path=GRIDS / "chengdu_overlays_gcj02.geojson", crs="gcj02", kind="overlay"),
        ]
    )
    rng = random.Random(seed)
    places = []
    while len(places) < count:
        lon, lat = rng.uniform(103.98, 104.20), rng.uniform(30.60, 30.75)
        resolution = index.locate(lon, lat)
        if resolution.admin_path and resolution.admin_path[0].level == "district":
            places.append(([cell.to_grid_cell() for cell in resolution.admin_path], lon, lat))
    return places


class StreamWriter:
    """Publishes incidents, reports and dispatch traffic the way the pipeline does."""

    def __init__(self, js: JetStreamContext):
        self.js = js
        self._numbers = itertools.count(1)

    async def _publish(self, subject: str, raw: bytes, msg_id: str) -> None:
        await self.js.publish(subject, raw, headers={topology.HEADER_MSG_ID: msg_id})

    @staticmethod
    def _extensions(incident: Incident) -> dict[str, str | None]:
        levels = {cell.level: cell.id for cell in incident.grid_path}
        return {
            "category": incident.category,
            "severity": incident.severity.value,
            "incidentid": incident.id,
            "district": levels.get("district"),
            "street": levels.get("street"),
            "gridcell": levels.get("grid"),
        }

    async def incident(self, incident: Incident, change: IncidentChange = IncidentChange.OPENED) -> None:
        extensions = self._extensions(incident)
        msg_id = f"{incident.id}:{change.value}:{next(self._numbers)}"
        raw = wire.encode(
            type_=wire.TYPE_INCIDENT_PREFIX + change.value,
            id_=msg_id,
            source="/cityhub/pipeline",
            time=incident.updated_at,
            data=incident,
            extensions=extensions,
        )
        await self._publish(topology.incident_subject(extensions["district"], incident.category, change), raw, msg_id)

    async def report(self, incident: Incident, event: Event) -> None:
        extensions = {**self._extensions(incident), "severity": event.severity.value}
        raw = wire.encode(
            type_=wire.TYPE_EVENT,
            id_=event.id,
            source=f"/cityhub/{event.source}",
            time=event.time,
            data=event,
            extensions=extensions,
        )
        subject = topology.event_subject(extensions["district"], extensions["street"], event.category, event.severity)
        await self._publish(subject, raw, event.id)

    async def order(self, order: DispatchOrder) -> None:
        raw = wire.encode(
            type_=wire.TYPE_DISPATCH_ORDER,
            id_=order.id,
            source="/cityhub/pipeline",
            time=order.created_at,
            data=order,
            extensions={"incidentid": order.incident_id},
        )
        await self._publish(topology.dispatch_order_subject(order.connector or "_"), raw, order.id)

    async def update(self, update: DispatchUpdate, source: str = "gridworker") -> None:
        msg_id = f"{update.order_id}:{update.status.value}"
        raw = wire.encode(
            type_=wire.TYPE_DISPATCH_UPDATE,
            id_=msg_id,
            source=f"/cityhub/{source}",
            time=update.time,
            data=update,
            extensions={"incidentid": update.incident_id},
        )
        await self._publish(topology.dispatch_update_subject(source), raw, msg_id)

    async def link(self, link: CrossScopeIncident) -> None:
        """A cross-scope incident, as the linker of the hub ``link.linked_by`` publishes it for its first side."""
        msg_id = f"{link.id}:{len(link.incidents)}:{link.incidents[0].scope}"
        subject = topology.link_subject(link.linked_by, link.incidents[0].scope, link.category)
        raw = wire.encode(
            type_=wire.TYPE_LINK,
            id_=msg_id,
            source=f"/cityhub/{link.linked_by}",
            time=link.updated_at,
            data=link,
            subject=subject,
            extensions={"category": link.category, "incidentid": link.id},
        )
        await self._publish(subject, raw, msg_id)

    async def raw(self, subject: str, data: bytes) -> None:
        await self.js.publish(subject, data)


def make_incident(
    number: int,
    *,
    cell: int = 0,
    category: Category = Category.GAS_LEAK,
    severity: Severity = Severity.HIGH,
    state: IncidentState = IncidentState.OPEN,
    sources: list[str] | None = None,
    opened_at: datetime = T0,
    escalate_at: datetime | None = None,
    rules: list[str] | None = None,
    updated_at: datetime | None = None,
    place: tuple[list[GridCell], float, float] | None = None,
) -> Incident:
    """An incident in synthetic grid cell ``cell``, or at ``place`` (grid path, lon, lat)."""
    if place is None:
        district, street, grid, (lon, lat) = grid_cells()[cell % len(grid_cells())]
        place = ([district, street, grid], lon, lat)
    grid_path, lon, lat = place
    return Incident(
        id=f"INC{number:06d}",
        category=category,
        severity=severity,
        state=state,
        opened_at=opened_at,
        updated_at=updated_at or opened_at,
        location=Location(lon=lon, lat=lat),
        address=f"{grid_path[min(1, len(grid_path) - 1)].name} {number}号",
        grid_path=grid_path,
        sources=sources or ["iot_mqtt"],
        matched_rules=rules or [],
        escalate_at=escalate_at,
    )


def make_report(incident: Incident, number: int, source: str, minutes: float, text: str | None = None) -> Event:
    return Event(
        id=f"EV{incident.id}-{number}",
        source=source,
        source_event_id=f"{source}-{number}",
        category=incident.category,
        severity=incident.severity,
        time=incident.opened_at + timedelta(minutes=minutes),
        location=incident.location,
        address=incident.address,
        grid_path=incident.grid_path,
        text=text,
    )


def make_order(
    incident: Incident, number: int = 1, *, minutes: float = 1, deadline_minutes: float = 30, target: str = "gridworker"
) -> DispatchOrder:
    created = incident.opened_at + timedelta(minutes=minutes)
    return DispatchOrder(
        id=f"ORD{incident.id}-{number}",
        incident_id=incident.id,
        target=target,
        connector="gridworker",
        grid_cell=incident.grid_path[-1],
        category=incident.category,
        severity=incident.severity,
        summary=f"{incident.category} at {incident.address}",
        created_at=created,
        deadline=created + timedelta(minutes=deadline_minutes),
        attempt=number,
    )


def make_update(order: DispatchOrder, status: DispatchStatus, minutes: float) -> DispatchUpdate:
    return DispatchUpdate(
        order_id=order.id,
        incident_id=order.incident_id,
        status=status,
        time=order.created_at + timedelta(minutes=minutes),
        actor="网格员 王",
    )
