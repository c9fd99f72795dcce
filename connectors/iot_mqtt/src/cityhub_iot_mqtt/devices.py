"""Device types, the readings each one sends (with units), and how a reading becomes an alarm state.

Every device type has a reading model (pydantic, unknown fields rejected) and an ``assess`` function that
turns a reading into a :class:`Condition`: is the alarm active, with which category and severity, and which
measured value and threshold explain it. ``assess`` receives whether the alarm is active now, so each type
applies its own hysteresis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cityhub_iot_mqtt.settings import Thresholds
from hub.models import Category, Severity


class DeviceType(StrEnum):
    GAS = "gas"
    WATER_IMMERSION = "water_immersion"
    EBIKE_THERMAL = "ebike_thermal"
    MANHOLE_TILT = "manhole_tilt"
    HYDRANT_PRESSURE = "hydrant_pressure"
    ELEVATOR = "elevator"
    DOOR_MAGNET = "door_magnet"
    VIDEO_AI = "video_ai"


class Reading(BaseModel):
    """Fields every data message may carry."""

    model_config = ConfigDict(extra="forbid")

    msg_id: str | None = Field(None, max_length=128, description="Device-side message id, if the device has one.")
    ts: datetime | None = Field(None, description="Measurement time with offset; receipt time when absent.")


class GasReading(Reading):
    lel_pct: float = Field(ge=0, le=100, description="Combustible gas concentration, % of the lower explosive limit.")


class ImmersionReading(Reading):
    immersed: bool


class ThermalReading(Reading):
    max_temp_c: float = Field(ge=-40, le=1500, description="Hottest pixel of the thermal image, °C.")
    fire: bool = Field(False, description="The camera's own fire/flame flag.")


class ManholeReading(Reading):
    tilt_deg: float = Field(ge=0, le=180, description="Cover tilt from horizontal, degrees.")
    displaced: bool = Field(False, description="Cover lifted off its seat.")


class HydrantReading(Reading):
    pressure_mpa: float = Field(ge=0, le=10, description="Static water pressure, MPa.")


class ElevatorReading(Reading):
    fault_code: str = Field(max_length=16, description="Controller fault code; '0' or '' means normal.")


class DoorReading(Reading):
    open: bool
    armed: bool = Field(True, description="Whether the door is supervised now (e.g. a fire door, a pump room).")


class VideoReading(Reading):
    event: Literal["high_altitude_throwing", "stranger", "key_person"]
    confidence: float = Field(ge=0, le=1)
    snapshot_url: str | None = Field(None, max_length=1024)
    subject_id: str | None = Field(None, max_length=128, description="Watch-list id of a recognised person.")
    subject_name: str | None = Field(None, max_length=128, description="Name on the watch list (personal data).")


@dataclass(frozen=True)
class Condition:
    """What one reading says about a device's alarm."""

    active: bool
    severity: Severity = Severity.MEDIUM
    detail: dict[str, Any] = field(default_factory=dict)


def _gas(r: GasReading, t: Thresholds, active: bool) -> Condition:
    limit = t.gas_clear_lel_pct if active else t.gas_alarm_lel_pct
    is_on = r.lel_pct >= limit if not active else r.lel_pct > limit
    severity = Severity.CRITICAL if r.lel_pct >= t.gas_critical_lel_pct else Severity.HIGH
    return Condition(is_on, severity, {"lel_pct": r.lel_pct, "unit": "%LEL", "threshold": t.gas_alarm_lel_pct})


def _immersion(r: ImmersionReading, t: Thresholds, active: bool) -> Condition:
    return Condition(r.immersed, Severity.HIGH, {"immersed": r.immersed})


def _thermal(r: ThermalReading, t: Thresholds, active: bool) -> Condition:
    hot = r.max_temp_c > t.thermal_clear_c if active else r.max_temp_c >= t.thermal_alarm_c
    severity = Severity.CRITICAL if r.fire else Severity.HIGH
    detail = {"max_temp_c": r.max_temp_c, "unit": "°C", "fire": r.fire, "threshold": t.thermal_alarm_c}
    return Condition(hot or r.fire, severity, detail)


def _manhole(r: ManholeReading, t: Thresholds, active: bool) -> Condition:
    tilted = r.tilt_deg > t.manhole_clear_deg if active else r.tilt_deg >= t.manhole_tilt_deg
    detail = {"tilt_deg": r.tilt_deg, "unit": "°", "displaced": r.displaced, "threshold": t.manhole_tilt_deg}
    return Condition(tilted or r.displaced, Severity.HIGH, detail)


def _hydrant(r: HydrantReading, t: Thresholds, active: bool) -> Condition:
    band = t.hydrant_band_mpa if active else 0.0
    low = r.pressure_mpa < t.hydrant_low_mpa + band
    high = r.pressure_mpa > t.hydrant_high_mpa - band
    detail = {"pressure_mpa": r.pressure_mpa, "unit": "MPa", "low": t.hydrant_low_mpa, "high": t.hydrant_high_mpa}
    return Condition(low or high, Severity.MEDIUM, detail)


def _elevator(r: ElevatorReading, t: Thresholds, active: bool) -> Condition:
    code = r.fault_code.strip().upper()
    faulty = code not in ("", "0")
    severity = Severity.CRITICAL if code in t.elevator_critical_codes else Severity.HIGH
    return Condition(faulty, severity, {"fault_code": code})


def _door(r: DoorReading, t: Thresholds, active: bool) -> Condition:
    return Condition(r.open and r.armed, Severity.LOW, {"open": r.open, "armed": r.armed})


READING_MODELS: dict[DeviceType, type[Reading]] = {
    DeviceType.GAS: GasReading,
    DeviceType.WATER_IMMERSION: ImmersionReading,
    DeviceType.EBIKE_THERMAL: ThermalReading,
    DeviceType.MANHOLE_TILT: ManholeReading,
    DeviceType.HYDRANT_PRESSURE: HydrantReading,
    DeviceType.ELEVATOR: ElevatorReading,
    DeviceType.DOOR_MAGNET: DoorReading,
    DeviceType.VIDEO_AI: VideoReading,
}

# Stateful types: alarm on entry, recovery on exit. Video AI is event-only (each detection stands alone).
ASSESSORS: dict[DeviceType, Callable[[Any, Thresholds, bool], Condition]] = {
    DeviceType.GAS: _gas,
    DeviceType.WATER_IMMERSION: _immersion,
    DeviceType.EBIKE_THERMAL: _thermal,
    DeviceType.MANHOLE_TILT: _manhole,
    DeviceType.HYDRANT_PRESSURE: _hydrant,
    DeviceType.ELEVATOR: _elevator,
    DeviceType.DOOR_MAGNET: _door,
}

ALARM_CATEGORIES: dict[DeviceType, Category] = {
    DeviceType.GAS: Category.GAS_LEAK,
    DeviceType.WATER_IMMERSION: Category.WATER_LEAK,
    DeviceType.EBIKE_THERMAL: Category.FIRE,
    DeviceType.MANHOLE_TILT: Category.MANHOLE_COVER,
    DeviceType.HYDRANT_PRESSURE: Category.HYDRANT_PRESSURE,
    DeviceType.ELEVATOR: Category.ELEVATOR_FAULT,
    DeviceType.DOOR_MAGNET: Category.DOOR_ALARM,
}

VIDEO_CATEGORIES: dict[str, Category] = {
    "high_altitude_throwing": Category.HIGH_ALTITUDE_THROWING,
    "stranger": Category.PERSON_ALERT,
    "key_person": Category.PERSON_ALERT,
}
SENSITIVE_VIDEO_EVENTS = frozenset({"stranger", "key_person"})
