"""Registry imports shared by the connectors (devices, stations, elders, grid rosters): a CSV or JSON file of
records, each validated by a pydantic model, every bad row reported with its file, line and key."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.errors import ConfigError, ConfigIssue, validation_problems
from hub.models import CoordSystem, Location

RecordT = TypeVar("RecordT", bound=BaseModel)


class SitedRecord(BaseModel):
    """A registry row with a fixed place (a device, a station, an elder's home): address and coordinates."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(max_length=512)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    crs: CoordSystem = CoordSystem.WGS84

    @property
    def location(self) -> Location:
        return Location(lon=self.lon, lat=self.lat, crs=self.crs)


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line or position, row) pairs: CSV rows carry their file line, JSON array items their position."""
    if path.suffix.lower() == ".json":
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise ConfigError(f"{path}: expected a JSON array of objects")
        return list(enumerate(records, start=1))
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [
            (reader.line_num, {key: value for key, value in row.items() if value not in ("", None)}) for row in reader
        ]


def load_records(path: Path, model: type[RecordT], key: str) -> dict[str, RecordT]:
    """Read and validate every record, keyed by field ``key``; raise :class:`ConfigError` listing every bad
    row (file, line, key) and every duplicate key at once."""
    try:
        rows = _rows(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: {error}") from None
    records: dict[str, RecordT] = {}
    issues: list[ConfigIssue] = []
    for line, row in rows:
        try:
            record = model.model_validate(row)
        except ValidationError as error:
            issues += [
                ConfigIssue(str(path), line, where, message) for where, message in validation_problems(error, "row")
            ]
            continue
        record_key = str(getattr(record, key))
        if record_key in records:
            issues.append(ConfigIssue(str(path), line, key, f"duplicate {key} {record_key!r}"))
        records[record_key] = record
    if issues:
        raise ConfigError(f"{path} has {len(issues)} problem(s): " + "; ".join(map(str, issues)), issues)
    return records
