"""Settings of the ``gridworker`` connector (``[plugins.gridworker]``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

SAMPLE_ROSTER = Path(__file__).with_name("sample_roster.csv")


class SimulatorSettings(BaseModel):
    """The grid-worker app simulator: one WebSocket client per worker (``cityhub demo`` and tests)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(3102, description="Seed of the workers' delays and movements.")
    workers: list[str] | None = Field(
        None, description="Worker ids to simulate; every worker of the roster when empty."
    )
    unresponsive: list[str] = Field(
        default_factory=list, description="Workers whose app is on but who never accept (escalation demo)."
    )
    accept_delay_s: tuple[float, float] = Field(
        (0.1, 0.5), description="Seeded delay range before accepting an order, seconds."
    )
    work_delay_s: tuple[float, float] = Field(
        (0.1, 0.5), description="Seeded delay range of each later step (on site, resolved), seconds."
    )
    location_interval_s: float = Field(5.0, gt=0, description="How often each app reports its location, seconds.")


class GridworkerSettings(BaseModel):
    """Grid-worker app: dispatch orders pushed over WebSocket, status and locations back, escalation timers."""

    model_config = ConfigDict(extra="forbid")

    listen_host: str = Field("127.0.0.1", description="Interface of the workers' WebSocket endpoint.")
    listen_port: int = Field(
        8720, ge=0, le=65535, description="Port of the workers' WebSocket endpoint (ws://host:port/)."
    )
    secret: SecretStr = Field(
        description="Secret that worker tokens are derived from (HMAC-SHA256 of the worker id); from ${ENV}."
    )
    roster_path: Path = Field(SAMPLE_ROSTER, description="Cell roster, CSV or JSON: cell_id, primary, backup, leader.")
    fallback_leader: str = Field(
        description="Worker who gets orders for cells missing from the roster (the street's duty leader)."
    )
    accept_timeout_s: float = Field(
        300.0, gt=0, description="Time the primary worker has to accept before the backup gets the order, seconds."
    )
    backup_timeout_s: float = Field(
        300.0, gt=0, description="Time the backup worker has to accept before the grid leader gets it, seconds."
    )
    check_interval_s: float = Field(1.0, gt=0, description="How often acceptance deadlines are checked, seconds.")
    location_min_interval_s: float = Field(
        10.0, ge=0, description="A worker's location is stored at most this often, seconds."
    )
    max_message_bytes: int = Field(65_536, gt=0, description="Larger WebSocket messages close the connection (1009).")
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings, description="Demo/test simulator.")
