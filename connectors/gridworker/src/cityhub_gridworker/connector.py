"""Grid-worker app over WebSocket: dispatch orders pushed to the worker responsible for the cell, status
and locations back, and acceptance deadlines that move an order to the backup worker, then the grid leader.

Every open order is kept in ``ctx.state`` (with its wall-clock deadline) before it is pushed, so orders and
their timers survive a restart; a worker who connects gets every open order assigned to them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from cityhub_gridworker.settings import GridworkerSettings
from hub.connector_kit import Connector, ConnectorContext, describe, every, load_records
from hub.models import Attachment, CoordSystem, DispatchOrder, DispatchStatus, DispatchUpdate, Location

ORDERS_KEY = "orders"
LOCATION_KEY = "location/{worker}"
LEVELS = ("primary", "backup", "leader")
AUTH_FAILED = 4401  # WebSocket close code in the private range: bad or missing token


def worker_token(secret: str, worker_id: str) -> str:
    """The token a worker's app presents: HMAC-SHA256 of the worker id under the connector's secret."""
    return hmac.new(secret.encode(), worker_id.encode(), hashlib.sha256).hexdigest()


class CellRoster(BaseModel):
    """Who answers for one grid cell, in escalation order."""

    model_config = ConfigDict(extra="forbid")

    cell_id: str
    cell_name: str | None = None
    primary: str
    backup: str
    leader: str

    @property
    def chain(self) -> list[str]:
        return [self.primary, self.backup, self.leader]


class Assignment(BaseModel):
    """One open order: who has it now (``chain[level]``), until when they may accept, how far it got."""

    order: DispatchOrder
    chain: list[str]
    level: int = 0
    deadline: float | None = Field(
        description="Unix time the current assignee must accept by; None once accepted or at the leader."
    )
    status: DispatchStatus = DispatchStatus.SENT

    @property
    def assignee(self) -> str:
        return self.chain[self.level]


class Hello(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["hello"]
    worker_id: str = Field(min_length=1, max_length=64)
    token: str = Field(max_length=128)


class Photo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=1024)
    media_type: str = Field("image/jpeg", pattern=r"^image/")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class StatusReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["status"]
    order_id: str
    status: Literal["accepted", "on_site", "resolved"]
    time: AwareDatetime
    note: str | None = Field(None, max_length=2048)
    photos: list[Photo] = Field(default_factory=list, max_length=9)


class LocationReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["location"]
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    crs: CoordSystem = CoordSystem.WGS84
    accuracy_m: float | None = Field(None, ge=0)
    time: AwareDatetime


WorkerMessage = TypeAdapter(Annotated[StatusReport | LocationReport, Field(discriminator="type")])
REPORTED_STATUS = {
    "accepted": DispatchStatus.ACCEPTED,
    "on_site": DispatchStatus.ON_SITE,
    "resolved": DispatchStatus.RESOLVED,
}


class Refused(Exception):
    """A worker message the connector cannot use: the reason goes back to the app and to the DLQ."""


class GridworkerConnector(Connector):
    """Serves the workers' WebSocket endpoint and delivers dispatch orders to it."""

    source = "gridworker"
    settings: GridworkerSettings

    def __init__(self, settings: GridworkerSettings):
        super().__init__(settings)
        self.roster: dict[str, CellRoster] = load_records(settings.roster_path, CellRoster, "cell_id")
        self.open: dict[str, Assignment] = {}
        self.connections: dict[str, ServerConnection] = {}
        self.location_stored_at: dict[str, float] = {}
        self._ctx: ConnectorContext | None = None
        self._restored = asyncio.Event()

    async def run(self, ctx: ConnectorContext) -> None:
        self._ctx = ctx
        saved = await ctx.state.get(ORDERS_KEY)
        if saved:
            self.open = {key: Assignment.model_validate(value) for key, value in orjson.loads(saved).items()}
        self._restored.set()
        async with serve(
            lambda connection: self._session(ctx, connection),
            self.settings.listen_host,
            self.settings.listen_port,
            max_size=self.settings.max_message_bytes,
        ):
            ctx.log.info("worker endpoint on ws://%s:%d/", self.settings.listen_host, self.settings.listen_port)
            await every(self.settings.check_interval_s, lambda: self._escalate_overdue(ctx))

    def health(self) -> dict[str, Any]:
        return {
            "cells": len(self.roster),
            "workers_connected": sorted(self.connections),
            "open_orders": {
                order_id: {"assignee": a.assignee, "status": a.status} for order_id, a in self.open.items()
            },
        }

    # --- outbound -------------------------------------------------------------------------------

    async def deliver(self, item: DispatchOrder | DispatchUpdate | dict[str, Any]) -> None:
        """Take a dispatch order: store it durably, then push it to the cell's primary worker if connected
        (otherwise on their next connection; the acceptance timer runs either way). Raises while the state
        store is unavailable, so JetStream redelivers."""
        await self._restored.wait()
        ctx = self._require_ctx()
        if not isinstance(item, DispatchOrder):
            await ctx.reject(orjson.dumps(item, default=str), "gridworker delivers dispatch orders only")
            return
        if item.id in self.open:
            return
        cell = self.responsible_for(item.grid_cell.id) if item.grid_cell else None
        chain = cell.chain if cell else [self.settings.fallback_leader]
        deadline = time.time() + self.settings.accept_timeout_s if cell else None
        assignment = Assignment(order=item, chain=chain, deadline=deadline)
        self.open[item.id] = assignment
        await self._save(ctx)
        await self._push(ctx, assignment)
        note = (
            None if cell else f"cell {item.grid_cell.id if item.grid_cell else '(none)'} not in roster: fallback leader"
        )
        await self._update(ctx, assignment, DispatchStatus.SENT, note)
        ctx.log.info(
            "order %s (%s) for cell %s sent to %s",
            item.id,
            item.category,
            item.grid_cell.id if item.grid_cell else "-",
            assignment.assignee,
        )

    def responsible_for(self, cell_id: str) -> CellRoster | None:
        """The roster entry of the cell, else of its nearest enclosing cell: grid codes are hierarchical, so
        the longest roster code that prefixes the order's code (``510104-03-05-01`` answers for micro-grid
        ``510104-03-05-01-07``)."""
        enclosing = [code for code in self.roster if cell_id.startswith(code)]
        return self.roster[max(enclosing, key=len)] if enclosing else None

    def _require_ctx(self) -> ConnectorContext:
        if self._ctx is None:
            raise RuntimeError("gridworker connector is not running yet; the order will be redelivered")
        return self._ctx

    async def _push(self, ctx: ConnectorContext, assignment: Assignment) -> None:
        connection = self.connections.get(assignment.assignee)
        if connection is None:
            ctx.count("orders_waiting_for_worker")
            return
        role = LEVELS[assignment.level] if len(assignment.chain) == len(LEVELS) else "leader"
        message = {"type": "order", "order": assignment.order.model_dump(mode="json", exclude_none=True), "role": role}
        try:
            await connection.send(orjson.dumps(message).decode())
            ctx.count("orders_pushed")
        except ConnectionClosed:
            ctx.count("orders_waiting_for_worker")

    async def _update(
        self,
        ctx: ConnectorContext,
        assignment: Assignment,
        status: DispatchStatus,
        note: str | None = None,
        *,
        when: datetime | None = None,
        attachments: list[Attachment] | None = None,
    ) -> None:
        await ctx.publish_update(
            DispatchUpdate(
                order_id=assignment.order.id,
                incident_id=assignment.order.incident_id,
                status=status,
                time=when or datetime.now(UTC),
                actor=assignment.assignee,
                note=note,
                attachments=attachments or [],
            )
        )

    async def _escalate_overdue(self, ctx: ConnectorContext) -> None:
        """Move every order not accepted by its deadline one step up the chain: backup, then leader."""
        now = time.time()
        for assignment in list(self.open.values()):
            if assignment.deadline is None or assignment.deadline > now:
                continue
            previous = assignment.assignee
            assignment.level += 1
            at_leader = assignment.level >= len(assignment.chain) - 1
            assignment.deadline = None if at_leader else now + self.settings.backup_timeout_s
            await self._save(ctx)
            await self._withdraw(previous, assignment.order.id)
            await self._push(ctx, assignment)
            status = DispatchStatus.ESCALATED if at_leader else DispatchStatus.REDISPATCHED
            await self._update(ctx, assignment, status, f"not accepted by {previous} in time")
            ctx.count("orders_escalated" if at_leader else "orders_to_backup")
            ctx.log.info(
                "order %s not accepted by %s in time: now with %s", assignment.order.id, previous, assignment.assignee
            )

    async def _withdraw(self, worker_id: str, order_id: str) -> None:
        connection = self.connections.get(worker_id)
        if connection is not None:
            try:
                await connection.send(orjson.dumps({"type": "withdrawn", "order_id": order_id}).decode())
            except ConnectionClosed:
                pass

    async def _save(self, ctx: ConnectorContext) -> None:
        snapshot = {order_id: a.model_dump(mode="json") for order_id, a in self.open.items()}
        await ctx.state.put(ORDERS_KEY, orjson.dumps(snapshot))

    # --- inbound --------------------------------------------------------------------------------

    async def _session(self, ctx: ConnectorContext, connection: ServerConnection) -> None:
        """One worker app's connection: hello with token first, then status and location reports."""
        worker_id = await self._authenticate(ctx, connection)
        if worker_id is None:
            return
        self.connections[worker_id] = connection
        ctx.count("worker_sessions")
        try:
            await self._restored.wait()
            for assignment in list(self.open.values()):
                if assignment.assignee == worker_id:
                    await self._push(ctx, assignment)
            async for raw in connection:
                await self._receive(ctx, connection, worker_id, raw.encode() if isinstance(raw, str) else raw)
        except ConnectionClosed:
            pass
        finally:
            if self.connections.get(worker_id) is connection:
                del self.connections[worker_id]

    async def _authenticate(self, ctx: ConnectorContext, connection: ServerConnection) -> str | None:
        try:
            raw = await asyncio.wait_for(connection.recv(), timeout=10)
            hello = Hello.model_validate_json(raw)
        except (ValidationError, TimeoutError, ConnectionClosed) as error:
            reason = f"first message must be a hello with worker_id and token ({type(error).__name__})"
            await ctx.reject(b"", reason)
            await connection.close(AUTH_FAILED, reason[:120])
            return None
        expected = worker_token(self.settings.secret.get_secret_value(), hello.worker_id)
        if not hmac.compare_digest(expected, hello.token):
            reason = f"bad token for worker {hello.worker_id!r}"
            await ctx.reject(hello.model_copy(update={"token": "***"}).model_dump_json().encode(), reason)
            await connection.close(AUTH_FAILED, reason[:120])
            return None
        await connection.send(orjson.dumps({"type": "welcome", "worker_id": hello.worker_id}).decode())
        return hello.worker_id

    async def _receive(self, ctx: ConnectorContext, connection: ServerConnection, worker_id: str, raw: bytes) -> None:
        try:
            message = WorkerMessage.validate_json(raw)
            if isinstance(message, LocationReport):
                await self._store_location(ctx, worker_id, message)
                return
            await self._apply_status(ctx, worker_id, message)
        except (ValidationError, Refused) as error:
            reason = describe(error, "message") if isinstance(error, ValidationError) else str(error)
            ctx.count("rejected_messages")
            await ctx.reject(raw, f"from worker {worker_id}: {reason}")
            await connection.send(orjson.dumps({"type": "error", "reason": reason}).decode())
            return
        await connection.send(
            orjson.dumps({"type": "ack", "order_id": message.order_id, "status": message.status}).decode()
        )

    async def _apply_status(self, ctx: ConnectorContext, worker_id: str, report: StatusReport) -> None:
        assignment = self.open.get(report.order_id)
        if assignment is None:
            raise Refused(f"order {report.order_id!r} is not open")
        if assignment.assignee != worker_id:
            raise Refused(f"order {report.order_id!r} is assigned to {assignment.assignee}, not {worker_id}")
        if report.status == "resolved" and not report.photos:
            raise Refused("a resolved report needs at least one photo")
        status = REPORTED_STATUS[report.status]
        assignment.status = status
        assignment.deadline = None
        if status is DispatchStatus.RESOLVED:
            del self.open[report.order_id]
        await self._save(ctx)
        photos = [Attachment(url=p.url, media_type=p.media_type, sha256=p.sha256) for p in report.photos]
        await self._update(ctx, assignment, status, report.note, when=report.time, attachments=photos)
        ctx.count(f"orders_{report.status}")

    async def _store_location(self, ctx: ConnectorContext, worker_id: str, report: LocationReport) -> None:
        """Keep the latest location per worker in the connector's KV (throttled); see the docs page."""
        now = time.monotonic()
        if now - self.location_stored_at.get(worker_id, -1e9) < self.settings.location_min_interval_s:
            ctx.count("locations_throttled")
            return
        self.location_stored_at[worker_id] = now
        location = Location(lon=report.lon, lat=report.lat, crs=report.crs, accuracy_m=report.accuracy_m)
        value = {
            "worker_id": worker_id,
            "time": report.time.isoformat(),
            **location.model_dump(mode="json", exclude_none=True),
        }
        await ctx.state.put(LOCATION_KEY.format(worker=worker_id), orjson.dumps(value))
        ctx.count("locations")
