"""Settings of the 12345 citizen-hotline connector: ``[plugins.hotline12345]`` in cityhub.toml."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hub.backoff import BackoffSettings
from hub.connector_kit import ListenSettings, RetrySettings
from hub.models import Category, CoordSystem, Severity

# The 12345 classification names most Chinese hotlines use for the cases a street centre handles.
DEFAULT_ORDER_CATEGORIES: dict[str, Category] = {
    "燃气泄漏": Category.GAS_LEAK,
    "火灾隐患": Category.FIRE,
    "消防安全": Category.FIRE,
    "供水漏水": Category.WATER_LEAK,
    "积水内涝": Category.FLOODING,
    "井盖缺失": Category.MANHOLE_COVER,
    "电梯故障": Category.ELEVATOR_FAULT,
    "噪音扰民": Category.NOISE,
    "道路破损": Category.ROAD_DAMAGE,
    "路灯故障": Category.STREET_LIGHT,
    "环境卫生": Category.SANITATION,
    "垃圾清运": Category.SANITATION,
    "违章停车": Category.ILLEGAL_PARKING,
    "树木绿化": Category.TREE,
    "环境污染": Category.ENVIRONMENT,
    "投诉": Category.COMPLAINT,
    "其他": Category.OTHER,
}


class Open311Settings(BaseModel):
    """The Open311 GeoReport v2 endpoint polled for service requests."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Poll the Open311 endpoint.")
    base_url: str = Field(
        "http://127.0.0.1:8311/open311/v2",
        description="Endpoint root; services.json and requests.json are fetched below it.",
    )
    jurisdiction_id: str | None = Field(None, description="Sent as jurisdiction_id when the server hosts several.")
    api_key: SecretStr | None = Field(None, description="Sent as api_key when the server requires one.")
    poll_interval_s: float = Field(30.0, gt=0, description="Pause between polls once caught up.")
    page_size: int = Field(100, ge=1, le=1000, description="Requests per page (page_size/page extension).")
    max_page_size: int = Field(
        1000, ge=1, description="The server's largest page_size; pages grow up to it when one timestamp fills a page."
    )
    updated_after_param: str = Field(
        "updated_after",
        description="Query parameter for incremental polling by updated time (Chicago/SeeClickFix extension).",
    )
    overlap_s: float = Field(
        1.0,
        ge=0,
        description="Re-read this much before the cursor so requests updated in the same second are not missed.",
    )
    service_categories: dict[str, Category] = Field(
        default_factory=dict, description="service_code → CityHub category; requests with other codes go to the DLQ."
    )
    service_severities: dict[str, Severity] = Field(
        default_factory=dict, description="service_code → severity when it differs from `severity`."
    )
    severity: Severity = Field(Severity.LOW, description="Severity of Open311 requests not in service_severities.")
    crs: CoordSystem = Field(CoordSystem.WGS84, description="Coordinate system of lat/long (GeoReport v2 is WGS-84).")
    discovery_interval_s: float = Field(3600.0, gt=0, description="How often services.json is read again.")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per request; a slower answer counts as a failure.")
    backoff: BackoffSettings = Field(default_factory=BackoffSettings, description="Pauses while the server is down.")


class WebhookSettings(BaseModel):
    """The signed work-order (工单) webhook the hotline system posts to."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve the webhook.")
    listen: ListenSettings = Field(default_factory=lambda: ListenSettings(port=8345), description="Where it listens.")
    path: str = Field("/12345/orders", description="URL path of the webhook.")
    secret: SecretStr = Field(description="Shared HMAC secret; use ${ENV} substitution in cityhub.toml.")
    window_s: float = Field(300.0, gt=0, description="Accepted clock difference of the signature timestamp.")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="Larger bodies get 413 and a DLQ entry.")
    order_categories: dict[str, Category] = Field(
        default_factory=lambda: dict(DEFAULT_ORDER_CATEGORIES),
        description="The hotline's category names → CityHub category; other names get 422 and a DLQ entry.",
    )
    severity: Severity = Field(Severity.MEDIUM, description="Severity of work orders without an urgent flag.")
    urgent_severity: Severity = Field(Severity.HIGH, description="Severity of work orders flagged urgent (紧急).")


class OutboundSettings(BaseModel):
    """Where accept / re-dispatch / resolve / evaluation are posted back to the hotline system."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Deliver outbound feedback.")
    base_url: str = Field(
        "http://127.0.0.1:8311/12345/feedback", description="Feedback API root; the action is appended (…/accept)."
    )
    secret: SecretStr = Field(description="HMAC secret the hotline system verifies our requests with.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Backoff while the hotline is down.")


class Hotline12345Settings(BaseModel):
    """``[plugins.hotline12345]``: the Open311 poller, the 工单 webhook and the feedback channel."""

    model_config = ConfigDict(extra="forbid")

    open311: Open311Settings = Field(default_factory=Open311Settings, description="Open311 GeoReport v2 polling.")
    webhook: WebhookSettings = Field(description="Signed work-order webhook.")
    outbound: OutboundSettings = Field(description="Feedback posted back to the hotline system.")
