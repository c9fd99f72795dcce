"""Settings of the ``recycling`` connector (``[plugins.recycling]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hub.backoff import BackoffSettings
from hub.connector_kit import outside_the_unified_namespace

SAMPLE_STATIONS = Path(__file__).with_name("sample_stations.csv")


class SimulatorSettings(BaseModel):
    """The station-fleet simulator used by ``cityhub demo`` and the tests."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(36, description="Seed of the simulated traffic (same seed, same messages).")
    residents: int = Field(321, ge=1, description="Simulated residents dropping off waste (ids R00001...).")
    interval_s: float = Field(3.0, gt=0, description="Pause between two simulated rounds, seconds.")
    client_id: str = Field("cityhub-recycling-simulator", description="MQTT client id of the simulator.")


class RecyclingSettings(BaseModel):
    """Recycling-station telemetry over MQTT: stations, full-bin thresholds, daily aggregates."""

    model_config = ConfigDict(extra="forbid")

    broker_url: str | None = Field(
        None,
        description="mqtt://[user:password@]host[:port] of the stations' MQTT 3.1.1 broker. Empty: the MQTT "
        "listener of the hub's embedded nats-server.",
    )
    client_id: str = Field(
        "cityhub-recycling", description="MQTT client id; the broker keeps this id's session while the hub is away."
    )
    topic_prefix: Annotated[str, AfterValidator(outside_the_unified_namespace)] = Field(
        "recycling", description="Stations publish to <prefix>/<station_id>/telemetry|drop|status."
    )
    stations_path: Path = Field(
        SAMPLE_STATIONS, description="Station registry, CSV or JSON (see docs/connectors/recycling.md)."
    )
    full_pct: float = Field(
        90.0, gt=0, le=100, description="A bin at or above this fill level is full (one bin_full event)."
    )
    rearm_pct: float = Field(
        60.0, ge=0, lt=100, description="A full bin counts as emptied, and can be full again, only below this level."
    )
    timezone: str = Field("Asia/Shanghai", description="IANA zone whose calendar day the daily aggregates follow.")
    keep_days: int = Field(7, ge=1, description="Daily aggregates kept in the connector state and health.")
    default_heartbeat_s: float = Field(
        300.0, gt=0, description="Telemetry interval of stations whose row gives none, seconds."
    )
    offline_grace: float = Field(
        1.5, ge=1, description="A station is offline after its interval × this factor of silence."
    )
    check_interval_s: float = Field(5.0, gt=0, description="How often station silence is checked, seconds.")
    backoff: BackoffSettings = Field(default_factory=BackoffSettings, description="Reconnect backoff.")
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings, description="Demo/test simulator.")

    @model_validator(mode="after")
    def _rearm_below_full(self) -> RecyclingSettings:
        if self.rearm_pct >= self.full_pct:
            raise ValueError(f"rearm_pct ({self.rearm_pct}) must be below full_pct ({self.full_pct})")
        return self
