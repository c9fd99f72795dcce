"""Settings of the citizen-report connector: ``[plugins.citizen_report]`` in cityhub.toml."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from hub.connector_kit import ListenSettings
from hub.models import Category, Severity

# The mini-program's report types (the buttons a citizen taps) → CityHub categories.
DEFAULT_REPORT_CATEGORIES: dict[str, Category] = {
    "gas": Category.GAS_LEAK,
    "fire": Category.FIRE,
    "smoke": Category.SMOKE,
    "water": Category.WATER_LEAK,
    "flooding": Category.FLOODING,
    "manhole": Category.MANHOLE_COVER,
    "road": Category.ROAD_DAMAGE,
    "light": Category.STREET_LIGHT,
    "garbage": Category.SANITATION,
    "parking": Category.ILLEGAL_PARKING,
    "noise": Category.NOISE,
    "tree": Category.TREE,
    "other": Category.OTHER,
}


class RateLimitSettings(BaseModel):
    """At most ``reports`` per reporter in any ``window_s`` seconds; more get HTTP 429 with Retry-After."""

    model_config = ConfigDict(extra="forbid")

    reports: int = Field(5, ge=1, description="Reports one reporter may send within the window.")
    window_s: float = Field(60.0, gt=0, description="Length of the sliding window in seconds.")


class CitizenReportSettings(BaseModel):
    """``[plugins.citizen_report]``: the HTTP intake of the phone mini-program's one-tap reports."""

    model_config = ConfigDict(extra="forbid")

    listen: ListenSettings = Field(default_factory=lambda: ListenSettings(port=8346), description="Where it listens.")
    path: str = Field("/reports", description="URL path reports are posted to (multipart or JSON).")
    public_base_url: str | None = Field(
        None, description="Base URL under which stored photos are reachable; default: the listen address."
    )
    photo_dir: Path = Field(
        Path("citizen_report/photos"),
        description="Folder photos are stored in, by sha256; relative to the hub's data_dir.",
    )
    max_photo_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Larger photos get 413.")
    photo_types: list[str] = Field(
        default_factory=lambda: ["image/jpeg", "image/png", "image/webp"],
        description="Accepted photo media types (checked against the file's magic bytes); others get 415.",
    )
    max_text_chars: int = Field(2000, ge=1, le=8192, description="Longest report text.")
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings, description="Per-reporter rate limit.")
    categories: dict[str, Category] = Field(
        default_factory=lambda: dict(DEFAULT_REPORT_CATEGORIES),
        description="The mini-program's report types → CityHub category; other types get 422 and a DLQ entry.",
    )
    default_type: str = Field("other", description="Report type assumed when the report names none.")
    severity: Severity = Field(Severity.LOW, description="Severity of citizen reports (rules may raise it).")
    reject_outside_area: bool = Field(
        False,
        description=(
            "Refuse a report whose location is in no cell of the hub's [geo] layers with 422 saying so (the "
            "mini-program shows it). Off: it reaches the hub and goes to triage (no_cell)."
        ),
    )
    dlq_max_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Refused bodies up to this size go to the DLQ verbatim; larger ones as a summary.",
    )
