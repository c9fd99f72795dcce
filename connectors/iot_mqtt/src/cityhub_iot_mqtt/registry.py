"""The device registry: which device is what, where it is installed and who owns it (CSV or JSON import)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cityhub_iot_mqtt.devices import DeviceType
from hub.connector_kit import SitedRecord, load_records


class Device(SitedRecord):
    """One registry row."""

    device_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-:]+$")
    type: DeviceType
    owner: str = Field(description="Organisation responsible for the device (property company, utility).")
    heartbeat_s: float | None = Field(
        None, gt=0, description="Expected heartbeat interval; the connector default if empty."
    )


def load_registry(path: Path) -> dict[str, Device]:
    """Every device of the registry by id; :class:`hub.errors.ConfigError` lists every bad row."""
    return load_records(path, Device, "device_id")
