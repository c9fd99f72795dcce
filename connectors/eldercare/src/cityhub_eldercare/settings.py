"""Settings of the ``eldercare`` connector (``[plugins.eldercare]``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hub.backoff import BackoffSettings

SAMPLE_ELDERS = Path(__file__).with_name("sample_elders.csv")


class VitalLimits(BaseModel):
    """Vital-sign limits; a reading outside them is what the responder is told about."""

    model_config = ConfigDict(extra="forbid")

    heart_rate_bpm: tuple[float, float] = Field((40, 130), description="Normal resting heart rate range, beats/min.")
    spo2_pct_min: float = Field(90, ge=0, le=100, description="Blood oxygen saturation below this is abnormal, %.")
    systolic_mmhg: tuple[float, float] = Field((90, 180), description="Normal systolic blood pressure range, mmHg.")
    temperature_c: tuple[float, float] = Field((35.0, 38.5), description="Normal body temperature range, °C.")
    critical_spo2_pct: float = Field(85, ge=0, le=100, description="SpO2 below this makes the alert critical, %.")


class SimulatorSettings(BaseModel):
    """The eldercare platform simulator (``cityhub demo`` and tests)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(400, description="Seed of the simulated alerts and visit outcomes.")
    listen_port: int = Field(8711, ge=0, le=65535, description="Port of the platform's visit-order API.")
    interval_s: float = Field(5.0, gt=0, description="Pause between two simulated alerts, seconds.")
    outcome_delay_s: tuple[float, float] = Field(
        (0.2, 1.0), description="Seeded delay range before each visit outcome, seconds."
    )


class EldercareSettings(BaseModel):
    """Eldercare platform: signed alert webhook in, visit orders out, visit outcomes back."""

    model_config = ConfigDict(extra="forbid")

    listen_host: str = Field("127.0.0.1", description="Interface the alert webhook listens on.")
    listen_port: int = Field(
        8710, ge=0, le=65535, description="Port of the alert webhook (POST /alerts, /visit-outcomes)."
    )
    secret: SecretStr = Field(
        description="Shared HMAC secret of both directions; set it from ${ENV}, never in the file."
    )
    signature_tolerance_s: float = Field(300, gt=0, description="Oldest accepted signature timestamp, seconds.")
    max_body_bytes: int = Field(65_536, gt=0, description="Larger webhook bodies are refused with 413.")
    elders_path: Path = Field(
        SAMPLE_ELDERS, description="Elder registry, CSV or JSON (see docs/connectors/eldercare.md)."
    )
    platform_url: str = Field(
        "http://127.0.0.1:8711", description="Base URL of the platform's API; visit orders go to <url>/visit-orders."
    )
    request_timeout_s: float = Field(5.0, gt=0, description="Timeout of one visit-order POST, seconds.")
    inactivity_hours: float = Field(
        12.0, gt=0, description="No-activity alerts count only for elders living alone, silent at least this long."
    )
    route_hint: str = Field(
        "gridworker", description="payload.route_hint of every alert: who rules should dispatch to first."
    )
    vitals: VitalLimits = Field(default_factory=VitalLimits, description="Abnormal vital-sign limits.")
    backoff: BackoffSettings = Field(
        default_factory=BackoffSettings, description="Retry backoff of the platform client."
    )
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings, description="Demo/test simulator.")
