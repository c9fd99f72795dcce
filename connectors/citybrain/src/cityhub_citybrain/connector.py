"""The city-brain connector: incidents reported up over signed HTTPS, area warnings in as one event each, with
the area and the grid cells it touches."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from cityhub_citybrain.settings import CitybrainSettings
from hub import topology
from hub.connector_kit import (
    Connector,
    ConnectorContext,
    HttpServer,
    WebhookRejected,
    describe,
    post_signed_with_retry,
    refuse,
    signed_body,
    unavailable,
)
from hub.coords import convert
from hub.errors import GeoError
from hub.geofence import Cell, GridIndex, LayerSpec
from hub.models import Area, Category, CoordSystem, DispatchOrder, DispatchUpdate, Event, Incident, IncidentState

SOURCE = "citybrain"
_OPEN_STATES = (IncidentState.OPEN, IncidentState.ACKNOWLEDGED)


class AreaWarning(BaseModel):
    """An area warning pushed by the city platform (e.g. 暴雨内涝橙色预警 for a polygon)."""

    model_config = ConfigDict(extra="ignore")

    warning_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    title: str = Field(min_length=1, max_length=256)
    message: str = Field(min_length=1, max_length=4000)
    level: Literal["blue", "yellow", "orange", "red"]
    kind: str | None = Field(None, max_length=64, description="flood, rainstorm, typhoon, heat, ...")
    area: dict[str, Any] = Field(description="GeoJSON Polygon / MultiPolygon geometry, or a Feature holding one.")
    issued_at: AwareDatetime
    expires_at: AwareDatetime | None = None


def shared_admin_path(paths: list[list[Cell]]) -> list[Cell]:
    """The path every touched cell's path starts with (the district, when they are all in one; the cell's whole
    path when there is one cell; none when there is no cell)."""
    shared: list[Cell] = []
    for steps in zip(*paths, strict=False):
        if any(step.id != steps[0].id for step in steps):
            break
        shared.append(steps[0])
    return shared


def wgs84_geometry(area: dict[str, Any], crs: CoordSystem) -> dict[str, Any]:
    """The Polygon or MultiPolygon of ``area`` (a geometry, or a Feature holding one) in WGS-84."""
    geometry = area.get("geometry", area) if area.get("type") == "Feature" else area
    if crs is CoordSystem.WGS84:
        return geometry
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    converted = [[_ring_to_wgs84(ring, crs) for ring in polygon] for polygon in polygons]
    return {"type": geometry["type"], "coordinates": converted if geometry["type"] == "MultiPolygon" else converted[0]}


def _ring_to_wgs84(ring: list[list[float]], crs: CoordSystem) -> list[list[float]]:
    lons, lats = convert([point[0] for point in ring], [point[1] for point in ring], crs, CoordSystem.WGS84)
    return [[lon, lat] for lon, lat in zip(lons, lats, strict=True)]


def report_reasons(incident: Incident, settings: Any, now: datetime) -> list[str]:
    """Why an incident must go up (empty: it need not): severity, overdue."""
    if settings.categories and incident.category not in settings.categories:
        return []
    reasons = []
    if incident.severity.rank >= settings.min_severity.rank:
        reasons.append("severity")
    overdue = incident.escalate_at is not None and incident.escalate_at < now and incident.state in _OPEN_STATES
    if settings.report_overdue and overdue:
        reasons.append("overdue")
    return reasons


class CitybrainConnector(Connector):
    """Northbound: :meth:`deliver` gets every incident change and reports those meeting the criteria.
    Southbound: an HTTP endpoint takes signed area warnings and publishes one event per warning, carrying its
    area and the touched grid cells (the pipeline makes it one incident with one order per cell)."""

    source = SOURCE
    outbound_subjects: ClassVar[tuple[str, ...]] = (f"{topology.PREFIX}.incidents.>",)
    settings: CitybrainSettings

    def __init__(self, settings: CitybrainSettings, layers: Sequence[LayerSpec] | None = None):
        super().__init__(settings)
        self.layers = list(layers if layers is not None else settings.southbound.layers)
        self.server: HttpServer | None = None
        self.grids: GridIndex | None = None
        self._ctx: ConnectorContext | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            ca_file = self.settings.northbound.ca_file
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
            self._http = httpx.AsyncClient(verify=verify, timeout=self.settings.northbound.retry.timeout_s)
        return self._http

    def _count(self, name: str) -> None:
        if self._ctx is not None:
            self._ctx.count(name)

    async def run(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        south = self.settings.southbound
        try:
            if south.enabled:
                self.grids = await asyncio.to_thread(GridIndex.load, self.layers)
                self.server = await HttpServer(self._app(ctx), south.listen.host, south.listen.port).start()
                ctx.log.info("area warnings on %s%s over %d cells", self.server.url, south.path, len(self.grids))
            await asyncio.Event().wait()
        finally:
            if self.server is not None:
                await self.server.stop()
            if self._http is not None:
                await self._http.aclose()
                self._http = None

    # --- northbound ------------------------------------------------------------------------------------

    async def deliver(self, item: DispatchOrder | DispatchUpdate | dict[str, Any]) -> None:
        """Report one incident change upward if it meets the criteria. Raises DeliveryError while the platform
        is unreachable (JetStream redelivers) and DeliveryRejected when it refuses the report."""
        north = self.settings.northbound
        if not north.enabled or not isinstance(item, dict):
            return
        try:
            incident = Incident.model_validate(item)
        except ValidationError as exc:
            if self._ctx is not None:
                await self._ctx.reject(orjson.dumps(item), f"incident does not validate: {describe(exc)}")
            return
        now = datetime.now(UTC)
        reasons = report_reasons(incident, north, now)
        if not reasons:
            self._count("incidents_not_reported")
            return
        key = f"{incident.id}:{incident.state.value}:{incident.updated_at.isoformat()}:{incident.escalation_level}"
        report = {
            "report_id": key,
            "hub_id": north.hub_id,
            "reasons": reasons,
            "reported_at": now.isoformat(),
            "incident": incident.model_dump(mode="json", exclude_none=True),
        }
        await post_signed_with_retry(
            self.http,
            north.url,
            orjson.dumps(report),
            secret=north.secret.get_secret_value(),
            idempotency_key=key,
            retry=north.retry,
        )
        self._count("incidents_reported")

    # --- southbound ------------------------------------------------------------------------------------

    def _app(self, ctx: ConnectorContext) -> FastAPI:
        app = FastAPI(title="CityHub city-brain area warnings", docs_url=None, redoc_url=None)

        @app.post(self.settings.southbound.path)
        async def receive_warning(request: Request) -> Response:
            return await self.receive_warning(ctx, request)

        return app

    async def receive_warning(self, ctx: ConnectorContext, request: Request) -> Response:
        """202 once every cell's event is stored; 4xx plus a DLQ entry when refused; 503 when NATS is down."""
        south = self.settings.southbound
        ctx.count("warnings_received")
        try:
            raw = await signed_body(
                request,
                secret=south.secret.get_secret_value(),
                tolerance_s=south.window_s,
                max_bytes=south.max_body_bytes,
            )
            warning = self.parse_warning(raw)
            event = self.warning_event(warning, self.grid_paths_of(warning))
        except WebhookRejected as rejection:
            return await refuse(ctx, request, rejection, south.max_body_bytes)
        try:
            await ctx.publish(event)
        except Exception as exc:  # NATS down: the platform resends; an event already stored dedups by msg id
            return unavailable(ctx, exc)
        assert event.area is not None
        ctx.count("warning_cells", len(event.area.cells))
        return JSONResponse(
            {"warning_id": warning.warning_id, "cells": [f"{cell.layer}:{cell.id}" for cell in event.area.cells]},
            status_code=202,
        )

    def parse_warning(self, raw: bytes) -> AreaWarning:
        try:
            warning = AreaWarning.model_validate_json(raw)
        except ValidationError as exc:
            raise WebhookRejected(422, f"area warning rejected: {describe(exc)}") from None
        if warning.level not in self.settings.southbound.severities:
            raise WebhookRejected(422, f"warning level {warning.level!r} has no severity in southbound.severities")
        return warning

    def grid_paths_of(self, warning: AreaWarning) -> list[list[Cell]]:
        """The grid path of every cell of the configured levels the warning's area touches (422 for an unusable
        polygon): the admin path from the district down to the cell, or an overlay cell alone."""
        grids = self.grids
        if grids is None:
            raise RuntimeError("grid layers are not loaded: the connector is not running")
        try:
            touched = grids.cells_intersecting_arrays([warning.area], crs=self.settings.southbound.crs).cells
        except GeoError as exc:
            raise WebhookRejected(422, f"area of warning {warning.warning_id}: {exc}") from None
        levels = self.settings.southbound.levels
        paths = [grids.admin_path(index) or [grids.cell(index)] for index in touched.tolist()]
        return [path for path in paths if not levels or path[-1].level in levels]

    def warning_event(self, warning: AreaWarning, paths: list[list[Cell]]) -> Event:
        """The one event of a warning: its area (in WGS-84) with the touched cells, placed on the admin path the
        cells share. Its id is the warning id and a digest of its content, so a resent warning is dropped as a
        duplicate and an updated one (same warning id) updates the warning's incident."""
        payload: dict[str, Any] = {"warning_id": warning.warning_id, "level": warning.level, "title": warning.title}
        if warning.kind:
            payload["kind"] = warning.kind
        if warning.expires_at is not None:
            payload["expires_at"] = warning.expires_at.isoformat()
        digest = hashlib.sha256(warning.model_dump_json().encode()).hexdigest()[:16]
        return Event(
            source=SOURCE,
            source_event_id=f"{warning.warning_id}:{digest}",
            category=Category.AREA_WARNING,
            severity=self.settings.southbound.severities[warning.level],
            time=warning.issued_at,
            grid_path=[cell.to_grid_cell() for cell in shared_admin_path(paths)],
            text=f"{warning.title}：{warning.message}",
            payload=payload,
            area=Area(
                id=warning.warning_id,
                geometry=wgs84_geometry(warning.area, self.settings.southbound.crs),
                cells=[path[-1].to_grid_cell() for path in paths],
                expires_at=warning.expires_at,
            ),
        )

    def health(self) -> dict[str, Any]:
        return {
            "grid_cells": len(self.grids) if self.grids is not None else None,
            "warnings_url": f"{self.server.url}{self.settings.southbound.path}"
            if self.server and self.server.port
            else None,
        }
