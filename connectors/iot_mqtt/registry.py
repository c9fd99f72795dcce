"""The device registry: which device is what, where it is installed and who owns it (CSV or JSON import)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from connectors._registry import load_records
from connectors.iot_mqtt.devices import DeviceType
from hub.models import CoordSystem, Location


class Device(BaseModel):
    """One registry row."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-:]+$")
    type: DeviceType
    address: str = Field(max_length=512)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    crs: CoordSystem = CoordSystem.WGS84
    owner: str = Field(description="Organisation responsible for the device (property company, utility).")
    heartbeat_s: float | None = Field(
        None, gt=0, description="Expected heartbeat interval; the connector default if empty."
    )

    @property
    def location(self) -> Location:
        return Location(lon=self.lon, lat=self.lat, crs=self.crs)


def load_registry(path: Path) -> dict[str, Device]:
    """Every device of the registry by id; :class:`hub.errors.ConfigError` lists every bad row."""
    return load_records(path, Device, "device_id")
