"""Eldercare platform: signed alert webhook in, visit orders out, visit outcomes back as dispatch updates.

The elder registry stays inside the connector. An alert reaches the unified stream with only what the
responder needs: the home address and location, the elder's name and phone in ``Event.reporter`` (masked
downstream by the redaction plugin), the alert's own readings, and ``payload.route_hint`` naming who should
be dispatched first. Medical conditions from the registry are never published.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from cityhub_eldercare.settings import EldercareSettings
from hub.connector_kit import (
    Connector,
    ConnectorContext,
    SitedRecord,
    WebhookRejected,
    dead_letter,
    describe,
    load_records,
    post_signed,
    serve,
    signed_body,
)
from hub.models import (
    Category,
    DispatchOrder,
    DispatchStatus,
    DispatchUpdate,
    Event,
    Reporter,
    Severity,
)


class Elder(SitedRecord):
    """One row of the elder registry (personal data: it never leaves the connector whole)."""

    elder_id: str = Field(min_length=1, max_length=64)
    name: str
    phone: str
    lives_alone: bool = False
    conditions: str | None = Field(None, description="Medical conditions: kept for the platform, never published.")


class AlertType(StrEnum):
    SOS = "sos"
    FALL = "fall"
    VITALS = "vitals"
    NO_ACTIVITY = "no_activity"
    GAS = "gas"


class Vitals(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heart_rate_bpm: float | None = Field(None, ge=0, le=300)
    spo2_pct: float | None = Field(None, ge=0, le=100)
    systolic_mmhg: float | None = Field(None, ge=0, le=300)
    diastolic_mmhg: float | None = Field(None, ge=0, le=250)
    temperature_c: float | None = Field(None, ge=25, le=45)


class Alert(BaseModel):
    """What the platform posts to ``/alerts``."""

    model_config = ConfigDict(extra="forbid")

    alert_id: str = Field(min_length=1, max_length=128)
    type: AlertType
    elder_id: str = Field(min_length=1, max_length=64)
    time: AwareDatetime
    device_id: str | None = Field(None, max_length=128)
    vitals: Vitals | None = None
    inactive_hours: float | None = Field(None, ge=0)
    gas_lel_pct: float | None = Field(None, ge=0, le=100)


class VisitOutcome(BaseModel):
    """What the platform posts to ``/visit-outcomes`` as a visit order progresses."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    incident_id: str
    status: Literal["accepted", "on_site", "resolved", "refused"]
    time: AwareDatetime
    caregiver: str | None = Field(None, max_length=128, description="Caregiver staff id (not the elder).")
    note: str | None = Field(None, max_length=2048)


OUTCOME_STATUS = {
    "accepted": DispatchStatus.ACCEPTED,
    "on_site": DispatchStatus.ON_SITE,
    "resolved": DispatchStatus.RESOLVED,
    "refused": DispatchStatus.REJECTED,
}

ALERT_CATEGORY = {
    AlertType.SOS: (Category.ELDER_SOS, Severity.CRITICAL, "SOS button pressed at home"),
    AlertType.FALL: (Category.ELDER_FALL, Severity.CRITICAL, "fall detected at home"),
    AlertType.VITALS: (Category.ELDER_VITALS, Severity.HIGH, "abnormal vital signs"),
    AlertType.NO_ACTIVITY: (Category.ELDER_INACTIVITY, Severity.HIGH, "no activity at home"),
    AlertType.GAS: (Category.GAS_LEAK, Severity.CRITICAL, "gas alarm at an elder's home"),
}


class Ignored(Exception):
    """A well-formed alert that does not call for a response under the configured rules."""


class EldercareConnector(Connector):
    """Serves ``POST /alerts`` and ``POST /visit-outcomes``; delivers dispatch orders as visit orders."""

    source = "eldercare"
    settings: EldercareSettings

    def __init__(self, settings: EldercareSettings):
        super().__init__(settings)
        self.elders: dict[str, Elder] = load_records(settings.elders_path, Elder, "elder_id")
        self._ctx: ConnectorContext | None = None

    async def run(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        await serve(self.app(ctx), self.settings.listen_host, self.settings.listen_port)

    def health(self) -> dict[str, Any]:
        return {"elders": len(self.elders), "webhook": f"{self.settings.listen_host}:{self.settings.listen_port}"}

    # --- inbound --------------------------------------------------------------------------------

    def app(self, ctx: ConnectorContext) -> FastAPI:
        """The webhook application (both routes need a valid signature)."""
        app = FastAPI(title="CityHub eldercare webhook", docs_url=None, redoc_url=None)

        @app.post("/alerts")
        async def receive_alert(request: Request) -> JSONResponse:
            return await self._receive(ctx, request, self._alert_event)

        @app.post("/visit-outcomes")
        async def receive_outcome(request: Request) -> JSONResponse:
            return await self._receive(ctx, request, self._outcome_update)

        return app

    async def _receive(
        self, ctx: ConnectorContext, request: Request, convert: Callable[[bytes], Event | DispatchUpdate]
    ) -> JSONResponse:
        limit = self.settings.max_body_bytes
        try:
            body = await signed_body(
                request,
                secret=self.settings.secret.get_secret_value(),
                tolerance_s=self.settings.signature_tolerance_s,
                max_bytes=limit,
            )
            item = convert(body)
        except WebhookRejected as rejection:
            content = await dead_letter(ctx, await request.body(), rejection, limit)
            return JSONResponse(content, status_code=rejection.status)
        except Ignored as why:
            ctx.count("alerts_ignored")
            return JSONResponse({"ignored": str(why)}, status_code=200)
        if isinstance(item, Event):
            await ctx.publish(item)
            ctx.count(f"alerts_{item.payload['alert_type']}")
            return JSONResponse({"accepted": item.source_event_id}, status_code=202)
        await ctx.publish_update(item)
        ctx.count("visit_outcomes")
        return JSONResponse({"accepted": item.order_id}, status_code=202)

    def _alert_event(self, body: bytes) -> Event:
        try:
            alert = Alert.model_validate_json(body)
        except ValidationError as error:
            raise WebhookRejected(400, f"alert: {describe(error)}") from None
        elder = self.elders.get(alert.elder_id)
        if elder is None:
            raise WebhookRejected(422, f"alert {alert.alert_id}: unknown elder id {alert.elder_id!r}")
        category, severity, summary = ALERT_CATEGORY[alert.type]
        details = self._details(alert, elder)
        if (
            alert.type is AlertType.VITALS
            and details.get("vitals", {}).get("spo2_pct", 100) < self.settings.vitals.critical_spo2_pct
        ):
            severity = Severity.CRITICAL
        return Event(
            source=self.source,
            source_event_id=alert.alert_id,
            category=category,
            severity=severity,
            time=alert.time,
            location=elder.location,
            address=elder.address,
            reporter=Reporter(name=elder.name, phone=elder.phone, account=elder.elder_id),
            text=summary + ("; lives alone" if elder.lives_alone else ""),
            device_id=alert.device_id,
            payload={
                "alert_type": str(alert.type),
                "route_hint": self.settings.route_hint,
                "lives_alone": elder.lives_alone,
                **details,
            },
        )

    def _details(self, alert: Alert, elder: Elder) -> dict[str, Any]:
        """Only the readings that explain this alert; raise :class:`Ignored` when the alert does not apply."""
        if alert.type is AlertType.VITALS:
            abnormal = self._abnormal_vitals(alert.vitals or Vitals())
            if not abnormal:
                raise Ignored("no vital sign outside the configured limits")
            return {"vitals": abnormal}
        if alert.type is AlertType.NO_ACTIVITY:
            hours = alert.inactive_hours or 0.0
            if not elder.lives_alone or hours < self.settings.inactivity_hours:
                raise Ignored(
                    f"no-activity alerts apply to elders living alone after {self.settings.inactivity_hours} h"
                )
            return {"inactive_hours": hours}
        if alert.type is AlertType.GAS and alert.gas_lel_pct is not None:
            return {"gas_lel_pct": alert.gas_lel_pct}
        return {}

    def _abnormal_vitals(self, vitals: Vitals) -> dict[str, float]:
        limits = self.settings.vitals
        ranges = {
            "heart_rate_bpm": limits.heart_rate_bpm,
            "spo2_pct": (limits.spo2_pct_min, 100.0),
            "systolic_mmhg": limits.systolic_mmhg,
            "temperature_c": limits.temperature_c,
        }
        readings = vitals.model_dump(exclude_none=True)
        return {
            name: value
            for name, value in readings.items()
            if name in ranges and not ranges[name][0] <= value <= ranges[name][1]
        }

    def _outcome_update(self, body: bytes) -> DispatchUpdate:
        try:
            outcome = VisitOutcome.model_validate_json(body)
        except ValidationError as error:
            raise WebhookRejected(400, f"visit outcome: {describe(error)}") from None
        return DispatchUpdate(
            order_id=outcome.order_id,
            incident_id=outcome.incident_id,
            status=OUTCOME_STATUS[outcome.status],
            time=outcome.time,
            actor=outcome.caregiver,
            note=outcome.note,
        )

    # --- outbound -------------------------------------------------------------------------------

    async def deliver(self, item: DispatchOrder | DispatchUpdate | dict[str, Any]) -> None:
        """POST a dispatch order to the platform as a visit order. A platform that is down, slow or failing
        (connection error, timeout, 5xx, 408, 429) raises, so the order stays in JetStream and is redelivered;
        an order the platform refuses outright (other 4xx) goes to the DLQ with the platform's answer."""
        ctx = self._require_ctx()
        if not isinstance(item, DispatchOrder):
            await ctx.reject(repr(item).encode(), "eldercare delivers dispatch orders only")
            return
        body = visit_order_body(item)
        url = self.settings.platform_url.rstrip("/") + "/visit-orders"
        async with httpx.AsyncClient(timeout=self.settings.request_timeout_s) as client:
            response = await post_signed(client, url, body, self.settings.secret.get_secret_value())
        if response.status_code < 300:
            ctx.count("visit_orders_delivered")
            return
        if response.status_code >= 500 or response.status_code in (408, 429):
            ctx.count("visit_orders_retried")
            raise httpx.HTTPStatusError(
                f"platform answered {response.status_code}", request=response.request, response=response
            )
        await ctx.reject(body, f"platform refused visit order {item.id}: {response.status_code} {response.text[:512]}")

    def _require_ctx(self) -> ConnectorContext:
        if self._ctx is None:
            raise RuntimeError("eldercare connector is not running yet; the order will be redelivered")
        return self._ctx


def visit_order_body(order: DispatchOrder) -> bytes:
    """The visit order the platform receives: the dispatch order as JSON plus ``alert_ids``, the platform's own
    alerts among the incident's reports, so it knows which elder to visit."""
    alert_ids = [report.source_event_id for report in order.reports if report.source == EldercareConnector.source]
    return orjson.dumps({**order.model_dump(mode="json", exclude_none=True), "alert_ids": alert_ids})
