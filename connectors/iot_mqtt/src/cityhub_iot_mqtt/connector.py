"""IoT alarms over MQTT: device readings in, alarm / recovery / offline events out."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from cityhub_iot_mqtt.devices import (
    ALARM_CATEGORIES,
    ASSESSORS,
    READING_MODELS,
    SENSITIVE_VIDEO_EVENTS,
    VIDEO_CATEGORIES,
    Condition,
    Reading,
    VideoReading,
)
from cityhub_iot_mqtt.registry import Device, load_registry
from cityhub_iot_mqtt.settings import IotMqttSettings
from hub.connector_kit import (
    BrokerAddress,
    Connector,
    ConnectorContext,
    SilenceWatch,
    consume,
    describe,
    error_kind,
    every,
)
from hub.errors import InvalidEventError
from hub.models import Attachment, Category, Event, Reporter, Severity, utcnow

STATE_KEY = "alarms"


@dataclass
class AlarmState:
    """One alarm of one device (``<device_id>:<category>``): what the device says now and what was published."""

    active: bool = False
    published: bool = False
    seq: int = 0
    severity: Severity | None = None
    flapping: bool = False
    last: Condition | None = None
    last_time: datetime | None = None

    def snapshot(self) -> dict[str, Any]:
        return {"published": self.published, "seq": self.seq, "severity": self.severity}


class IotMqttConnector(Connector):
    """Subscribes to ``<prefix>/+/data`` and ``<prefix>/+/heartbeat``; every device must be in the registry."""

    source = "iot_mqtt"
    settings: IotMqttSettings

    def __init__(self, settings: IotMqttSettings, broker: BrokerAddress):
        super().__init__(settings)
        self.broker = broker
        self.devices: dict[str, Device] = load_registry(settings.registry_path)
        self.alarms: dict[str, AlarmState] = {}
        self.transitions: dict[str, deque[float]] = {}
        self.watch = SilenceWatch(settings.offline_grace)

    async def run(self, ctx: ConnectorContext) -> None:
        await self._restore(ctx)
        for device in self.devices.values():
            self.watch.expect(device.device_id, device.heartbeat_s or self.settings.default_heartbeat_s)
        prefix = self.settings.topic_prefix
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                consume(
                    self.broker,
                    client_id=self.settings.client_id,
                    topics=[f"{prefix}/+/data", f"{prefix}/+/heartbeat"],
                    handle=lambda topic, payload: self.handle(ctx, topic, payload),
                    backoff=self.settings.backoff.make(),
                    ctx=ctx,
                )
            )
            tasks.create_task(every(self.settings.check_interval_s, lambda: self._check(ctx)))

    def health(self) -> dict[str, Any]:
        return {
            "devices": len(self.devices),
            "offline": sorted(self.watch.offline),
            "active_alarms": sorted(key for key, state in self.alarms.items() if state.published),
            "flapping": sorted(key for key, state in self.alarms.items() if state.flapping),
        }

    # --- inbound --------------------------------------------------------------------------------

    async def handle(self, ctx: ConnectorContext, topic: str, payload: bytes) -> None:
        """Turn one MQTT message into zero or more events; bad input goes to the DLQ with its reason."""
        try:
            device, kind = self._device_of(topic)
        except InvalidEventError as error:
            await self._reject(ctx, topic, payload, error)
            return
        if self.watch.heard(device.device_id):
            await self._publish_offline(ctx, device, online=True)
        if kind == "heartbeat":
            ctx.count("heartbeats")
            return
        try:
            reading = self._parse(device, payload)
        except InvalidEventError as error:
            await self._reject(ctx, topic, payload, error)
            return
        if isinstance(reading, VideoReading):
            await self._publish_detection(ctx, device, reading)
            return
        key = f"{device.device_id}:{ALARM_CATEGORIES[device.type]}"
        state = self.alarms.setdefault(key, AlarmState())
        condition = ASSESSORS[device.type](reading, self.settings.thresholds, state.active)
        await self._apply(ctx, device, key, state, condition, reading.ts or utcnow())

    def _device_of(self, topic: str) -> tuple[Device, str]:
        prefix = self.settings.topic_prefix
        device_id, _, kind = topic.removeprefix(prefix + "/").partition("/")
        if not topic.startswith(prefix + "/") or kind not in ("data", "heartbeat") or not device_id:
            raise InvalidEventError(f"topic {topic!r} is not {prefix}/<device_id>/data|heartbeat")
        device = self.devices.get(device_id)
        if device is None:
            raise InvalidEventError(
                f"unknown device id {device_id!r}: not in the registry {self.settings.registry_path.name}"
            )
        return device, kind

    def _parse(self, device: Device, payload: bytes) -> Reading:
        try:
            reading = READING_MODELS[device.type].model_validate_json(payload)
        except ValidationError as error:
            raise InvalidEventError(
                f"{device.type} reading from {device.device_id}: {describe(error, 'message')}", error_kind(error)
            ) from None
        if reading.ts is not None and reading.ts.tzinfo is None:
            raise InvalidEventError(f"ts {reading.ts.isoformat()} from {device.device_id} has no timezone offset")
        return reading

    async def _reject(self, ctx: ConnectorContext, topic: str, payload: bytes, error: InvalidEventError) -> None:
        ctx.log.warning("rejected MQTT message on %s: %s", topic, error.reason)
        await ctx.reject(payload, f"{error.reason} (topic {topic})", error.kind)

    # --- alarm state, flapping ------------------------------------------------------------------

    async def _apply(
        self, ctx: ConnectorContext, device: Device, key: str, state: AlarmState, condition: Condition, time: datetime
    ) -> None:
        state.last, state.last_time = condition, time
        if condition.active == state.active:
            if self._worsened(state, condition):
                await self._publish_alarm(ctx, device, key, state, status="worsened")
            return
        state.active = condition.active
        if self._flapping(key):
            state.flapping = True
            ctx.count("flapping_held")
            return
        await self._publish_state(ctx, device, key, state)

    @staticmethod
    def _worsened(state: AlarmState, condition: Condition) -> bool:
        return (
            condition.active
            and state.published
            and not state.flapping
            and state.severity is not None
            and condition.severity.rank > Severity(state.severity).rank
        )

    def _flapping(self, key: str) -> bool:
        now = asyncio.get_running_loop().time()
        recent = self.transitions.setdefault(key, deque())
        recent.append(now)
        while recent and now - recent[0] > self.settings.flap_window_s:
            recent.popleft()
        return len(recent) > self.settings.flap_max_transitions

    async def _settle_flapping(self, ctx: ConnectorContext) -> None:
        """Alarms quiet for a whole window stop flapping; publish their state if it changed meanwhile."""
        now = asyncio.get_running_loop().time()
        for key, state in self.alarms.items():
            recent = self.transitions.get(key)
            if not state.flapping or (recent and now - recent[-1] <= self.settings.flap_window_s):
                continue
            state.flapping = False
            self.transitions.pop(key, None)
            device = self.devices[key.rpartition(":")[0]]
            if state.active != state.published:
                await self._publish_state(ctx, device, key, state)

    async def _check(self, ctx: ConnectorContext) -> None:
        """Report devices that went silent and settle alarms that stopped flapping."""
        for device_id in self.watch.newly_silent():
            await self._publish_offline(ctx, self.devices[device_id], online=False)
        await self._settle_flapping(ctx)

    # --- publishing -----------------------------------------------------------------------------

    async def _publish_state(self, ctx: ConnectorContext, device: Device, key: str, state: AlarmState) -> None:
        if state.active:
            state.seq += 1
            await self._publish_alarm(ctx, device, key, state, status="alarm")
        else:
            await self._publish_recovery(ctx, device, key, state)

    async def _publish_alarm(
        self, ctx: ConnectorContext, device: Device, key: str, state: AlarmState, status: str
    ) -> None:
        assert state.last is not None and state.last_time is not None
        condition = state.last
        suffix = "alarm" if status == "alarm" else f"severity-{condition.severity}"
        event = self._event(
            device,
            key,
            ALARM_CATEGORIES[device.type],
            condition.severity,
            state.last_time,
            status,
            f"{key}:{state.seq}:{suffix}",
            condition.detail,
        )
        await ctx.publish(event)
        ctx.count("alarms" if status == "alarm" else "alarms_worsened")
        state.published, state.severity = True, condition.severity
        await self._save(ctx)

    async def _publish_recovery(self, ctx: ConnectorContext, device: Device, key: str, state: AlarmState) -> None:
        assert state.last is not None and state.last_time is not None
        event = self._event(
            device,
            key,
            ALARM_CATEGORIES[device.type],
            Severity.INFO,
            state.last_time,
            "recovered",
            f"{key}:{state.seq}:recovered",
            state.last.detail,
        )
        await ctx.publish(event)
        ctx.count("recoveries")
        state.published, state.severity = False, None
        await self._save(ctx)

    async def _publish_offline(self, ctx: ConnectorContext, device: Device, *, online: bool) -> None:
        key = f"{device.device_id}:{Category.DEVICE_OFFLINE}"
        state = self.alarms.setdefault(key, AlarmState())
        if not online:
            state.seq += 1
        heartbeat_s = device.heartbeat_s or self.settings.default_heartbeat_s
        status, severity = ("recovered", Severity.INFO) if online else ("offline", Severity.LOW)
        event = self._event(
            device,
            key,
            Category.DEVICE_OFFLINE,
            severity,
            utcnow(),
            status,
            f"{key}:{state.seq}:{status}",
            {"heartbeat_s": heartbeat_s},
        )
        await ctx.publish(event)
        ctx.count("devices_back_online" if online else "devices_offline")
        state.active = state.published = not online
        await self._save(ctx)

    async def _publish_detection(self, ctx: ConnectorContext, device: Device, reading: VideoReading) -> None:
        if reading.confidence < self.settings.thresholds.video_min_confidence:
            ctx.count("video_below_confidence")
            return
        time = reading.ts or utcnow()
        category = VIDEO_CATEGORIES[reading.event]
        sensitive = reading.event in SENSITIVE_VIDEO_EVENTS
        key = f"{device.device_id}:{category}"
        event = self._event(
            device,
            key,
            category,
            Severity.HIGH if sensitive else Severity.MEDIUM,
            time,
            "detected",
            f"{key}:{reading.msg_id or time.isoformat()}",
            {"event": reading.event, "confidence": reading.confidence},
        )
        if sensitive:
            event.payload["sensitive"] = True
            if reading.subject_id or reading.subject_name:
                event.reporter = Reporter(account=reading.subject_id, name=reading.subject_name)
        if reading.snapshot_url:
            event.attachments.append(Attachment(url=reading.snapshot_url, media_type="image/jpeg"))
        await ctx.publish(event)
        ctx.count("video_detections")

    def _event(
        self,
        device: Device,
        key: str,
        category: Category,
        severity: Severity,
        time: datetime,
        status: str,
        source_event_id: str,
        reading: dict[str, Any],
    ) -> Event:
        return Event(
            source=self.source,
            source_event_id=source_event_id,
            category=category,
            severity=severity,
            time=time,
            location=device.location,
            address=device.address,
            device_id=device.device_id,
            status=status,
            payload={"alarm_key": key, "device_type": str(device.type), "owner": device.owner, "reading": reading},
        )

    # --- durable state --------------------------------------------------------------------------

    async def _save(self, ctx: ConnectorContext) -> None:
        snapshot = {key: state.snapshot() for key, state in self.alarms.items() if state.seq}
        await ctx.state.put(STATE_KEY, orjson.dumps(snapshot))

    async def _restore(self, ctx: ConnectorContext) -> None:
        saved = await ctx.state.get(STATE_KEY)
        for key, values in (orjson.loads(saved) if saved else {}).items():
            self.alarms[key] = AlarmState(
                active=values["published"],
                published=values["published"],
                seq=values["seq"],
                severity=values["severity"],
            )
