"""The device registry: which device is what, where it is installed and who owns it (CSV or JSON import)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.iot_mqtt.devices import DeviceType
from hub.errors import ConfigError, ConfigIssue
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
    heartbeat_s: float | None = Field(None, gt=0, description="Expected heartbeat interval; the connector default if empty.")

    @property
    def location(self) -> Location:
        return Location(lon=self.lon, lat=self.lat, crs=self.crs)


def _rows(path: Path) -> list[tuple[int | None, dict[str, object]]]:
    """(line, row) pairs; CSV lines are real file lines, JSON rows have no line."""
    if path.suffix.lower() == ".json":
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise ConfigError(f"{path}: expected a JSON array of device objects")
        return [(None, record) for record in records]
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [(reader.line_num, {key: value for key, value in row.items() if value not in ("", None)}) for row in reader]


def load_registry(path: Path) -> dict[str, Device]:
    """Read and validate the whole registry; raise :class:`ConfigError` listing every bad row with its line and key."""
    try:
        rows = _rows(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"device registry {path}: {error}") from None
    devices: dict[str, Device] = {}
    issues: list[ConfigIssue] = []
    for index, (line, row) in enumerate(rows):
        where = line or index + 1
        try:
            device = Device.model_validate(row)
        except ValidationError as error:
            issues.extend(
                ConfigIssue(str(path), where, ".".join(map(str, problem["loc"])) or "row", problem["msg"])
                for problem in error.errors()
            )
            continue
        if device.device_id in devices:
            issues.append(ConfigIssue(str(path), where, "device_id", f"duplicate device id {device.device_id!r}"))
        devices[device.device_id] = device
    if issues:
        raise ConfigError(f"device registry {path} has {len(issues)} problem(s): " + "; ".join(map(str, issues)), issues)
    return devices
