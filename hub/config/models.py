"""``cityhub.toml`` as typed models that map one-to-one onto the file.

The models are the documentation: every field has a description, unknown keys are errors, and
``docs/config.md`` is generated from their JSON Schema (:mod:`hub.config.reference`; a test keeps it in sync).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from hub.geofence import LayerSpec
from hub.incidents import CategoryPolicy, MergePolicy
from hub.models import CategoryName, CoordSystem, Severity
from hub.rules import Rule, RuleSet
from hub.taxonomy import CategoryInfo

# --- Field types -----------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"`` or a number of seconds; anything else is left to pydantic."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if parts and "".join(number + unit for number, unit in parts) == text:
            return timedelta(seconds=sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts))
        raise ValueError(f"{value!r} is not a duration: write e.g. '90s', '15m', '1h30m', '2d' or seconds")
    return value


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive_duration),
    WithJsonSchema({"type": ["string", "number"], "examples": ["90s", "15m", "1h30m", 3600]}),
]
"""A positive duration: ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"`` or a number of seconds."""


def _resolve_against_config(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else Path(base) / value


ConfigPath = Annotated[Path, AfterValidator(_resolve_against_config)]
"""A file path; relative paths are relative to the directory of the config file."""


def _known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as 'Asia/Shanghai'") from None
    return value


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


# --- [nats] ----------------------------------------------------------------------------------------


class TlsConfig(Section):
    """TLS towards the NATS servers."""

    ca: ConfigPath | None = Field(None, description="CA certificate (PEM) that signed the servers' certificates.")
    cert: ConfigPath | None = Field(None, description="Client certificate (PEM), for servers that verify clients.")
    key: ConfigPath | None = Field(None, description="Private key (PEM) of the client certificate.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("set both cert and key for client TLS, or neither")
        return self


class StreamLimits(Section):
    """Retention and limits of one JetStream stream (created or updated on start-up)."""

    retention: Literal["limits", "interest", "workqueue"] = Field(
        "limits",
        description="JetStream retention policy: keep to the limits, while consumers are interested, or until acked.",
    )
    storage: Literal["file", "memory"] = Field("file", description="Where the stream keeps messages.")
    max_age: Duration | None = Field(
        None, description="Drop messages older than this (none: keep by the other limits)."
    )
    max_bytes: int = Field(-1, ge=-1, description="Maximum bytes kept; -1 is unlimited.")
    max_msgs: int = Field(-1, ge=-1, description="Maximum messages kept; -1 is unlimited.")
    replicas: int = Field(1, ge=1, le=5, description="Copies kept in a NATS cluster.")
    duplicate_window: Duration = Field(
        timedelta(minutes=2), description="How long JetStream remembers Nats-Msg-Id values to drop re-publications."
    )


class StreamsConfig(Section):
    """One entry per stream of the subject contract (hub.topology)."""

    ingest: StreamLimits = Field(
        default_factory=lambda: StreamLimits(max_age=timedelta(days=1)), description="cityhub.ingest.> (connectors in)."
    )
    events: StreamLimits = Field(
        default_factory=lambda: StreamLimits(max_age=timedelta(days=7)),
        description="cityhub.events.> (the unified stream).",
    )
    incidents: StreamLimits = Field(
        default_factory=lambda: StreamLimits(max_age=timedelta(days=30)), description="cityhub.incidents.>."
    )
    dispatch: StreamLimits = Field(
        default_factory=lambda: StreamLimits(max_age=timedelta(days=30)),
        description="cityhub.dispatch.> (orders and updates).",
    )
    dlq: StreamLimits = Field(
        default_factory=lambda: StreamLimits(max_age=timedelta(days=14)), description="cityhub.dlq.> (rejected input)."
    )


class BucketsConfig(Section):
    """The JetStream key-value and object buckets the hub keeps its own state in: pipeline snapshots
    (``CITYHUB_PIPELINE``), escalation deadlines (``CITYHUB_ESCALATIONS``) and the active hub's lease
    (``CITYHUB_LEASE``)."""

    replicas: int = Field(1, ge=1, le=5, description="Copies kept in a NATS cluster (3 on a 3-node cluster).")


class EmbeddedNatsConfig(Section):
    """The nats-server the hub starts itself when ``servers`` is empty."""

    store_dir: ConfigPath = Field(Path(".cityhub/nats"), description="JetStream store of the embedded server.")
    port: int | None = Field(None, ge=1, le=65535, description="Client port; none picks a free one.")
    mqtt_port: int | None = Field(
        None, ge=1, le=65535, description="Enable the server's MQTT listener on this port (IoT devices publish there)."
    )


_NATS_URL = re.compile(r"^(nats|tls|ws|wss)://[^\s/]+$")
_USERINFO = re.compile(r"//[^/@\s]+@")  # user:password@ in a URL, hidden in error messages


class NatsConfig(Section):
    """How the hub reaches NATS. Secrets belong in the environment: ``password = "${NATS_PASSWORD}"``."""

    servers: list[str] = Field(
        default_factory=list,
        description="Server URLs (nats://host:4222, tls://...). Empty: start an embedded nats-server with JetStream.",
    )
    name: str = Field("cityhub", description="Client name shown in the server's connection list.")
    user: str | None = Field(None, description="User name for user/password authentication.")
    password: SecretStr | None = Field(None, description="Password for user/password authentication (secret).")
    token: SecretStr | None = Field(None, description="Token authentication (secret).")
    nkey_seed_file: ConfigPath | None = Field(None, description="File holding an NKey seed.")
    creds_file: ConfigPath | None = Field(None, description="Decentralised-auth credentials file (JWT + NKey seed).")
    tls: TlsConfig | None = Field(None, description="TLS settings; needed for tls:// servers with a private CA.")
    connect_timeout: Duration = Field(timedelta(seconds=5), description="Timeout of one connection attempt.")
    initial_connect_wait: Duration = Field(
        timedelta(seconds=30),
        description="How long start-up keeps retrying servers that are not up yet (refused, unreachable, timed out) "
        "before it fails. Rejected credentials or certificates fail at once. Once connected, the hub reconnects "
        "for ever, and replaces a connection the server closes.",
    )
    embedded: EmbeddedNatsConfig = Field(default_factory=EmbeddedNatsConfig, description="The embedded server.")
    streams: StreamsConfig = Field(default_factory=StreamsConfig, description="JetStream retention and limits.")
    buckets: BucketsConfig = Field(default_factory=BucketsConfig, description="The hub's own state buckets.")

    @field_validator("servers")
    @classmethod
    def _urls(cls, servers: list[str]) -> list[str]:
        bad = [_USERINFO.sub("//***@", url) for url in servers if not _NATS_URL.match(url)]
        if bad:
            raise ValueError(f"not a NATS URL: {', '.join(bad)} (write nats://host:port or tls://host:port)")
        return servers

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> NatsConfig:
        if (self.user is None) != (self.password is None):
            raise ValueError("set both user and password, or neither")
        ways = [name for name in ("user", "token", "nkey_seed_file", "creds_file") if getattr(self, name) is not None]
        if len(ways) > 1:
            raise ValueError(f"choose one way to authenticate, not {' and '.join(ways)}")
        return self


# --- [admin], [hooks] ------------------------------------------------------------------------------


class AdminConfig(Section):
    """The admin API (health, metrics, plugins, reload, dry-run) and the dashboard."""

    host: str = Field("127.0.0.1", description="Interface to listen on; 0.0.0.0 exposes it to the network.")
    port: int = Field(8787, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    token: SecretStr | None = Field(
        None,
        description="Bearer token required by every mutating endpoint (secret). Without it those endpoints refuse.",
    )
    max_body_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description=(
            "Largest request body the admin API and dashboard take (a /dry-run event, a close request, a plugin's "
            "route); a larger one is answered 413 without being read: at once when its Content-Length says so, "
            "as soon as a chunked body passes the limit otherwise. The default matches [pipeline].max_message_bytes. "
            "Read when the hub starts."
        ),
    )


class AvailabilityConfig(Section):
    """Active and standby: every ``cityhub run`` with the same config competes for one lease in NATS; the
    holder runs the pipeline, escalation and connectors, the others stand by (docs/operations.md)."""

    lease_ttl: Duration = Field(
        timedelta(seconds=3),
        description="How long the lease outlives its holder's last renewal: a standby takes over this long after "
        "the active stops renewing (crash, pause, partition). The holder renews every third of it.",
    )

    @field_validator("lease_ttl")
    @classmethod
    def _long_enough(cls, ttl: timedelta) -> timedelta:
        if ttl < timedelta(seconds=1):
            raise ValueError("lease_ttl must be at least 1s: the holder renews every third of it")
        return ttl


class HooksConfig(Section):
    """How the plugin host contains misbehaving plugins."""

    timeout: Duration = Field(timedelta(seconds=10), description="Longest a single hook call may take.")
    max_consecutive_failures: int = Field(
        3, ge=1, description="A plugin whose calls fail this many times in a row is disabled until re-enabled."
    )


# --- [geo] -----------------------------------------------------------------------------------------


class GeoLayer(Section):
    """One GeoJSON layer of polygons: the admin hierarchy or an overlay (schools, reservoirs, sites)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Layer name, used in grid paths and rules.")
    path: ConfigPath = Field(description="GeoJSON FeatureCollection of Polygon / MultiPolygon features.")
    crs: CoordSystem = Field(CoordSystem.WGS84, description="Coordinate system of the polygons.")
    kind: Literal["admin", "overlay"] = Field(
        "admin", description="admin: district → street → community → grid → micro-grid; overlay: special zones."
    )
    id_property: str = Field("id", description="Feature property holding the cell id.")
    name_property: str = Field("name", description="Feature property holding the cell name.")
    level_property: str = Field("level", description="Feature property holding the level (district, street, ...).")
    parent_property: str = Field("parent", description="Feature property holding the parent cell id.")
    strict: bool = Field(False, description="Reject polygons that are not OGC-valid instead of accepting them.")

    def spec(self) -> LayerSpec:
        """The geofence's layer spec (:class:`hub.geofence.LayerSpec`)."""
        return LayerSpec(**self.model_dump())


class GeoConfig(Section):
    """Grids for the geofence lookup."""

    layers: list[GeoLayer] = Field(default_factory=list, description="Polygon layers, loaded in order.")
    tolerance_m: float = Field(
        30.0, ge=0, description="A point outside every cell but this close to one resolves to it (GPS jitter)."
    )
    unplaced_route: list[str] = Field(
        default_factory=lambda: ["dept:district_duty"],
        min_length=1,
        description=(
            "Where an event that resolves to no cell is dispatched instead of its rules' routes (a grid worker needs "
            "a cell): route targets as in rules. Its incident is marked triage = no_cell."
        ),
    )

    @field_validator("layers")
    @classmethod
    def _unique_names(cls, layers: list[GeoLayer]) -> list[GeoLayer]:
        names = [layer.name for layer in layers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"layer names must be unique; repeated: {', '.join(repeated)}")
        return layers


# --- [tier] ----------------------------------------------------------------------------------------


class TierParent(Section):
    """The hub one tier up: the city for a district hub, the district for a street hub. The hub never connects
    to it: its nats-server's leafnode link does (``cityhub nats-config`` writes it), and the hub's streams
    source from the parent's JetStream domain, named after its scope."""

    scope: str = Field(
        description="The parent hub's scope: 'city', or the code of the district that holds this street."
    )


class TierConfig(Section):
    """Which part of the city this hub owns, and the hubs above and below it (docs/deployment.md)."""

    scope: str = Field(
        "city", description="'city', a district code or a street code from the admin grids: what this hub owns."
    )
    parent: TierParent | None = Field(None, description="The hub one tier up (none for the city, or a hub on its own).")
    children: list[str] = Field(
        default_factory=list,
        description="Scopes of the hubs one tier down: events located there are handed down to them, and their "
        "unified streams are sourced up into this hub's.",
    )
    escalate_severity: Severity | None = Field(
        Severity.CRITICAL,
        description="An incident of this hub that opens or grows to this severity is escalated to the parent hub "
        "(none: never for its severity). Overdue orders at the end of the escalation ladder and operators' requests "
        "escalate too.",
    )

    @property
    def among_tiers(self) -> bool:
        """Whether the hub has a parent or children: it then keeps the cross-scope links stream."""
        return self.parent is not None or bool(self.children)


# --- [dedup], [merge] ------------------------------------------------------------------------------


class DedupConfig(Section):
    """Exact de-duplication by idempotency key (source + source event id, or a content hash)."""

    window: Duration = Field(timedelta(hours=24), description="A key seen again within this window is a duplicate.")
    max_keys: int = Field(
        1_000_000, ge=1, le=2**30, description="Live keys kept (at most 2**30); the oldest are evicted first (counted)."
    )


class MergeDistance(Section):
    """Merge distance and window for one category."""

    distance_m: float = Field(gt=0, description="Events this close to an open incident may join it.")
    window: Duration = Field(description="... and arrive within this time of it.")


class MergeConfig(Section):
    """Incident merging: reports of the same incident become one incident with several reports."""

    category_groups: dict[str, list[CategoryName]] = Field(
        default_factory=dict,
        description="Named groups of categories that describe the same kind of incident (e.g. gas = gas_leak, smoke).",
    )
    distance_m: float = Field(100.0, gt=0, description="Default merge distance.")
    window: Duration = Field(timedelta(hours=1), description="Default merge window.")
    per_category: dict[CategoryName, MergeDistance] = Field(
        default_factory=dict, description="Distance and window per category, overriding the defaults."
    )
    text_similarity: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Events at the same address whose texts are at least this similar (character-bigram Jaccard) "
        "merge.",
    )
    incident_ttl: Duration | None = Field(
        None, description="Close incidents with no new report for this long (default: the category's window)."
    )

    def policy(self) -> MergePolicy:
        """The incident merger's policy (:class:`hub.incidents.MergePolicy`) for these settings."""
        return MergePolicy(
            groups={name: list(members) for name, members in self.category_groups.items()},
            default=CategoryPolicy(self.distance_m, self.window.total_seconds()),
            per_category={
                category: CategoryPolicy(rule.distance_m, rule.window.total_seconds())
                for category, rule in self.per_category.items()
            },
            text_similarity=self.text_similarity,
            incident_ttl_s=self.incident_ttl.total_seconds() if self.incident_ttl else None,
        )

    @field_validator("category_groups")
    @classmethod
    def _each_category_in_one_group(cls, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for group, categories in groups.items():
            for category in categories:
                if category in seen and seen[category] != group:
                    raise ValueError(f"category {category!r} is in both {seen[category]!r} and {group!r}")
                seen[category] = group
        return groups


# --- [[rules]] -------------------------------------------------------------------------------------
# A rule in config is exactly :class:`hub.rules.Rule` (id, priority, when | jsonlogic, actions, description);
# the loader compiles the whole set, so a rule that does not compile is reported with its file and line.


class RuleFile(Section):
    """A rules file: ``[[rules]]`` tables, the same shape as inline rules."""

    rules: list[Rule] = Field(default_factory=list, description="The rules in this file.")


# --- [pipeline] ------------------------------------------------------------------------------------

MaskPolicy = Literal["keep", "mask", "hash", "drop"]
_PERSONAL_FIELDS = ("reporter.name", "reporter.phone", "reporter.id_card", "reporter.account", "text", "address")


def _default_personal_data() -> dict[str, MaskPolicy]:
    return {
        "reporter.name": "mask",
        "reporter.phone": "mask",
        "reporter.id_card": "mask",
        "reporter.account": "hash",
        "text": "mask",
    }


class EventTimeConfig(Section):
    """How far an event's own time may lie from when the hub received it. The hub's clocks (dedup retention,
    incident expiry, event ids, escalation deadlines) never run ahead of the reception time, whatever an
    event says; this window decides which events are taken at all."""

    max_ahead: Duration = Field(
        timedelta(days=1), description="Events dated further ahead of their reception are out of range."
    )
    max_age: Duration = Field(
        timedelta(days=365),
        le=timedelta(days=36_500),
        description="Events dated longer before their reception are out of range.",
    )
    out_of_range: Literal["dead_letter", "accept"] = Field(
        "dead_letter",
        description=(
            "dead_letter: out-of-range events go to the DLQ as time_out_of_range. accept: they are kept as late "
            "events, their time held inside the window for the hub's clocks (the event keeps its own time)."
        ),
    )
    late_after: Duration = Field(
        timedelta(minutes=30),
        gt=timedelta(0),
        description=(
            "An event received longer than this after its own time is flagged late (field late, CloudEvents "
            "extension late): it merges by its own time, its deadlines count from its reception, and response-time "
            "figures leave out the incidents it opens."
        ),
    )


class PipelineConfig(Section):
    """The pipeline that turns ingested events into the unified stream."""

    batch_size: int = Field(500, ge=1, le=100_000, description="Messages fetched and processed per batch.")
    fetch_timeout: Duration = Field(
        timedelta(milliseconds=200), description="Longest wait for a batch to fill before processing what came."
    )
    max_message_bytes: int = Field(
        256 * 1024, ge=1024, description="Larger ingest messages go to the DLQ as oversized."
    )
    event_time: EventTimeConfig = Field(default_factory=EventTimeConfig, description="The event-time window.")
    personal_data: dict[str, MaskPolicy] = Field(
        default_factory=_default_personal_data,
        description=(
            "How each personal-data field appears in the unified stream: keep, mask (keep a hint: 138****5678), "
            "hash (stable pseudonym) or drop. Keys: reporter.name, reporter.phone, reporter.id_card, "
            "reporter.account, text (phone and ID-card numbers inside free text), address, payload.<key>. "
            "Fields not listed keep their default (masked)."
        ),
    )

    @field_validator("personal_data")
    @classmethod
    def _known_fields(cls, policies: dict[str, MaskPolicy]) -> dict[str, MaskPolicy]:
        unknown = [key for key in policies if key not in _PERSONAL_FIELDS and not key.startswith("payload.")]
        if unknown:
            raise ValueError(
                f"unknown personal-data field {', '.join(map(repr, unknown))}; "
                f"use {', '.join(_PERSONAL_FIELDS)} or payload.<key>"
            )
        return {**_default_personal_data(), **policies}


# --- [plugins.<name>] ------------------------------------------------------------------------------


class PluginSection(BaseModel):
    """``[plugins.<name>]``: ``enabled`` plus the plugin's own settings, checked against its settings model."""

    model_config = ConfigDict(extra="allow")

    enabled: bool = Field(True, description="Load this plugin. Can be changed at run time (admin API, reload).")

    def options(self) -> dict[str, Any]:
        """The plugin's own settings: every key except ``enabled``."""
        return dict(self.model_extra or {})


# --- The whole file --------------------------------------------------------------------------------


class DashboardConfig(Section):
    """The operations-centre dashboard served by the admin API (``/dashboard``)."""

    window: Duration = Field(
        timedelta(hours=24), description="How far back the dashboard replays the unified stream when it starts."
    )
    keep_closed: int = Field(5000, ge=0, description="Closed incidents kept for the incident page and the filters.")
    tile_url: str | None = Field(
        None, description="Optional background map tiles, e.g. http://tiles.local/{z}/{x}/{y}.png (Web Mercator)."
    )


class HubConfig(Section):
    """The root of ``cityhub.toml``."""

    timezone: Annotated[str, AfterValidator(_known_timezone)] = Field(
        "Asia/Shanghai", description="IANA time zone of the city; rules' hour(time) and daily figures use it."
    )
    data_dir: ConfigPath = Field(
        Path(".cityhub"), description="Local state (escalation deadlines, embedded NATS store)."
    )
    rule_files: list[ConfigPath] = Field(
        default_factory=list, description="Files with more [[rules]] tables, loaded after the inline rules."
    )
    nats: NatsConfig = Field(default_factory=NatsConfig, description="Connection to NATS and JetStream streams.")
    admin: AdminConfig = Field(default_factory=AdminConfig, description="The admin API.")
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig, description="The live dashboard.")
    hooks: HooksConfig = Field(default_factory=HooksConfig, description="Plugin containment.")
    availability: AvailabilityConfig = Field(
        default_factory=AvailabilityConfig, description="Active and standby hubs (the lease)."
    )
    geo: GeoConfig = Field(default_factory=GeoConfig, description="Grids for the geofence.")
    tier: TierConfig = Field(default_factory=TierConfig, description="This hub's scope and its place among the tiers.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Exact de-duplication.")
    merge: MergeConfig = Field(default_factory=MergeConfig, description="Incident merging.")
    categories: dict[CategoryName, CategoryInfo] = Field(
        default_factory=dict,
        description="[categories.<name>]: categories added to the taxonomy (or built-in ones replaced): labels, "
        "default severity, merge group. Built-in and plugin categories need no section.",
    )
    rules: list[Rule] = Field(
        default_factory=list,
        description="Inline rules ([[rules]] tables: id, priority, when or jsonlogic, actions, description; "
        "see docs/rules.md).",
    )
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="The pipeline.")
    plugins: dict[str, PluginSection] = Field(
        default_factory=dict, description="[plugins.<name>]: enabled plus each plugin's own settings."
    )

    _source: Path | None = PrivateAttr(None)
    _file_rules: list[Rule] = PrivateAttr(default_factory=list)
    _rule_set: RuleSet | None = PrivateAttr(None)
    _plugin_settings: dict[str, BaseModel | None] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> Path | None:
        """The file this config was loaded from (None when built in code)."""
        return self._source

    def all_rules(self) -> list[Rule]:
        """Inline rules followed by the rules of every rule file, in order."""
        return [*self.rules, *self._file_rules]

    @property
    def rule_set(self) -> RuleSet:
        """Every rule compiled (once, by the loader) in the configured timezone."""
        if self._rule_set is None:
            self._rule_set = RuleSet.compile(self.all_rules(), timezone=self.timezone)
        return self._rule_set

    def plugin_settings(self, name: str) -> BaseModel | None:
        """The validated settings of plugin ``name`` (None when the plugin declares no settings model)."""
        return self._plugin_settings.get(name)

    def plugin_settings_checked(self, name: str) -> bool:
        """Whether the loader validated plugin ``name``'s section (it was given the plugin's model)."""
        return name in self._plugin_settings

    def plugin_enabled(self, name: str) -> bool:
        """Whether the config enables plugin ``name`` (plugins without a section are enabled)."""
        section = self.plugins.get(name)
        return True if section is None else section.enabled

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> HubConfig:
        ids = [rule.id for rule in self.rules]
        repeated = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if repeated:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(repeated)}")
        return self
