"""Settings of the ``iot_mqtt`` connector (``[plugins.iot_mqtt]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hub.backoff import BackoffSettings
from hub.connector_kit import outside_the_unified_namespace

SAMPLE_REGISTRY = Path(__file__).with_name("sample_devices.csv")


class Thresholds(BaseModel):
    """Alarm thresholds in each device type's own unit. Each alarm clears only below its ``*_clear`` value
    (hysteresis), so a reading hovering at the threshold does not alarm and recover on every message."""

    model_config = ConfigDict(extra="forbid")

    gas_alarm_lel_pct: float = Field(
        20.0, gt=0, le=100, description="Combustible gas alarm, % of the lower explosive limit."
    )
    gas_critical_lel_pct: float = Field(
        50.0, gt=0, le=100, description="Gas concentration that makes the alarm critical, %LEL."
    )
    gas_clear_lel_pct: float = Field(10.0, ge=0, le=100, description="Gas alarm clears below this, %LEL.")
    thermal_alarm_c: float = Field(
        60.0, description="E-bike shed thermal imaging: hottest pixel that raises a fire warning, °C."
    )
    thermal_clear_c: float = Field(45.0, description="Thermal warning clears below this, °C.")
    manhole_tilt_deg: float = Field(15.0, gt=0, le=90, description="Manhole cover tilt that raises an alarm, degrees.")
    manhole_clear_deg: float = Field(5.0, ge=0, le=90, description="Manhole alarm clears below this tilt, degrees.")
    hydrant_low_mpa: float = Field(0.14, ge=0, description="Fire hydrant static pressure below this alarms, MPa.")
    hydrant_high_mpa: float = Field(1.2, gt=0, description="Fire hydrant pressure above this alarms (burst risk), MPa.")
    hydrant_band_mpa: float = Field(0.02, ge=0, description="Hysteresis band of the hydrant pressure alarm, MPa.")
    elevator_critical_codes: list[str] = Field(
        default_factory=lambda: ["E01", "E03"],
        description="Elevator fault codes that are critical (E01 passenger trapped, E03 overspeed); others are high.",
    )
    video_min_confidence: float = Field(
        0.6, ge=0, le=1, description="Video-AI detections below this confidence are dropped."
    )


class SimulatorSettings(BaseModel):
    """The device-fleet simulator used by ``cityhub demo`` and the tests."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(12345, description="Seed of the simulated traffic (same seed, same messages).")
    interval_s: float = Field(10.0, gt=0, description="Pause between two rounds of the demo scenario, seconds.")
    client_id: str = Field("cityhub-iot-simulator", description="MQTT client id of the simulator.")


class IotMqttSettings(BaseModel):
    """MQTT 3.1.1 IoT alarms: device registry, topics, thresholds, flapping and offline detection."""

    model_config = ConfigDict(extra="forbid")

    broker_url: str | None = Field(
        None,
        description="mqtt://[user:password@]host[:port] of any MQTT 3.1.1 broker. Empty: the MQTT listener of the "
        "hub's embedded nats-server.",
    )
    client_id: str = Field(
        "cityhub-iot", description="MQTT client id; the broker keeps this id's session while the hub is away."
    )
    topic_prefix: Annotated[str, AfterValidator(outside_the_unified_namespace)] = Field(
        "cityhub/raw/iot",
        description=(
            "Devices publish to <prefix>/<device_id>/data and <prefix>/<device_id>/heartbeat. Inside cityhub/ it "
            "must be under cityhub/raw/: the embedded server maps MQTT topics onto NATS subjects, and cityhub.> "
            "outside cityhub.raw.> holds CloudEvents only."
        ),
    )
    registry_path: Path = Field(
        SAMPLE_REGISTRY, description="Device registry, CSV or JSON (see docs/connectors/iot_mqtt.md)."
    )
    thresholds: Thresholds = Field(default_factory=Thresholds, description="Alarm thresholds per device type.")
    flap_window_s: float = Field(
        300.0, gt=0, description="Window in which alarm/recovery transitions are counted, seconds."
    )
    flap_max_transitions: int = Field(
        4,
        ge=2,
        description="More transitions than this within the window: the alarm is flapping and further transitions "
        "are held back until it is stable for a whole window.",
    )
    default_heartbeat_s: float = Field(
        300.0, gt=0, description="Heartbeat interval of devices whose registry row gives none, seconds."
    )
    offline_grace: float = Field(
        1.5, ge=1, description="A device is offline after heartbeat interval × this factor of silence."
    )
    check_interval_s: float = Field(
        5.0, gt=0, description="How often offline and flapping states are re-checked, seconds."
    )
    backoff: BackoffSettings = Field(default_factory=BackoffSettings, description="Reconnect/republish backoff.")
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings, description="Demo/test simulator.")
