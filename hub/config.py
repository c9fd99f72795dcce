"""``cityhub.toml``: typed models that map one-to-one onto the file, and the loader that checks it.

The models are the documentation: every field has a description, unknown keys are errors, and
``docs/config.md`` is generated from their JSON Schema (``python -m hub.config``; a test keeps it in sync).

Loading runs in phases, like Vector's ``validate``, and reports every problem at once as a
:class:`~hub.errors.ConfigError` whose ``issues`` each name file, line and key:

1. parse — TOML syntax (``tomllib``);
2. substitute — ``${NAME}`` / ``${NAME:-default}`` in string values from the environment (secrets live there);
3. structure — the pydantic models below, and each plugin's settings against its own model;
4. environment — files the config points at exist (grids, rule files, TLS and credential files);
5. meaning — rules compile, the merge policy builds, ``[tier]`` names cells of the admin grids in their order.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
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
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from hub.errors import ConfigError, ConfigIssue, GeoError, RuleError
from hub.federation.scope import CITY, GridHierarchy, Scope, parent_problem
from hub.geofence import LayerSpec
from hub.incidents import CategoryPolicy, MergePolicy
from hub.models import CategoryName, CoordSystem, Severity
from hub.taxonomy import CategoryInfo
from hub.rules import Actions, Rule, RuleSet
from hub.tomlpos import KeyPath, key_lines, line_of

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
        "limits", description="JetStream retention policy: keep to the limits, while consumers are interested, or until acked."
    )
    storage: Literal["file", "memory"] = Field("file", description="Where the stream keeps messages.")
    max_age: Duration | None = Field(None, description="Drop messages older than this (none: keep by the other limits).")
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
        default_factory=lambda: StreamLimits(max_age=timedelta(days=7)), description="cityhub.events.> (the unified stream)."
    )
    incidents: StreamLimits = Field(
        default_factory=lambda: StreamLimits(max_age=timedelta(days=30)), description="cityhub.incidents.>."
    )
    dispatch: StreamLimits = Field(
        default_factory=lambda: StreamLimits(max_age=timedelta(days=30)), description="cityhub.dispatch.> (orders and updates)."
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
        default_factory=lambda: ["dept:district_duty"], min_length=1,
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

    scope: str = Field(description="The parent hub's scope: 'city', or the code of the district that holds this street.")


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
        0.7, ge=0, le=1,
        description="Events at the same address whose texts are at least this similar (character-bigram Jaccard) merge.",
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

    max_ahead: Duration = Field(timedelta(days=1), description="Events dated further ahead of their reception are out of range.")
    max_age: Duration = Field(
        timedelta(days=365), le=timedelta(days=36_500), description="Events dated longer before their reception are out of range."
    )
    out_of_range: Literal["dead_letter", "accept"] = Field(
        "dead_letter",
        description=(
            "dead_letter: out-of-range events go to the DLQ as time_out_of_range. accept: they are kept as late "
            "events, their time held inside the window for the hub's clocks (the event keeps its own time)."
        ),
    )
    late_after: Duration = Field(
        timedelta(minutes=30), gt=timedelta(0),
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
    data_dir: ConfigPath = Field(Path(".cityhub"), description="Local state (escalation deadlines, embedded NATS store).")
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


# --- Loading ---------------------------------------------------------------------------------------

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOML_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


class _Document:
    """One TOML file: its text, parsed data, and where each key is written."""

    def __init__(self, path: Path, text: str, data: dict[str, Any]):
        self.path, self.text, self.data = path, text, data
        self._lines: dict[KeyPath, int] | None = None

    def line(self, path: KeyPath) -> int | None:
        if self._lines is None:
            self._lines = key_lines(self.text)
        return line_of(self._lines, path)

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        return ConfigIssue(str(self.path), self.line(path), _dotted(path) or "(file)", message)

    def validation_issues(self, error: ValidationError, prefix: KeyPath = ()) -> list[ConfigIssue]:
        issues = []
        for detail in error.errors(include_url=False):
            path = _written_path(self.data, prefix + tuple(detail["loc"]))
            issues.append(self.issue(path, detail["msg"].removeprefix("Value error, ")))
        return issues


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _written_path(data: Any, loc: KeyPath) -> KeyPath:
    """The part of a pydantic error location that names keys, dropping pydantic's union and type tags."""
    kept: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and not _looks_like_tag(part):
            kept.append(part)  # a missing or unknown key: name it, then stop descending
            break
        else:
            continue
        kept.append(part)
    return tuple(kept)


def _looks_like_tag(part: str) -> bool:
    return "[" in part or part in {"str", "int", "float", "bool", "dict", "list", "none", "json-or-python"}


def _read_document(path: Path) -> _Document:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", [ConfigIssue(str(path), None, "(file)", str(exc.strerror))]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        line = int(found.group(1)) if found else None
        message = _TOML_POSITION.sub("", str(exc)).strip()
        issue = ConfigIssue(str(path), line, "(syntax)", f"invalid TOML: {message}")
        raise ConfigError(f"{path} is not valid TOML", [issue]) from None
    return _Document(path, text, data)


def _substitute_environment(document: _Document, environ: Mapping[str, str]) -> list[ConfigIssue]:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string value, in place; report missing names."""
    issues: list[ConfigIssue] = []

    def substitute(value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {key: substitute(item, path + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [substitute(item, path + (index,)) for index, item in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            issues.append(document.issue(path, f"environment variable {name} is not set (referenced as ${{{name}}})"))
            return match.group(0)

        return _ENV_REFERENCE.sub(replace, value)

    document.data = substitute(document.data, ())
    return issues


def _file_issues(document: _Document, config: HubConfig) -> list[ConfigIssue]:
    """Phase 4: every file the config points at must exist."""
    candidates: list[tuple[KeyPath, Path | None]] = [
        (("nats", "nkey_seed_file"), config.nats.nkey_seed_file),
        (("nats", "creds_file"), config.nats.creds_file),
    ]
    if config.nats.tls is not None:
        candidates += [(("nats", "tls", name), getattr(config.nats.tls, name)) for name in ("ca", "cert", "key")]
    candidates += [(("geo", "layers", index, "path"), layer.path) for index, layer in enumerate(config.geo.layers)]
    candidates += [(("rule_files", index), path) for index, path in enumerate(config.rule_files)]
    return [
        document.issue(key, f"file not found: {path}")
        for key, path in candidates
        if path is not None and not path.is_file()
    ]


def _load_rule_files(
    config: HubConfig, environ: Mapping[str, str], places: list[tuple[_Document, int]]
) -> tuple[list[Rule], list[ConfigIssue]]:
    """Rules of every rule file; ``places`` gets the document and index of each rule loaded."""
    rules: list[Rule] = []
    issues: list[ConfigIssue] = []
    seen = {rule.id: str(config.source) for rule in config.rules}
    for path in config.rule_files:
        if not path.is_file():
            continue
        try:
            document = _read_document(path)
        except ConfigError as exc:
            issues += exc.issues
            continue
        issues += _substitute_environment(document, environ)
        try:
            loaded = RuleFile.model_validate(document.data, context={"base_dir": path.parent}).rules
        except ValidationError as exc:
            issues += document.validation_issues(exc)
            continue
        for index, rule in enumerate(loaded):
            if rule.id in seen:
                issues.append(document.issue(("rules", index, "id"), f"rule id {rule.id!r} is already defined in {seen[rule.id]}"))
            seen[rule.id] = str(path)
            places.append((document, index))
        rules += loaded
    return rules, issues


def _plugin_issues(
    document: _Document, config: HubConfig, plugin_models: Mapping[str, type[BaseModel] | None]
) -> tuple[dict[str, BaseModel | None], list[ConfigIssue]]:
    """Validate each ``[plugins.<name>]`` section against the plugin's own settings model."""
    settings: dict[str, BaseModel | None] = {}
    issues: list[ConfigIssue] = []
    for name, section in config.plugins.items():
        if name not in plugin_models:
            known = ", ".join(sorted(plugin_models)) or "none"
            issues.append(document.issue(("plugins", name), f"no plugin named {name!r} is installed (installed: {known})"))
    for name, model in plugin_models.items():
        section = config.plugins.get(name)
        options = section.options() if section else {}
        if model is None:
            settings[name] = None
            if options:
                issues.append(document.issue(("plugins", name, next(iter(options))), f"plugin {name!r} takes no settings"))
            continue
        try:
            settings[name] = model.model_validate(options, context={"base_dir": document.path.parent})
        except ValidationError as exc:
            if section is None:
                settings[name] = None  # not configured: the plugin host leaves it disabled
            else:
                issues += document.validation_issues(exc, prefix=("plugins", name))
    return settings, issues


_EXPRESSION_POSITION = re.compile(r"^line \d+, column \d+$")


def _rule_problem_path(position: str) -> tuple[KeyPath, str]:
    """Where in a rule table a compiler problem is, and what to add to its message."""
    if _EXPRESSION_POSITION.match(position):
        return ("when",), f"{position} of the expression: "
    if position.startswith("JsonLogic"):
        return ("jsonlogic",), f"{position}: "
    if position == "rule":
        return (), ""
    return tuple(int(part) if part.isdigit() else part for part in position.split(".")), ""


def _compile_rules(config: HubConfig, places: list[tuple[_Document, int]]) -> list[ConfigIssue]:
    """Compile every rule once; each problem points at its rule's file and line."""
    try:
        config._rule_set = RuleSet.compile(config.all_rules(), timezone=config.timezone)
    except RuleError as exc:
        where = {rule.id: place for rule, place in zip(config.all_rules(), places)}
        issues = []
        for rule_id, position, reason in exc.problems:
            document, index = where[rule_id]
            inside, prefix = _rule_problem_path(position)
            issues.append(document.issue(("rules", index, *inside), prefix + reason.removeprefix("Value error, ")))
        return issues
    return []


def _engine_issues(document: _Document, config: HubConfig) -> list[ConfigIssue]:
    """Settings the engines check when they are built (the merge policy)."""
    try:
        config.merge.policy()
    except ConfigError as exc:
        return [document.issue(("merge",), str(exc))]
    return []


def _tier_issues(document: _Document, config: HubConfig) -> list[ConfigIssue]:
    """``[tier]`` against the admin grids: known codes, the parent one tier up, children one tier down."""
    tier = config.tier
    if tier.scope == CITY and tier.parent is None and not tier.children:
        return []
    try:
        hierarchy = GridHierarchy.from_layers(layer.spec() for layer in config.geo.layers if layer.path.is_file())
    except GeoError as exc:
        return [document.issue(("geo", "layers"), str(exc))]
    issues: list[ConfigIssue] = []

    def scope_at(path: KeyPath, code: str) -> Scope | None:
        try:
            return hierarchy.scope(code)
        except ValueError as exc:
            issues.append(document.issue(path, str(exc)))
            return None

    scope = scope_at(("tier", "scope"), tier.scope)
    parent = scope_at(("tier", "parent", "scope"), tier.parent.scope) if tier.parent else None
    if scope is not None and parent is not None and (problem := parent_problem(scope, parent)):
        issues.append(document.issue(("tier", "parent", "scope"), problem))
    for index, code in enumerate(tier.children):
        child = scope_at(("tier", "children", index), code)
        if scope is not None and child is not None and (problem := parent_problem(child, scope)):
            issues.append(document.issue(("tier", "children", index), f"not a child of this hub: {problem}"))
    return issues


def load_config(
    path: str | Path,
    *,
    plugin_models: Mapping[str, type[BaseModel] | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HubConfig:
    """Load and check ``cityhub.toml``; raise :class:`ConfigError` listing every problem with file, line and key.

    ``plugin_models`` maps each installed plugin to its settings model (``PluginHost.settings_models()``); when
    given, ``[plugins.<name>]`` sections are validated against them and unknown plugin names are errors.
    A plugin with required settings and no section is left unconfigured (``plugin_settings(name)`` is None).
    """
    path = Path(path)
    environ = os.environ if environ is None else environ
    document = _read_document(path)
    issues = _substitute_environment(document, environ)
    try:
        config = HubConfig.model_validate(document.data, context={"base_dir": path.parent})
    except ValidationError as exc:
        issues += document.validation_issues(exc)
        raise _config_error(path, issues) from None
    config._source = path
    issues += _file_issues(document, config)
    places = [(document, index) for index in range(len(config.rules))]
    config._file_rules, rule_issues = _load_rule_files(config, environ, places)
    issues += rule_issues
    if not issues:
        issues += _compile_rules(config, places)
    issues += _engine_issues(document, config)
    issues += _tier_issues(document, config)
    if plugin_models is not None:
        config._plugin_settings, plugin_issues = _plugin_issues(document, config, plugin_models)
        issues += plugin_issues
    if issues:
        raise _config_error(path, issues)
    return config


def _config_error(path: Path, issues: list[ConfigIssue]) -> ConfigError:
    """One error carrying every issue, in file and line order."""
    ordered = sorted(issues, key=lambda issue: (issue.file, issue.line or 0))
    count = f"{len(ordered)} problem{'s' if len(ordered) != 1 else ''}"
    return ConfigError(f"{path}: {count}:\n" + "\n".join(f"  {issue}" for issue in ordered), ordered)


# --- Reference documentation -----------------------------------------------------------------------

_MAP_PLACEHOLDERS = {"plugins": "<name>", "per_category": "<category>"}
_SHORT_ENUM = 6


def _ref_name(schema: dict[str, Any]) -> str | None:
    return schema["$ref"].rsplit("/", 1)[-1] if "$ref" in schema else None


def _map_values(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a map's values: ``additionalProperties``, or the one pattern of keys with a pattern."""
    if isinstance(schema.get("additionalProperties"), dict):
        return schema["additionalProperties"]
    patterns = list(schema.get("patternProperties", {}).values())
    return patterns[0] if len(patterns) == 1 else None


def _nested_model(schema: dict[str, Any], definitions: dict[str, Any]) -> tuple[str, str] | None:
    """(definition name, shape) when a property holds a section: a table, an array of tables or a map."""
    options = [option for option in schema.get("anyOf", [schema]) if option.get("type") != "null"]
    for option, shape in [(option, "table") for option in options] + [
        (schema.get("items", {}), "array"),
        (_map_values(schema) or {}, "map"),
    ]:
        name = _ref_name(option)
        if name and "properties" in definitions[name]:
            return name, shape
    return None


def _type_text(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    name = _ref_name(schema)
    if name:
        target = definitions[name]
        if "enum" in target:
            values = target["enum"]
            return " / ".join(f"`{v}`" for v in values) if len(values) <= _SHORT_ENUM else f"{name.lower()} (see below)"
        return "table"
    if "anyOf" in schema:
        return " or ".join(dict.fromkeys(_type_text(option, definitions) for option in schema["anyOf"]))
    if "enum" in schema:
        return " / ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}), definitions)}"
    if kind == "object" and (values := _map_values(schema)) is not None:
        return f"table of {_type_text(values, definitions)}"
    if schema.get("format") == "password":
        return "secret string"
    if schema.get("examples") == ["90s", "15m", "1h30m", 3600]:
        return "duration"
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def _value_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(table)"
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"`{int(seconds // size)}{unit}`"
        return f"`{seconds:g}s`"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, (list, dict)) and not value:
        return "`[]`" if isinstance(value, list) else "`{}`"
    if isinstance(value, dict):
        return "<br>".join(f"`{key} = {_value_text(item).strip('`')}`" for key, item in value.items())
    if value is None:
        return "none"
    return f"`{getattr(value, 'value', value)}`"


def _section_rows(model_schema: dict[str, Any], instance: BaseModel | None, definitions: dict[str, Any]) -> list[str]:
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    required = set(model_schema.get("required", []))
    for key, field in model_schema.get("properties", {}).items():
        if key in required:
            default = "required"
        elif instance is not None:
            default = _value_text(getattr(instance, key))
        else:
            default = _value_text(field["default"]) if "default" in field else ("`{}`" if field.get("type") == "object" else "`[]`")
        description = field.get("description", "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {_type_text(field, definitions)} | {default} | {description} |")
    return rows


def config_reference() -> str:
    """``docs/config.md``: every section and key of ``cityhub.toml``, generated from the models' JSON Schema
    (types and descriptions) and their defaults."""
    schema = HubConfig.model_json_schema(mode="validation")
    actions = Actions.model_json_schema(mode="validation")
    definitions = {**schema.get("$defs", {}), **actions.get("$defs", {})}
    out = [
        "# Configuration reference (`cityhub.toml`)",
        "",
        "Generated from the models in `hub/config.py` by `python -m hub.config > docs/config.md`; a test keeps it",
        "in sync. Unknown keys are errors. String values may use `${NAME}` or `${NAME:-default}` to read the",
        "environment (put secrets there). Durations are written `\"90s\"`, `\"15m\"`, `\"1h30m\"`, `\"2d\"` or as seconds.",
        "Relative paths are relative to the directory of the config file. Check a file with `cityhub validate FILE`.",
        "`cityhub.toml` at the root of the repository is a complete example.",
        "",
    ]

    def visit(title: str, path: str, model_schema: dict[str, Any], instance: BaseModel | None) -> None:
        out.extend([f"## {title}", "", " ".join(model_schema.get("description", "").split()), ""])
        out.extend([*_section_rows(model_schema, instance, definitions), ""])
        for key, field in model_schema.get("properties", {}).items():
            nested = _nested_model(field, definitions)
            if nested is None:
                continue
            name, shape = nested
            child = f"{path}.{key}" if path else key
            child_instance = getattr(instance, key, None) if shape == "table" and instance is not None else None
            heading = {"table": f"[{child}]", "array": f"[[{child}]]",
                       "map": f"[{child}.{_MAP_PLACEHOLDERS.get(key, '<key>')}]"}[shape]
            visit(f"`{heading}`", child, definitions[name], child_instance if isinstance(child_instance, BaseModel) else None)

    visit("Top level", "", schema, HubConfig())
    visit("`[rules.actions]`", "rules.actions", actions, None)
    for name, definition in sorted(definitions.items()):
        if "enum" in definition and len(definition["enum"]) > _SHORT_ENUM:
            out.extend([f"## {name}", "", " ".join(definition.get("description", "").split()), "",
                        ", ".join(f"`{value}`" for value in definition["enum"]), ""])
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(config_reference())
