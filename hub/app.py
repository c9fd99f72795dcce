"""The hub: one handle (:class:`Hub`, passed to every hook as ``hub=``) that owns the config, the plugin
host, the metrics, the NATS connection (an embedded nats-server when no URL is configured), the pipeline,
the connector supervisor, the escalation timer and the admin API.

Several hubs with the same config elect one active hub through a lease in NATS (:mod:`hub.availability`):
the active one runs the pipeline, escalation and connectors; the others stand by with their engines built
and take over when the lease expires.

``cityhub run`` calls :func:`run`; ``cityhub demo`` calls :func:`demo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

from hub import topology
from hub.availability import Elector, Holder, Lease, LeaseLost, OutputFence, pipeline_fingerprint
from hub.config import HubConfig, load_config
from hub.connector import Connector
from hub.connector_runtime import publish_close_request
from hub.dashboard.state import LiveState
from hub.embedded import EmbeddedNats
from hub.errors import ConfigError, HubError
from hub.escalation import Escalator
from hub.geofence import GridIndex
from hub.incidents import Deduper, IncidentMerger, MergePolicy
from hub.logs import LOG_FILE_VARIABLE, configure_logging
from hub.metrics import Metrics
from hub.models import CloseRequest, Event
from hub.natslink import NatsLink
from hub.pipeline import BatchProcessor, Engines, EventTimeWindow, IngestMessage, Pipeline, PipelineOptions, PipelineState
from hub.plugins import PluginHost, build_plugin_host, demo_section_file, installed_plugins
from hub.reload import ConfigReloader
from hub.federation.ownership import ownership_from_config
from hub.federation.services import TierServices
from hub.streams import ensure_buckets, ensure_streams
from hub.supervisor import Supervisor
from hub.tap import format_dispatch, format_event
from hub.taxonomy import BUILTIN_TAXONOMY, CategoryInfo, Taxonomy
from hub.transforms import Transform

log = logging.getLogger("cityhub")

SAMPLE_GRIDS = Path(__file__).parent / "data" / "grids"
DEMO_SECRET_VARIABLE = "CITYHUB_DEMO_SECRET"
_DEMO_PORT = re.compile(r"\b18\d{3}\b")
SIMULATOR_STOP_S = 10.0
# An open dashboard holds a server-sent event stream that never ends by itself: on stop the admin server waits
# this long for requests, then closes the rest (the page reconnects to the next hub).
ADMIN_STOP_S = 2.0
DEMO_LOG = "demo.log"
DEMO_MARKER = ".cityhub-demo"
PROBE_TIMEOUT_S = 1.0  # /ready's question to JetStream


# --- config → engines --------------------------------------------------------------------------------


def geofence_from_config(config: HubConfig) -> GridIndex | None:
    if not config.geo.layers:
        return None
    return GridIndex.load([layer.spec() for layer in config.geo.layers], tolerance_m=config.geo.tolerance_m)


def build_taxonomy(config: HubConfig, contributed: Iterable[tuple[str, Mapping[str, CategoryInfo]]] = ()) -> Taxonomy:
    """The built-in categories, then each plugin's ``(plugin, categories)`` from ``register_categories``, then
    ``[categories.<name>]`` of the config; a ConfigError names a merge setting that uses an unknown category."""
    layers = [(f"plugin {plugin!r} (register_categories)", categories) for plugin, categories in contributed]
    try:
        taxonomy = BUILTIN_TAXONOMY.extended([*layers, ("[categories]", config.categories)])
    except HubError as exc:
        raise ConfigError(str(exc)) from None
    named = [*(c for group in config.merge.category_groups.values() for c in group), *config.merge.per_category]
    for category in named:
        if category not in taxonomy:
            raise ConfigError(f"[merge]: {taxonomy.unknown(category)}; add it under [categories.{category}]")
    return taxonomy


def merge_policy(config: HubConfig, taxonomy: Taxonomy) -> MergePolicy:
    """``[merge]`` with the taxonomy's merge groups; a category that ``[merge].category_groups`` places
    keeps that place."""
    policy = config.merge.policy()
    placed = {category for group in policy.groups.values() for category in group}
    groups = {name: list(members) for name, members in policy.groups.items()}
    for name, members in taxonomy.merge_groups().items():
        if unplaced := [category for category in members if category not in placed]:
            groups.setdefault(name, []).extend(unplaced)
    return dataclasses.replace(policy, groups=groups)


def build_engines(
    config: HubConfig, transforms: Iterable[tuple[str, Transform]] = (), taxonomy: Taxonomy = BUILTIN_TAXONOMY
) -> Engines:
    """Compile rules, load grids and build the merge policy; raises (HubError subclasses) on bad input, so a
    bad new config never replaces a running one."""
    return Engines(
        rules=config.rule_set,
        merge_policy=merge_policy(config, taxonomy),
        taxonomy=taxonomy,
        geofence=geofence_from_config(config),
        unplaced_route=tuple(config.geo.unplaced_route),
        transforms=tuple(transforms),
        dedup_window_s=config.dedup.window.total_seconds(),
        dedup_max_keys=config.dedup.max_keys,
        ownership=ownership_from_config(config),
    )


def pipeline_options(config: HubConfig) -> PipelineOptions:
    return PipelineOptions(
        batch_size=config.pipeline.batch_size,
        fetch_timeout_s=config.pipeline.fetch_timeout.total_seconds(),
        max_message_bytes=config.pipeline.max_message_bytes,
        event_time=EventTimeWindow(
            max_ahead_s=config.pipeline.event_time.max_ahead.total_seconds(),
            max_age_s=config.pipeline.event_time.max_age.total_seconds(),
            accept_out_of_range=config.pipeline.event_time.out_of_range == "accept",
            late_after_s=config.pipeline.event_time.late_after.total_seconds(),
        ),
    )


# --- the hub -----------------------------------------------------------------------------------------


class Hub:
    """The running hub. ``await start()`` / ``await stop()``; ``apply_config`` for live reload."""

    def __init__(self, config: HubConfig, plugins: PluginHost | None = None, metrics: Metrics | None = None):
        self.config = config
        self.metrics = metrics or Metrics()
        self.plugins = plugins or build_plugin_host(self.metrics)
        self.plugins.configure(config)
        self.plugins.attach(self)
        self.log = log
        self.taxonomy = build_taxonomy(config)  # plugins' categories join at start() and on reload
        self.embedded: EmbeddedNats | None = None
        self.link: NatsLink | None = None
        self.pipeline: Pipeline | None = None
        self.supervisor: Supervisor | None = None
        self.escalator: Escalator | None = None
        self.elector: Elector | None = None
        self._fence: OutputFence | None = None  # the active hub's output fence
        self._engines: Engines | None = None  # built at start, so a standby takes over without loading grids
        self._run_connectors = True
        self.tiers: TierServices | None = None  # the active hub's tier services (hand-offs up and down)
        self.admin_url: str | None = None
        self._admin_server: uvicorn.Server | None = None
        self._admin_task: asyncio.Task[None] | None = None
        self.dashboard: LiveState | None = None
        self._connectors: dict[str, list[str]] = {}
        self.reloader = ConfigReloader(self)
        self._stop_watching = asyncio.Event()
        self._watch_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # plugin-failure reports in flight (kept referenced)

    @classmethod
    def from_file(cls, path: str | Path) -> Hub:
        """Load ``cityhub.toml`` (with every plugin's settings checked) and build the hub."""
        metrics = Metrics()
        plugins = build_plugin_host(metrics)
        config = load_config(path, plugin_models=plugins.settings_models())
        return cls(config, plugins, metrics)

    # lifecycle

    @property
    def nc(self) -> NatsClient | None:
        """The current NATS client (a new one after the server closed the last, :mod:`hub.natslink`)."""
        return self.link.client if self.link is not None else None

    @property
    def nats_url(self) -> str:
        return self.embedded.url if self.embedded else self.config.nats.servers[0]

    async def start(self, *, admin: bool = True, connectors: bool = True) -> None:
        """Connect (or embed) NATS, create the streams, build the engines, start the plugins and the admin
        API, and join the election: the pipeline, escalation and connectors start once this hub holds the
        lease. Raises :class:`ConfigError` when the active hub runs a different pipeline config."""
        nats_config = self.config.nats
        if not nats_config.servers:
            embedded = nats_config.embedded
            self.embedded = EmbeddedNats(store_dir=embedded.store_dir, mqtt_port=embedded.mqtt_port,
                                         **({"port": embedded.port} if embedded.port else {}))
            self.embedded.launch()  # from the event loop's thread, which lives as long as the hub
            await asyncio.to_thread(self.embedded.wait_listening)
            nats_config = nats_config.model_copy(update={"servers": [self.embedded.url]})
        self.link = NatsLink(nats_config)
        nc = await self.link.open()
        self.link.add_listener(self._use_connection)
        await ensure_streams(nc.jetstream(), nats_config.streams, self.config.tier)
        await ensure_buckets(nc.jetstream(), nats_config.buckets)
        self.elector = await self._join_election()
        await self.plugins.startup()
        self.taxonomy = build_taxonomy(self.config, await self.plugins.call("register_categories"))
        self._engines = build_engines(self.config, await self._transforms(), self.taxonomy)
        self.supervisor = Supervisor(nats_config, nats_config.streams, on_counters=self._connector_counters)
        self.plugins.add_listener(self._plugin_changed)
        self._run_connectors = connectors
        if admin:
            await self._start_admin()
            self.elector.lease.me = dataclasses.replace(self.elector.lease.me, admin_url=self.admin_url)
        await self.elector.start()
        if self.config.source is not None:
            self._watch_task = asyncio.create_task(self.reloader.watch(self._stop_watching), name="cityhub.watch")
        log.info("hub started: NATS %s, admin %s", self.nats_url if self.embedded else "configured servers",
                 self.admin_url or "off")

    async def stop(self) -> None:
        """Stop in reverse order; the pipeline finishes its batch and snapshots."""
        if self._watch_task is not None:
            self._stop_watching.set()
            await self._watch_task
        if self._admin_server is not None and self._admin_task is not None:
            self._admin_server.should_exit = True
            await self._admin_task
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self.elector is not None:
            await self.elector.stop()  # steps down (pipeline, escalation, connectors), then releases the lease
        await self.plugins.shutdown()
        if self.link is not None:
            await self.link.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)

    async def _use_connection(self, nc: NatsClient) -> None:
        """Move every part that works on NATS onto the client that replaced a closed one."""
        if self.elector is not None:
            self.elector.lease.use_connection(nc.jetstream(timeout=self.config.availability.lease_ttl.total_seconds() / 3))
        if self._fence is not None:
            self._fence.use_connection(nc.jetstream())
        if self.pipeline is not None:
            await self.pipeline.use_connection(nc)
        if self.escalator is not None:
            await self.escalator.use_connection(nc)
        if self.tiers is not None:
            await self.tiers.use_connection(nc)
        if self.dashboard is not None:
            await self.dashboard.use_connection(nc)

    # active and standby

    async def _join_election(self) -> Elector:
        assert self.nc is not None
        me = Holder.of_this_process(pipeline_fingerprint(self.config))
        lease = Lease(self.nc.jetstream(timeout=self.config.availability.lease_ttl.total_seconds() / 3), me,
                      self.config.availability.lease_ttl.total_seconds(), self.config.nats.buckets.replicas)
        elector = Elector(lease, self._activate, self._deactivate, self.metrics.role,
                          running=lambda: self.pipeline is not None and self.pipeline.running)
        await elector.join()
        return elector

    async def _activate(self) -> None:
        """Start what only the active hub runs: the pipeline (from the latest snapshot), escalation, connectors."""
        assert self.nc is not None and self.elector is not None and self._engines is not None
        fence = self._fence = OutputFence(self.nc.jetstream(), self.elector.lease)
        await fence.mark()
        self.pipeline = Pipeline(self.nc, self._engines, self.metrics, pipeline_options(self.config),
                                 self._transform_outcome, fence=fence)
        await self.pipeline.start()
        self.escalator = Escalator(self.nc, fence=fence)
        await self.escalator.start()
        self.tiers = TierServices(self.config, self.nc)
        await self.tiers.start()
        if self._run_connectors:
            for plugin in self.plugins.names():
                if self.plugins.is_enabled(plugin):
                    await self._start_connectors(plugin)

    async def _deactivate(self) -> None:
        """Stop connectors, escalation and the pipeline; never raises, so the hub always ends up standing by.
        A pipeline whose lease is gone (or whose NATS is away) stops without its final snapshot: the next
        active hub restores an earlier one and replays from there."""
        if self.supervisor is not None:
            await self.supervisor.stop_all()
            self._connectors.clear()
        if self.tiers is not None:
            tiers, self.tiers = self.tiers, None
            await tiers.stop()
        if self.escalator is not None:
            escalator, self.escalator = self.escalator, None
            with contextlib.suppress(LeaseLost):  # its tasks ended on the fence
                await escalator.stop()
        if self.pipeline is not None:
            pipeline, self.pipeline = self.pipeline, None
            try:
                await pipeline.stop()
            except Exception as exc:
                log.warning("pipeline stopped without its final snapshot (%s: %s)", type(exc).__name__, exc)

    # the AdminHub protocol

    @property
    def ready(self) -> bool:
        return not self._waiting_here()

    async def waiting_for(self) -> list[str]:
        """What this hub waits for before it does its job (empty when ready): NATS, the lease calls, for
        the active hub its pipeline, and the ingest stream's answer (in a NATS cluster a stream has no
        leader for a few seconds after the node that led it is lost). A standby that can take over is ready."""
        waiting = self._waiting_here()
        if not waiting and self.nc is not None:
            try:
                await self.nc.jetstream(timeout=PROBE_TIMEOUT_S).stream_info(topology.INGEST_STREAM)
            except Exception as exc:
                waiting.append(f"the ingest stream {topology.INGEST_STREAM} to answer ({type(exc).__name__}: "
                               f"{exc}; a NATS cluster elects a new stream leader within seconds)")
        return waiting

    def _waiting_here(self) -> list[str]:
        """What :meth:`waiting_for` finds without asking NATS."""
        waiting = []
        if self.nc is None or not self.nc.is_connected:
            waiting.append("the NATS connection (reconnecting to the configured servers)")
        elector = self.elector
        if elector is None:
            return waiting + ["start-up (streams, buckets, engines)"]
        if elector.trouble is not None:
            waiting.append(f"JetStream to answer the lease calls ({elector.trouble})")
        if elector.role == "activating":
            waiting.append("the pipeline to restore its snapshot and catch up (taking over)")
        elif elector.role == "active" and (self.pipeline is None or not self.pipeline.running):
            waiting.append("the pipeline to run")
        return waiting

    def health(self) -> dict[str, Any]:
        connected = self.nc is not None and self.nc.is_connected
        pipeline = self.pipeline
        standby = self.elector is not None and self.elector.role == "standby"
        return {
            "ok": connected and (standby or (pipeline is not None and pipeline.running)),
            "availability": self.elector.health() if self.elector else {},
            "nats": {"connected": connected, "embedded": self.embedded is not None,
                     "max_payload": self.nc.max_payload if self.nc else None,
                     "replaced": self.link.replaced if self.link else 0},
            "pipeline": {
                **(pipeline.health() if pipeline else {"running": False, "status": "stopped"}),
                "counts": dict(pipeline.counts) if pipeline else {},
                "last_sequence": pipeline.state.last_seq if pipeline else 0,
                "open_incidents": len(pipeline.state.incidents) if pipeline else 0,
            },
            "connectors": self.supervisor.health() if self.supervisor else {},
            "escalation": self.escalator.health() if self.escalator else {},
            "tiers": self.tiers.health() if self.tiers else {},
            "dashboard": self.dashboard.health() if self.dashboard else {},
        }

    async def apply_config(self, config: HubConfig) -> None:
        """Switch to a validated config without restart. New rules, grids and merge policy are built first
        (a failure leaves the running ones in place) and swapped in between two batches, so no in-flight
        event is lost or processed twice."""
        engines = build_engines(config, taxonomy=build_taxonomy(config, await self.plugins.call("register_categories")))
        self.config = config  # before the plugins rebuild: their hooks read hub.config (e.g. personal_data)
        await self.plugins.apply(config)
        transforms = await self._transforms()
        self.taxonomy = build_taxonomy(config, await self.plugins.call("register_categories"))
        engines = dataclasses.replace(engines, taxonomy=self.taxonomy, merge_policy=merge_policy(config, self.taxonomy))
        self._engines = Engines(**{**engines.__dict__, "transforms": tuple(transforms)})
        if self.elector is not None:  # renewals carry the new fingerprint: a standby compares against it
            self.elector.lease.me = dataclasses.replace(self.elector.lease.me, fingerprint=pipeline_fingerprint(config))
        if self.pipeline is not None:
            self.pipeline.swap_engines(self._engines)
        if self.nc is not None:
            await ensure_streams(self.nc.jetstream(), config.nats.streams, config.tier)

    async def dry_run(self, event: Event) -> dict[str, Any]:
        """What the pipeline would do with ``event`` (grid path, incident, matched rules), on a copy of the
        live state, publishing nothing. The incident records are copied deeply: merging appends to their lists
        (sources, reports, matched rules), and those of the live incidents must not change."""
        if self.pipeline is None:
            holder = self.elector.holder if self.elector is not None else None
            raise HubError("the pipeline is not running" + (
                f": this hub stands by; ask the active hub ({holder.admin_url})" if holder and holder.admin_url else ""))
        engines = self.pipeline.engines
        live = self.pipeline.state
        state = PipelineState(Deduper(engines.dedup_window_s, 16),
                              IncidentMerger.restore(live.merger.snapshot(), engines.merge_policy),
                              copy.deepcopy(live.incidents), live.last_seq, live.watermark)
        processor = BatchProcessor(engines, self.pipeline.options)
        subject = topology.ingest_subject(event.source)
        message = IngestMessage(0, subject, event.model_dump_json().encode(), time.time())
        result = processor.process(state, [message], evaluate=True)
        if result.rejected:
            return {"rejected": {"kind": result.rejected[0].kind, "reason": result.rejected[0].reason}}
        return result.evaluations[0]

    async def request_close(self, incident_id: str, reason: str) -> str:
        """Ask the pipeline to close an open incident (ops, through the admin API): a close request on
        ``cityhub.ingest.ops``, applied in order with the reports. Returns its message id."""
        if self.nc is None:
            raise HubError("not connected to NATS")
        request = CloseRequest(incident_id=incident_id, reason=reason, time=datetime.now(timezone.utc))
        return await publish_close_request(self.nc.jetstream(), request, topology.OPS_REQUESTER)

    async def escalate_up(self, incident_id: str) -> bool:
        """Escalate an incident to the hub one tier up at an operator's request (the admin API); False when it
        went up before. :class:`HubError` when this hub has no parent or does not know the incident."""
        known = self.dashboard.incident(incident_id) if self.dashboard else None
        if self.tiers is None:
            raise HubError("the hub is not running")
        return await self.tiers.escalate(known["incident"] if known else None, incident_id)

    # plugins → pipeline and supervisor

    async def _transforms(self) -> list[tuple[str, Transform]]:
        return [(plugin, transform) for plugin, transforms in await self.plugins.call("register_transforms")
                for transform in transforms]

    def _transform_outcome(self, plugin: str, transform: Transform, exc: BaseException | None) -> None:
        what = f"transform:{transform.name}"
        if exc is None:
            self.plugins.record_success(plugin, what)
            return
        # record_failure counts it (metrics and log line) and disables the plugin after repeated failures
        task = asyncio.get_running_loop().create_task(self.plugins.record_failure(plugin, what, exc))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _plugin_changed(self, plugin: str, enabled: bool) -> None:
        if self._engines is not None:
            transforms = await self._transforms()
            self._engines = Engines(**{**self._engines.__dict__, "transforms": tuple(transforms)})
        if self.pipeline is not None and self._engines is not None:
            self.pipeline.swap_engines(self._engines)
        if self.supervisor is None:
            return
        for name in self._connectors.pop(plugin, []):
            await self.supervisor.stop(name)
        if enabled and self._run_connectors and self.pipeline is not None:  # connectors run on the active hub
            await self._start_connectors(plugin)

    async def _start_connectors(self, plugin: str) -> None:
        assert self.supervisor is not None
        for _, provided in await self.plugins.call("register_connectors", only=plugin):
            for connector in provided:
                if not isinstance(connector, Connector):
                    raise HubError(f"plugin {plugin!r} returned {connector!r} from register_connectors, not a Connector")
                await self.supervisor.start(connector)
                self._connectors.setdefault(plugin, []).append(connector.source)

    def _connector_counters(self, source: str, before: dict[str, int], after: dict[str, int]) -> None:
        for name, value in after.items():
            delta = value - before.get(name, 0)
            self.metrics.connector_count(source, name, delta if delta >= 0 else value)

    # admin API

    async def _start_admin(self) -> None:
        from hub.admin import create_admin_app, require_token  # FastAPI is only imported when the API is served
        from hub.dashboard import build_router, live_state

        assert self.nc is not None
        self.dashboard = live_state(self.config.dashboard, links=self.config.tier.among_tiers)
        await self.dashboard.start(self.nc)
        app = create_admin_app(self, routers=[build_router(self.dashboard, token_check=require_token)])
        port = self.config.admin.port or _free_port(self.config.admin.host)
        server = uvicorn.Server(uvicorn.Config(app, host=self.config.admin.host, port=port, log_level="warning",
                                               log_config=None, lifespan="off",  # its records go to our handler
                                               timeout_graceful_shutdown=ADMIN_STOP_S))
        self._admin_server = server
        self._admin_task = asyncio.create_task(server.serve(), name="cityhub.admin")
        while not server.started:
            if self._admin_task.done():
                self._admin_task.result()
            await asyncio.sleep(0.05)
        self.admin_url = f"http://{self.config.admin.host}:{port}"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --- entry points ------------------------------------------------------------------------------------


async def _serve(hub: Hub, banner: Any = None, until: asyncio.Event | None = None) -> None:
    stop = until or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await hub.start()
        if banner is not None:
            await banner(hub, stop)
        await stop.wait()
    finally:
        log.info("stopping")
        await hub.stop()


def run(config_path: str | Path = "cityhub.toml", admin_port: int | None = None) -> int:
    """``cityhub run``: the hub with ``config_path`` until SIGINT/SIGTERM; ``admin_port`` overrides
    ``[admin].port`` for this process."""
    configure_logging(logging.INFO)
    try:
        hub = Hub.from_file(config_path)
    except ConfigError as exc:
        for problem in [str(issue) for issue in exc.issues] or [str(exc)]:  # records are one line each
            log.error("%s", problem)
        return 1
    if admin_port is not None:
        hub.config.admin.port = admin_port
    asyncio.run(_serve(hub))
    return 0


def demo_sections(names: Iterable[str] | None = None) -> str:
    """The ``[plugins.<name>]`` sections installed plugins ship for the demo (``demo.toml`` in the plugin's
    package; of every plugin that has one, or just ``names``), each demo port (18000-18999) moved to a free
    one so the demo runs beside anything else on the machine."""
    plugins = installed_plugins()
    if names is None:
        names = sorted(name for name, entry_point in plugins.items() if demo_section_file(entry_point).is_file())
    sections = "\n".join(demo_section_file(plugins[name]).read_text(encoding="utf-8") for name in names)
    ports = {port: str(_free_port("127.0.0.1")) for port in sorted(set(_DEMO_PORT.findall(sections)))}
    return _DEMO_PORT.sub(lambda match: ports[match.group(0)], sections)


def demo_config(data_dir: Path, placement: str | None = None, connectors: Iterable[str] | None = None) -> str:
    """The demo's ``cityhub.toml``: embedded NATS with MQTT (or the ``placement`` tables: ``[nats]`` and
    ``[tier]`` of a hub among tiers), the shipped sample grids, a few rules and the demo section of every
    connector (or of ``connectors``). Their secrets are ``${CITYHUB_DEMO_SECRET}``, which :func:`demo` generates."""
    admin = SAMPLE_GRIDS / "chengdu_admin_gcj02.geojson"
    overlays = SAMPLE_GRIDS / "chengdu_overlays_gcj02.geojson"
    embedded = f"[nats.embedded]\nstore_dir = \"{data_dir / 'nats'}\"\nmqtt_port = {_free_port('127.0.0.1')}\n"
    return f"""
timezone = "Asia/Shanghai"
data_dir = "{data_dir}"

{placement or embedded}

[admin]
port = 0

[geo]
layers = [
  {{ name = "admin", path = "{admin}", crs = "gcj02", kind = "admin" }},
  {{ name = "overlays", path = "{overlays}", crs = "gcj02", kind = "overlay" }},
]

[merge]
category_groups = {{ gas = ["gas_leak", "smoke", "fire"], elder = ["elder_sos", "elder_fall", "elder_vitals"] }}

[[rules]]
id = "gas-critical"
when = 'category == "gas_leak"'
actions = {{ severity = "critical", route = ["gridworker", "five_way"], escalate_after_s = 600 }}

[[rules]]
id = "fire-to-grid-worker"
description = "The storyline's overdue order: the e-bike shed's grid worker never accepts; escalated after 50 s."
when = 'category == "fire" || category == "smoke"'
actions = {{ severity = "critical", route = ["gridworker", "five_way:fire"], escalate_after_s = 50 }}

[[rules]]
id = "area-warning-to-each-grid"
description = "Every grid an area warning touches confirms it through its grid worker."
when = 'category == "area_warning"'
actions = {{ route = ["gridworker"], escalate_after_s = 900 }}

[[rules]]
id = "elder-first-to-grid-worker"
when = 'category == "elder_sos" || category == "elder_fall"'
actions = {{ severity = "high", route = ["gridworker"], escalate_after_s = 300 }}

[[rules]]
id = "eldercare-visit"
when = 'source == "eldercare"'
actions = {{ route = ["connector:eldercare"] }}

[[rules]]
id = "answer-12345"
when = 'source == "hotline12345" && payload.channel == "webhook"'
actions = {{ route = ["connector:hotline12345"] }}

{demo_contacts(admin)}

{demo_sections(connectors)}
"""


# Who answers for what in the demo, beside each district's duty desk (the enrichment plugin's contact table).
DEMO_CITY_CONTACTS = (
    '{ cell = "*", categories = ["gas_leak", "smoke"], name = "燃气抢修中心（演示）", role = "department", '
    'department = "燃气公司" }',
    '{ cell = "*", categories = ["flooding", "water_leak"], name = "排水抢险队（演示）", role = "department", '
    'department = "水务局" }',
    '{ cell = "*", categories = ["elder_sos", "elder_fall", "elder_vitals"], name = "社区卫生服务中心（演示）", '
    'role = "department", department = "卫健委" }',
    '{ cell = "*", name = "市城运中心值班台（演示）", role = "duty_desk" }',
)


def demo_contacts(admin_grids: Path) -> str:
    """The demo's ``[plugins.enrichment]`` section: a duty desk per district of ``admin_grids`` and the
    city's departments per category, so every event gets its responsible contacts."""
    districts = [feature["properties"] for feature in orjson.loads(admin_grids.read_bytes())["features"]
                 if feature["properties"]["level"] == "district"]
    desks = [f'{{ cell = "{d["id"]}", name = "{d["name"]}城运中心值班台（演示）", role = "duty_desk" }}' for d in districts]
    rows = ",\n  ".join([*desks, *DEMO_CITY_CONTACTS])
    return f"[plugins.enrichment]\ncontacts = [\n  {rows},\n]"


# What a first look at the demo shows, printed under its banner; tests/test_demo.py checks each beat happens.
DEMO_STORYLINE = (
    "0:00  gas leak at 红星路三段1号 reported three ways (IoT gas alarm, 12345 call, citizen's photo): one incident",
    "0:00  e-bike shed fire at 滨江东路9号: its grid worker never accepts the order",
    "0:15  an elder's SOS (李建国, lives alone): the grid worker and a visit order to the eldercare platform",
    "0:30  red flood warning (暴雨内涝预警) over several grids around 合江亭: each grid's worker gets an order",
    "0:50  the shed's order is overdue: the incident escalates and is dispatched again",
    "1:00  the grid worker app moves the order to the backup worker",
)


async def _demo_banner(hub: Hub, stop: asyncio.Event, *, config_path: Path, log_file: Path | None,
                       stop_after_s: float | None = None) -> None:
    simulators = [(plugin, sim) for plugin, sims in await hub.plugins.call("register_simulators") for sim in sims]
    for _, simulator in simulators:
        await simulator.start()
    if stop_after_s is not None:
        asyncio.get_running_loop().call_later(stop_after_s, stop.set)
    print(_banner_text(hub, len(simulators), config_path, log_file, stop_after_s), flush=True)
    tail = asyncio.create_task(_print_unified_stream(hub))
    try:
        await stop.wait()
    finally:
        tail.cancel()
        await stop_simulators(simulators)


def _banner_text(hub: Hub, simulators: int, config_path: Path, log_file: Path | None, stop_after_s: float | None) -> str:
    secret = os.environ.get(DEMO_SECRET_VARIABLE, "")
    stopping = "Press Ctrl-C to stop." if stop_after_s is None else f"Stopping after {stop_after_s:g} s (or Ctrl-C)."
    return "\n".join([
        "", "CityHub demo running.",
        f"  NATS:      {hub.nats_url}",
        f"  admin API: {hub.admin_url}  (docs at /docs)",
        f"  dashboard: {hub.admin_url}/dashboard",
        f"  tap:       cityhub tap --server {hub.nats_url}",
        f"  simulators: {simulators}",
        f"  config:    {config_path}  (check it: CITYHUB_DEMO_SECRET=x cityhub validate {config_path})",
        f"  log:       {log_file or 'this terminal (--verbose)'}",
        f"  connector secret: {secret[:4]}… (generated for this run)",
        "Storyline (then steady traffic from all seven systems):",
        *(f"  {beat}" for beat in DEMO_STORYLINE),
        stopping, "",
    ])


async def stop_simulators(simulators: list[tuple[str, Any]], timeout_s: float = SIMULATOR_STOP_S) -> None:
    """Stop each ``(plugin, simulator)``, the last started first. One that raises or hangs past ``timeout_s``
    is logged with its plugin, class and traceback, and the rest are still stopped: the demo must end."""
    for plugin, simulator in reversed(simulators):
        try:
            await asyncio.wait_for(simulator.stop(), timeout_s)
        except Exception:
            log.exception("simulator %s of plugin %s did not stop cleanly", type(simulator).__name__, plugin)


async def _print_unified_stream(hub: Hub) -> None:
    """Every unified event, dispatch order and status update, one line each, until cancelled."""
    assert hub.nc is not None
    events = await hub.nc.subscribe(f"{topology.PREFIX}.events.>")
    dispatch = await hub.nc.subscribe(f"{topology.PREFIX}.dispatch.>")
    await asyncio.gather(_print_each(events, format_event), _print_each(dispatch, format_dispatch))


async def _print_each(subscription: Subscription, format_message: Callable[[bytes], str]) -> None:
    async for message in subscription.messages:
        print(format_message(message.data), flush=True)


def demo(stop_after_s: float | None = None, *, verbose: bool = False, data_dir: Path = Path(".cityhub/demo")) -> int:
    """``cityhub demo``: embedded NATS, sample grids, every connector with its simulator; Ctrl-C (or
    ``stop_after_s``) stops everything. ``data_dir`` (emptied first) holds the demo's config, NATS store and
    log; the terminal shows the stream, the logs go to ``demo.log`` there (with ``verbose``, to the
    terminal instead). The connectors' webhook secret is generated for each run."""
    prepare_demo_folder(data_dir)
    log_file = None if verbose else data_dir / DEMO_LOG
    if log_file is not None:
        os.environ[LOG_FILE_VARIABLE] = str(log_file)  # the environment: connector processes log there too
    configure_logging(logging.INFO)
    os.environ[DEMO_SECRET_VARIABLE] = secrets.token_urlsafe(24)  # the environment: config reloads see it too
    path = data_dir / "cityhub.toml"
    path.write_text(demo_config(data_dir.resolve()))
    hub = Hub.from_file(path)
    banner = functools.partial(_demo_banner, stop_after_s=stop_after_s, config_path=path, log_file=log_file)
    asyncio.run(_serve(hub, banner))
    return 0


def prepare_demo_folder(folder: Path) -> None:
    """Empty ``folder`` for a fresh demo (a first look shows nothing older than the demo), refusing one that
    holds something other than an earlier demo's files."""
    marker = folder / DEMO_MARKER
    if folder.exists() and any(folder.iterdir()) and not marker.exists():
        raise HubError(f"{folder} is not empty and was not made by `cityhub demo`; "
                       "choose another folder with --data-dir (the demo empties its folder at each start)")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    marker.write_text("made by `cityhub demo`, emptied at its next start\n")
