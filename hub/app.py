"""The hub: one handle (:class:`Hub`, passed to every hook as ``hub=``) that owns the config, the plugin
host, the metrics, the NATS connection (an embedded nats-server when no URL is configured), the pipeline,
the connector supervisor, the escalation timer and the admin API.

Several hubs with the same config elect one active hub through a lease in NATS (:mod:`hub.availability`):
the active one runs the pipeline, escalation and connectors; the others stand by with their engines built
and take over when the lease expires.

``cityhub run`` calls :func:`run`; ``cityhub demo`` is :mod:`hub.demo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from nats.aio.client import Client as NatsClient

from hub import topology
from hub.availability import Elector, Holder, Lease, LeaseLost, OutputFence, pipeline_fingerprint
from hub.config import HubConfig, NatsConfig, load_config
from hub.connector import Connector
from hub.connector_runtime import publish_close_request
from hub.dashboard.state import LiveState
from hub.errors import ConfigError, HubError
from hub.escalation import Escalator
from hub.federation.ownership import ownership_from_config
from hub.federation.services import TierServices
from hub.geofence import GridIndex
from hub.incidents import Deduper, IncidentMerger, MergePolicy
from hub.logs import configure_logging
from hub.metrics import Metrics
from hub.models import CloseRequest, Event
from hub.nats.embedded import EmbeddedNats, free_port
from hub.nats.natslink import NatsLink
from hub.nats.streams import ensure_buckets, ensure_streams
from hub.pipeline import (
    BatchProcessor,
    Engines,
    EventTimeWindow,
    IngestMessage,
    Pipeline,
    PipelineOptions,
    PipelineState,
)
from hub.plugins import PluginHost, build_plugin_host
from hub.reload import ConfigReloader
from hub.supervisor import Supervisor
from hub.taxonomy import BUILTIN_TAXONOMY, CategoryInfo, Taxonomy
from hub.transforms import Transform

log = logging.getLogger("cityhub")

# An open dashboard holds a server-sent event stream that never ends by itself: on stop the admin server waits
# this long for requests, then closes the rest (the page reconnects to the next hub).
ADMIN_STOP_S = 2
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
        self._fence: OutputFence | None = None  # the output fence, marked each time this hub becomes active
        self._engines: Engines | None = None  # built at start, so a standby takes over without loading grids
        self._standby: Pipeline | None = None  # the pipeline that takes over, keeping its state current meanwhile
        self._stopping = False
        self._run_connectors = True
        self._connectors_run = False  # the gate the connector processes follow is open (the hub is active)
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
        """The current NATS client (a new one after the server closed the last, :mod:`hub.nats.natslink`)."""
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
            self.embedded = EmbeddedNats(
                store_dir=embedded.store_dir, port=embedded.port or free_port(), mqtt_port=embedded.mqtt_port
            )
            self.embedded.launch()  # from the event loop's thread, which lives as long as the hub
            await asyncio.to_thread(self.embedded.wait_listening)
            nats_config = nats_config.model_copy(update={"servers": [self.embedded.url]})
        self.link = NatsLink(nats_config)
        nc = await self.link.open()
        self.link.add_listener(self._use_connection)
        await ensure_streams(nc.jetstream(), nats_config.streams, self.config.tier)
        await ensure_buckets(nc.jetstream(), nats_config.buckets)
        self.elector = await self._join_election(nats_config)
        await self.plugins.startup()
        self.taxonomy = build_taxonomy(self.config, await self.plugins.call("register_categories"))
        self._engines = build_engines(self.config, await self._transforms(), self.taxonomy)
        self.supervisor = Supervisor(
            nats_config, nats_config.streams, on_counters=self._connector_counters, until=self._connectors_until
        )
        self.plugins.add_listener(self._plugin_changed)
        self._run_connectors = connectors
        await self._start_every_connector()  # waiting for this hub to become active
        if admin:
            await self._start_admin()
            self.elector.lease.me = dataclasses.replace(self.elector.lease.me, admin_url=self.admin_url)
        assert self.nc is not None
        self._fence = OutputFence(self.nc.jetstream(), self.elector.lease)
        await self._stand_by()
        await self.elector.start()
        if self.config.source is not None:
            self._watch_task = asyncio.create_task(self.reloader.watch(self._stop_watching), name="cityhub.watch")
        log.info(
            "hub started: NATS %s, admin %s",
            self.nats_url if self.embedded else "configured servers",
            self.admin_url or "off",
        )

    async def stop(self) -> None:
        """Stop in reverse order; the pipeline finishes its batch and snapshots."""
        self._stopping = True
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
        if self.supervisor is not None:
            await self.supervisor.stop_all()
        if self._standby is not None:
            standby, self._standby = self._standby, None
            await standby.stop()
        await self.plugins.shutdown()
        if self.link is not None:
            await self.link.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)

    async def _use_connection(self, nc: NatsClient) -> None:
        """Move every part that works on NATS onto the client that replaced a closed one."""
        if self._fence is not None:
            self._fence.use_connection(nc.jetstream())
        for pipeline in (self.pipeline, self._standby):
            if pipeline is not None:
                await pipeline.use_connection(nc)
        if self.escalator is not None:
            await self.escalator.use_connection(nc)
        if self.tiers is not None:
            await self.tiers.use_connection(nc)
        if self.dashboard is not None:
            await self.dashboard.use_connection(nc)

    # active and standby

    async def _join_election(self, nats_config: NatsConfig) -> Elector:
        me = Holder.of_this_process(pipeline_fingerprint(self.config))
        lease = Lease(None, me, self.config.availability.lease_ttl.total_seconds(), self.config.nats.buckets.replicas)
        elector = Elector(
            lease,
            nats_config,
            self._activate,
            self._deactivate,
            self.metrics.role,
            running=lambda: self.pipeline is not None and self.pipeline.running,
        )
        await elector.join()
        return elector

    async def _stand_by(self) -> None:
        """Build the pipeline that takes over when this hub becomes active, and keep its state current."""
        assert self.nc is not None and self._fence is not None and self._engines is not None
        self._standby = Pipeline(
            self.nc,
            self._engines,
            self.metrics,
            pipeline_options(self.config),
            self._transform_outcome,
            fence=self._fence,
        )
        await self._standby.stand_by()

    async def _activate(self) -> None:
        """Start what only the active hub runs: the pipeline (its state kept current while standing by),
        escalation, connectors. Logs how long each part took."""
        assert self.nc is not None and self.elector is not None and self._fence is not None
        assert self._standby is not None
        laps = _Laps()
        await self._fence.mark()
        laps.lap("fence marks")
        term = self.elector.lease.term  # names the durable consumers: a deposed hub's acks reach none of ours
        self.pipeline, self._standby = self._standby, None
        await self.pipeline.start(term)
        laps.lap("pipeline")
        self.escalator = Escalator(self.nc, fence=self._fence, term=term)
        await self.escalator.start()
        self.tiers = TierServices(self.config, self.nc)
        await self.tiers.start()
        laps.lap("escalation and tiers")
        self._connectors_run = True
        if self.supervisor is not None:
            self.supervisor.gate.refresh()  # the connector processes, waiting since the start, run from now
        log.info("active %s", laps)

    def _connectors_until(self) -> float:
        """Until when (monotonic) this hub's connectors may run: while it is active, as long as its lease holds."""
        if not self._connectors_run or self.elector is None:
            return 0.0
        return self.elector.lease.valid_until

    async def _deactivate(self) -> None:
        """Stop connectors, escalation and the pipeline; never raises, so the hub always ends up standing by.
        A pipeline whose lease is gone (or whose NATS is away) stops without its final snapshot: the next
        active hub restores an earlier one and replays from there."""
        self._connectors_run = False
        if self.supervisor is not None:
            await (self.supervisor.stop_all() if self._stopping else self.supervisor.stand_down())
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
        if self._standby is None and not self._stopping:
            await self._stand_by()  # afresh: the old pipeline's state may hold input whose outputs were never stored

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
                waiting.append(
                    f"the ingest stream {topology.INGEST_STREAM} to answer ({type(exc).__name__}: "
                    f"{exc}; a NATS cluster elects a new stream leader within seconds)"
                )
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
            "nats": {
                "connected": connected,
                "embedded": self.embedded is not None,
                "max_payload": self.nc.max_payload if self.nc else None,
                "replaced": self.link.replaced if self.link else 0,
            },
            "pipeline": self._pipeline_health(),
            "connectors": self.supervisor.health() if self.supervisor else {},
            "escalation": self.escalator.health() if self.escalator else {},
            "tiers": self.tiers.health() if self.tiers else {},
            "dashboard": self.dashboard.health() if self.dashboard else {},
        }

    def _pipeline_health(self) -> dict[str, Any]:
        """The active pipeline's health; on a standby, what the state it keeps current covers."""
        if self.pipeline is not None:
            pipeline = self.pipeline
            return {
                **pipeline.health(),
                "counts": dict(pipeline.counts),
                "last_sequence": pipeline.state.last_seq,
                "open_incidents": len(pipeline.state.incidents),
            }
        if self._standby is not None:
            return {"running": False, "counts": {}, **self._standby.standby_health()}
        return {"running": False, "status": "stopped", "counts": {}, "last_sequence": 0, "open_incidents": 0}

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
        for pipeline in (self.pipeline, self._standby):
            if pipeline is not None:
                pipeline.swap_engines(self._engines)
        if self.nc is not None:
            await ensure_streams(self.nc.jetstream(), config.nats.streams, config.tier)

    async def dry_run(self, event: Event) -> dict[str, Any]:
        """What the pipeline would do with ``event`` (grid path, incident, matched rules), on a copy of the
        live state, publishing nothing. The incident records are copied deeply: merging appends to their lists
        (sources, reports, matched rules), and those of the live incidents must not change."""
        if self.pipeline is None:
            holder = self.elector.holder if self.elector is not None else None
            raise HubError(
                "the pipeline is not running"
                + (
                    f": this hub stands by; ask the active hub ({holder.admin_url})"
                    if holder and holder.admin_url
                    else ""
                )
            )
        engines = self.pipeline.engines
        live = self.pipeline.state
        state = PipelineState(
            Deduper(engines.dedup_window_s, 16),
            IncidentMerger.restore(live.merger.snapshot(), engines.merge_policy),
            copy.deepcopy(live.incidents),
            live.last_seq,
            live.watermark,
        )
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
        request = CloseRequest(incident_id=incident_id, reason=reason, time=datetime.now(UTC))
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
        return [
            (plugin, transform)
            for plugin, transforms in await self.plugins.call("register_transforms")
            for transform in transforms
        ]

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
        for pipeline in (self.pipeline, self._standby):
            if pipeline is not None and self._engines is not None:
                pipeline.swap_engines(self._engines)
        if self.supervisor is None:
            return
        for name in self._connectors.pop(plugin, []):
            await self.supervisor.stop(name)
        if enabled and self._run_connectors:  # they run while this hub is active (the supervisor's gate)
            await self._start_connectors(plugin)

    async def _start_every_connector(self) -> None:
        if self._run_connectors:
            for plugin in self.plugins.names():
                if self.plugins.is_enabled(plugin):
                    await self._start_connectors(plugin)

    async def _start_connectors(self, plugin: str) -> None:
        assert self.supervisor is not None
        for _, provided in await self.plugins.call("register_connectors", only=plugin):
            for connector in provided:
                if not isinstance(connector, Connector):
                    raise HubError(
                        f"plugin {plugin!r} returned {connector!r} from register_connectors, not a Connector"
                    )
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
        port = self.config.admin.port or free_port(self.config.admin.host)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=self.config.admin.host,
                port=port,
                log_level="warning",
                log_config=None,
                lifespan="off",  # its records go to our handler
                timeout_graceful_shutdown=ADMIN_STOP_S,
            )
        )
        self._admin_server = server
        self._admin_task = asyncio.create_task(server.serve(), name="cityhub.admin")
        while not server.started:
            if self._admin_task.done():
                self._admin_task.result()
            await asyncio.sleep(0.05)
        self.admin_url = f"http://{self.config.admin.host}:{port}"


class _Laps:
    """How long each step of a sequence took: ``lap(name)`` at the end of each; ``str`` lists them."""

    def __init__(self) -> None:
        self._started = self._last = time.monotonic()
        self._laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self._laps.append((name, now - self._last))
        self._last = now

    def __str__(self) -> str:
        steps = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self._laps)
        return f"in {self._last - self._started:.2f} s ({steps})"


# --- entry points ------------------------------------------------------------------------------------


async def serve(hub: Hub, banner: Callable[[Hub, asyncio.Event], Awaitable[None]] | None = None) -> None:
    """Start ``hub`` and run it until SIGINT/SIGTERM; ``banner`` (the demo's terminal) runs meanwhile and may
    set the event it is given to stop the hub."""
    stop = asyncio.Event()
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
    asyncio.run(serve(hub))
    return 0
