"""Recycling stations over MQTT: telemetry and drop-off records in; full-bin, fault and offline events out;
daily per-station aggregates (with residents' carbon-credit points summed, never per person) kept in state."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cityhub_recycling.settings import RecyclingSettings
from hub.connector_kit import (
    BrokerAddress,
    Connector,
    ConnectorContext,
    SilenceWatch,
    SitedRecord,
    consume,
    describe,
    error_kind,
    every,
    load_records,
)
from hub.errors import InvalidEventError
from hub.models import Category, Event, Severity, utcnow

STATE_KEY = "stations"
TOPIC_KINDS = ("telemetry", "drop", "status")


class Fraction(StrEnum):
    """The four household waste fractions of Chinese sorting rules."""

    KITCHEN = "kitchen"  # 厨余垃圾
    RECYCLABLE = "recyclable"  # 可回收物
    HAZARDOUS = "hazardous"  # 有害垃圾
    OTHER = "other"  # 其他垃圾


class Station(SitedRecord):
    """One row of the station registry."""

    station_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    name: str
    operator: str
    heartbeat_s: float | None = Field(None, gt=0)


class Telemetry(BaseModel):
    """A station's periodic report: fill level per bin, weight hauled away since the last report, faults."""

    model_config = ConfigDict(extra="forbid")

    msg_id: str | None = Field(None, max_length=128)
    ts: datetime | None = None
    fill_pct: dict[Fraction, float] = Field(description="Fill level of each bin, 0–100 %.")
    collected_kg: dict[Fraction, float] = Field(
        default_factory=dict, description="Weight collected since the last report, kg."
    )
    faults: list[str] = Field(default_factory=list, description="Fault codes active now (E11 compactor jam, ...).")


class Drop(BaseModel):
    """One resident's drop-off: personal (resident id), so only its amounts leave the connector, summed."""

    model_config = ConfigDict(extra="forbid")

    msg_id: str | None = Field(None, max_length=128)
    ts: datetime | None = None
    resident_id: str = Field(min_length=1, max_length=64)
    fraction: Fraction
    weight_kg: float = Field(ge=0, le=500)
    points: int = Field(ge=0, le=100_000, description="Carbon-credit points earned by this drop-off.")


class Episode(BaseModel):
    """An alarm that comes and goes (a full bin, a fault, an offline station): is it on, how many times so far."""

    active: bool = False
    seq: int = 0


class DailyTotals(BaseModel):
    """One station's day. Carbon-credit points are only ever kept as this sum."""

    drops: int = 0
    credit_points: int = 0
    dropped_kg: dict[str, float] = Field(default_factory=dict)
    collected_kg: dict[str, float] = Field(default_factory=dict)
    full_bins: int = 0
    faults: int = 0


class RecyclingState(BaseModel):
    """Everything the connector must remember across restarts (one JSON document in ``ctx.state``)."""

    bins: dict[str, Episode] = Field(default_factory=dict)
    faults: dict[str, Episode] = Field(default_factory=dict)
    offline: dict[str, Episode] = Field(default_factory=dict)
    daily: dict[str, dict[str, DailyTotals]] = Field(default_factory=dict)


def _add(totals: dict[str, float], key: str, amount: float) -> None:
    totals[str(key)] = round(totals.get(str(key), 0.0) + amount, 3)


def withhold_resident(payload: bytes) -> bytes:
    """A rejected drop record as the DLQ may keep it: the resident id masked, or, when the bytes do not parse,
    only their length and hash (so an operator can find the original in the station's own log)."""
    try:
        record = orjson.loads(payload)
    except orjson.JSONDecodeError:
        record = None
    if isinstance(record, dict):
        if "resident_id" in record:
            record["resident_id"] = "***"
        return orjson.dumps(record)
    digest = hashlib.sha256(payload).hexdigest()
    return orjson.dumps({"withheld": "unparseable drop record", "bytes": len(payload), "sha256": digest})


MessageT = TypeVar("MessageT", Telemetry, Drop)


class RecyclingConnector(Connector):
    """Subscribes to ``<prefix>/+/telemetry``, ``<prefix>/+/drop`` and ``<prefix>/+/status``."""

    source = "recycling"
    settings: RecyclingSettings

    def __init__(self, settings: RecyclingSettings, broker: BrokerAddress):
        super().__init__(settings)
        self.broker = broker
        self.stations: dict[str, Station] = load_records(settings.stations_path, Station, "station_id")
        self.zone = ZoneInfo(settings.timezone)
        self.book = RecyclingState()
        self.watch = SilenceWatch(settings.offline_grace)

    async def run(self, ctx: ConnectorContext) -> None:
        saved = await ctx.state.get(STATE_KEY)
        if saved:
            self.book = RecyclingState.model_validate_json(saved)
        for station in self.stations.values():
            self.watch.expect(station.station_id, station.heartbeat_s or self.settings.default_heartbeat_s)
        prefix = self.settings.topic_prefix
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                consume(
                    self.broker,
                    client_id=self.settings.client_id,
                    topics=[f"{prefix}/+/{kind}" for kind in TOPIC_KINDS],
                    handle=lambda topic, payload: self.handle(ctx, topic, payload),
                    backoff=self.settings.backoff.make(),
                    ctx=ctx,
                )
            )
            tasks.create_task(every(self.settings.check_interval_s, lambda: self._check_silence(ctx)))

    def health(self) -> dict[str, Any]:
        latest_day = max(self.book.daily, default=None)
        return {
            "stations": len(self.stations),
            "offline": sorted(key for key, episode in self.book.offline.items() if episode.active),
            "full_bins": sorted(key for key, episode in self.book.bins.items() if episode.active),
            "day": latest_day,
            "daily": {
                station: totals.model_dump(mode="json")
                for station, totals in self.book.daily.get(latest_day or "", {}).items()
            },
        }

    # --- inbound --------------------------------------------------------------------------------

    async def handle(self, ctx: ConnectorContext, topic: str, payload: bytes) -> None:
        """Apply one MQTT message; bad input goes to the DLQ (drop records with the resident id withheld)."""
        try:
            station, kind = self._station_of(topic)
            self.watch.heard(station.station_id)
            going_offline = kind == "status" and payload.strip().lower() == b"offline"
            await self._publish_offline(ctx, station, online=not going_offline)
            if kind == "telemetry":
                await self._apply_telemetry(ctx, station, self._parse(Telemetry, station, payload))
            elif kind == "drop":
                self._apply_drop(station, self._parse(Drop, station, payload))
                ctx.count("drops")
        except InvalidEventError as error:
            ctx.log.warning("rejected MQTT message on %s: %s", topic, error.reason)
            kept = withhold_resident(payload) if topic.endswith("/drop") else payload
            await ctx.reject(kept, f"{error.reason} (topic {topic})", error.kind)
            return
        await ctx.state.put(STATE_KEY, self.book.model_dump_json().encode())

    def _station_of(self, topic: str) -> tuple[Station, str]:
        prefix = self.settings.topic_prefix
        station_id, _, kind = topic.removeprefix(prefix + "/").partition("/")
        if not topic.startswith(prefix + "/") or kind not in TOPIC_KINDS or not station_id:
            raise InvalidEventError(f"topic {topic!r} is not {prefix}/<station_id>/{'|'.join(TOPIC_KINDS)}")
        station = self.stations.get(station_id)
        if station is None:
            raise InvalidEventError(f"unknown station id {station_id!r}: not in {self.settings.stations_path.name}")
        return station, kind

    @staticmethod
    def _parse(model: type[MessageT], station: Station, payload: bytes) -> MessageT:
        try:
            message = model.model_validate_json(payload)
        except ValidationError as error:
            raise InvalidEventError(
                f"{model.__name__.lower()} from {station.station_id}: {describe(error, 'message')}", error_kind(error)
            ) from None
        if message.ts is not None and message.ts.tzinfo is None:
            raise InvalidEventError(f"ts {message.ts.isoformat()} from {station.station_id} has no timezone offset")
        return message

    def _day(self, station: Station, when: datetime) -> DailyTotals:
        day = when.astimezone(self.zone).date().isoformat()
        per_station = self.book.daily.setdefault(day, {})
        for old_day in sorted(self.book.daily)[: -self.settings.keep_days]:
            del self.book.daily[old_day]
        return per_station.setdefault(station.station_id, DailyTotals())

    def _apply_drop(self, station: Station, drop: Drop) -> None:
        totals = self._day(station, drop.ts or utcnow())
        totals.drops += 1
        totals.credit_points += drop.points
        _add(totals.dropped_kg, drop.fraction, drop.weight_kg)

    async def _apply_telemetry(self, ctx: ConnectorContext, station: Station, report: Telemetry) -> None:
        when = report.ts or utcnow()
        totals = self._day(station, when)
        for fraction, kilograms in report.collected_kg.items():
            _add(totals.collected_kg, fraction, kilograms)
        for fraction, fill in report.fill_pct.items():
            await self._track_bin(ctx, station, fraction, fill, when, totals)
        await self._track_faults(ctx, station, set(report.faults), when, totals)

    async def _track_bin(
        self,
        ctx: ConnectorContext,
        station: Station,
        fraction: Fraction,
        fill: float,
        when: datetime,
        totals: DailyTotals,
    ) -> None:
        key = f"{station.station_id}:{fraction}"
        episode = self.book.bins.setdefault(key, Episode())
        detail = {"fraction": str(fraction), "fill_pct": fill, "full_pct": self.settings.full_pct}
        if not episode.active and fill >= self.settings.full_pct:
            episode.active, episode.seq = True, episode.seq + 1
            totals.full_bins += 1
            severity = Severity.HIGH if fraction is Fraction.HAZARDOUS else Severity.MEDIUM
            await ctx.publish(self._event(station, key, Category.BIN_FULL, severity, when, "full", episode.seq, detail))
            ctx.count("bins_full")
        elif episode.active and fill < self.settings.rearm_pct:
            episode.active = False
            await ctx.publish(
                self._event(station, key, Category.BIN_FULL, Severity.INFO, when, "recovered", episode.seq, detail)
            )
            ctx.count("bins_emptied")

    async def _track_faults(
        self, ctx: ConnectorContext, station: Station, codes: set[str], when: datetime, totals: DailyTotals
    ) -> None:
        prefix = f"{station.station_id}:fault:"
        active_before = {
            key.removeprefix(prefix) for key, e in self.book.faults.items() if key.startswith(prefix) and e.active
        }
        for code in sorted(codes - active_before):
            episode = self.book.faults.setdefault(prefix + code, Episode())
            episode.active, episode.seq = True, episode.seq + 1
            totals.faults += 1
            await ctx.publish(
                self._event(
                    station,
                    prefix + code,
                    Category.STATION_FAULT,
                    Severity.MEDIUM,
                    when,
                    "fault",
                    episode.seq,
                    {"fault_code": code},
                )
            )
            ctx.count("faults")
        for code in sorted(active_before - codes):
            episode = self.book.faults[prefix + code]
            episode.active = False
            await ctx.publish(
                self._event(
                    station,
                    prefix + code,
                    Category.STATION_FAULT,
                    Severity.INFO,
                    when,
                    "recovered",
                    episode.seq,
                    {"fault_code": code},
                )
            )
            ctx.count("faults_cleared")

    async def _check_silence(self, ctx: ConnectorContext) -> None:
        for station_id in self.watch.newly_silent():
            await self._publish_offline(ctx, self.stations[station_id], online=False)
            await ctx.state.put(STATE_KEY, self.book.model_dump_json().encode())

    async def _publish_offline(self, ctx: ConnectorContext, station: Station, *, online: bool) -> None:
        """Publish a change of the station's reachability; nothing when it is already in that state."""
        episode = self.book.offline.setdefault(station.station_id, Episode())
        if episode.active is not online:
            return
        if not online:
            episode.seq += 1
        episode.active = not online
        status, severity = ("recovered", Severity.INFO) if online else ("offline", Severity.LOW)
        key = f"{station.station_id}:{Category.DEVICE_OFFLINE}"
        await ctx.publish(
            self._event(station, key, Category.DEVICE_OFFLINE, severity, utcnow(), status, episode.seq, {})
        )
        ctx.count("stations_back_online" if online else "stations_offline")

    def _event(
        self,
        station: Station,
        key: str,
        category: Category,
        severity: Severity,
        when: datetime,
        status: str,
        seq: int,
        detail: dict[str, Any],
    ) -> Event:
        return Event(
            source=self.source,
            source_event_id=f"{key}:{seq}:{status}",
            category=category,
            severity=severity,
            time=when,
            location=station.location,
            address=station.address,
            device_id=station.station_id,
            status=status,
            payload={"alarm_key": key, "station": station.name, "operator": station.operator, **detail},
        )
