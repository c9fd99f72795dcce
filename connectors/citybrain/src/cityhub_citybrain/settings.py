"""Settings of the city-brain connector: ``[plugins.citybrain]`` in cityhub.toml."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hub.connector_kit import ListenSettings, RetrySettings
from hub.geofence import LayerSpec
from hub.models import Category, CoordSystem, Severity

DEFAULT_WARNING_SEVERITIES: dict[str, Severity] = {
    "blue": Severity.LOW,  # 蓝色预警
    "yellow": Severity.MEDIUM,  # 黄色预警
    "orange": Severity.HIGH,  # 橙色预警
    "red": Severity.CRITICAL,  # 红色预警
}


class NorthboundSettings(BaseModel):
    """Which incidents are reported upward, and where."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Report incidents to the city platform.")
    url: str = Field("https://127.0.0.1:8443/api/v1/incidents", description="The city platform's incident intake.")
    secret: SecretStr = Field(description="HMAC secret the city platform verifies our requests with.")
    ca_file: Path | None = Field(
        None, description="CA bundle that signed the platform's certificate (default: system CAs)."
    )
    hub_id: str = Field(
        "cityhub", min_length=1, description="This centre's code, sent with every report (e.g. 510108)."
    )
    min_severity: Severity = Field(Severity.HIGH, description="Report incidents at this severity or above.")
    categories: list[Category] = Field(
        default_factory=list, description="Report only these categories (empty: every category)."
    )
    report_overdue: bool = Field(True, description="Also report open incidents past their escalation deadline.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Backoff while the platform is down.")


class SouthboundSettings(BaseModel):
    """The endpoint the city platform pushes area warnings to, and the grids whose cells they list."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Accept area warnings.")
    listen: ListenSettings = Field(default_factory=lambda: ListenSettings(port=8347), description="Where it listens.")
    path: str = Field("/citybrain/warnings", description="URL path warnings are posted to.")
    secret: SecretStr = Field(description="HMAC secret the city platform signs warnings with.")
    window_s: float = Field(300.0, gt=0, description="Accepted clock difference of the signature timestamp.")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="Larger warnings get 413 and a DLQ entry.")
    crs: CoordSystem = Field(CoordSystem.WGS84, description="Coordinate system of the warning polygons.")
    layers: list[LayerSpec] = Field(
        default_factory=list, description="Grid layers whose cells the warnings list (empty: the hub's [geo] layers)."
    )
    levels: list[str] = Field(
        default_factory=lambda: ["grid"],
        description="The levels of the touched cells a warning lists, one dispatch order each "
        "(empty: every touched cell).",
    )
    severities: dict[str, Severity] = Field(
        default_factory=lambda: dict(DEFAULT_WARNING_SEVERITIES), description="Warning level → event severity."
    )


class CitybrainSettings(BaseModel):
    """``[plugins.citybrain]``: incidents reported up, area warnings in."""

    model_config = ConfigDict(extra="forbid")

    northbound: NorthboundSettings = Field(description="Reporting incidents to the city platform.")
    southbound: SouthboundSettings = Field(description="Area warnings from the city platform.")
