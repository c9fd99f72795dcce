"""Always on: how long a standby takes over after kill -9 of the active hub under load, and how many events/s
a hub does while its 3-node NATS cluster has lost a node, beside the same run's figure with every node up.

Real processes throughout: ``cityhub run`` (tests/hub_processes.py) against real nats-servers.

- **Takeover.** Two hubs on one nats-server, a steady load of ``PACE`` events/s into ingest. Each round kills the
  active hub with SIGKILL and times until the standby's pipeline has stored its first outputs (its
  ``/health`` counts them); the killed hub comes back as the next standby. The peer is what a single hub
  gets from a process supervisor (systemd ``Restart=always``): kill -9, start it again at once, time until
  its first outputs. The note gives the lease's share: the lease expires ``lease_ttl`` (3 s) after the
  active's last renewal, so a standby waits 2-3.3 s of it.
- **Node loss.** One hub on a 3-node cluster, every stream and bucket at 3 replicas, a backlog in ingest.
  Each round times ``ROUND_EVENTS`` more events in the unified stream: with every node up (the peer row),
  and from a kill -9 of the node leading the ingest stream on (the node comes back between rounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError

from benchmarks.report import label
from hub import topology
from hub.availability import terms
from hub.connector_runtime import encode_ingest
from hub.models import Category, CoordSystem, Event, Location
from hub.nats.embedded import EmbeddedCluster, EmbeddedNats
from hub.pipeline import PIPELINE_CONSUMER
from hub.plugins import ALLOW_LIST_ENV
from tests.hub_processes import HubProcess

TAKEOVER_GROUP = "Always on: kill -9 of the active hub under load, until the first outputs after it (seconds)"
NODE_LOSS_GROUP = "Always on: a hub on a 3-node NATS cluster, events/s with every node up and after one is killed"
PACE = 2_000  # events/s into ingest while hubs are killed
KILLS = 10
RESTARTS = 5
ROUND_EVENTS = 10_000
ROUNDS = 3
GRIDS = Path(__file__).resolve().parents[1] / "hub" / "data" / "grids"
ORIGIN = (104.0756, 30.5717)  # GCJ-02, in Jinjiang district
CATEGORIES = [Category.GAS_LEAK, Category.WATER_LEAK, Category.NOISE, Category.FIRE]
REPLICATED = "".join(
    f"[nats.streams.{name}]\nreplicas = 3\n" for name in ("ingest", "events", "incidents", "dispatch", "dlq")
)
_lease_waits: list[float] = []


def _config(folder: Path, urls: list[str], sections: str = "") -> Path:
    servers = ", ".join(f'"{url}"' for url in urls)
    config = folder / "cityhub.toml"
    config.write_text(f"""[nats]
name = "${{HUB_NAME:-cityhub}}"
servers = [{servers}]
{sections}
[admin]
port = 0

[geo]
layers = [{{ name = "admin", path = "{GRIDS}/chengdu_admin_gcj02.geojson", crs = "gcj02" }}]

[pipeline]
fetch_timeout = "50ms"

[dashboard]
window = "5m"  # a hub brought back between rounds replays 5 minutes of outputs into its dashboard, not a day

[[rules]]
id = "gas"
when = 'category == "gas_leak"'
actions = {{ severity = "critical", route = ["gridworker"] }}
""")
    return config


def _event(n: int, start: datetime) -> tuple[str, bytes]:
    place = n % 2_000
    event = Event(
        source="iot_mqtt",
        source_event_id=f"b-{n}",
        category=CATEGORIES[place % 4],
        time=start + timedelta(milliseconds=n),
        location=Location(
            lon=ORIGIN[0] + (place % 40) * 0.003, lat=ORIGIN[1] + (place // 40) * 0.003, crs=CoordSystem.GCJ02
        ),
    )
    return encode_ingest(event)


async def _publish(
    urls: list[str], first: int, count: int, pace_per_s: float | None = None, stop: threading.Event | None = None
) -> int:
    """Publish events ``first``.. to ingest (in steps of 20, paced at ``pace_per_s`` when given) until ``count``
    are stored or ``stop`` is set, re-sending what is not acknowledged; returns the next event number."""
    nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream(timeout=5)
    start, began, n = datetime.now(UTC), time.monotonic(), first
    try:
        while n < first + count and not (stop and stop.is_set()):
            step = [_event(index, start) for index in range(n, n + 20)]
            with contextlib.suppress(Exception):  # a node lost, a leader electing: sent again
                futures = [
                    await js.publish_async(
                        topology.ingest_subject("iot_mqtt"), raw, headers={topology.HEADER_MSG_ID: msg_id}
                    )
                    for msg_id, raw in step
                ]
                await asyncio.gather(*futures)
                n += len(step)
            if pace_per_s:
                await asyncio.sleep(max(0.0, began + (n - first) / pace_per_s - time.monotonic()))
    finally:
        await nc.close()
    return n


@contextlib.contextmanager
def _steady_load(urls: list[str]):
    """``PACE`` events/s into ingest from a thread of its own, for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(_publish(urls, 0, 10**9, PACE, stop)), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _health(hub: HubProcess) -> dict:
    return asyncio.run(hub.health()) or {}


def _wait(condition, what: str, timeout: float = 120.0) -> None:  # noqa: ANN001 - a callable
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.02)


async def _fence_mark(js) -> int:  # noqa: ANN001 - nats JetStreamContext
    """The stream sequence of the active hub's mark on the unified stream (0 while there is none)."""
    try:
        return (await js.get_last_msg(topology.EVENTS_STREAM, topology.fence_subject(topology.EVENTS_STREAM))).seq
    except NotFoundError:
        return 0


async def _new_active_stores(urls: list[str], old_mark: int, killed_at: float) -> float:
    """Wait until a hub that took over has put its mark on the unified stream and stored an output after it
    (the old hub's late outputs are refused from its mark on, so that output is the new hub's); returns the
    seconds from ``killed_at`` (monotonic) to the mark."""
    nc = await nats.connect(servers=urls)
    js = nc.jetstream(timeout=2)
    try:
        async with asyncio.timeout(120):
            while (mark := await _fence_mark(js)) == old_mark:
                await asyncio.sleep(0.01)
            marked_after = time.monotonic() - killed_at
            while (await js.stream_info(topology.EVENTS_STREAM)).state.last_seq <= mark:
                await asyncio.sleep(0.01)
    finally:
        await nc.close()
    return marked_after


def _current_mark(urls: list[str]) -> int:
    async def read() -> int:
        nc = await nats.connect(servers=urls)
        try:
            return await _fence_mark(nc.jetstream(timeout=2))
        finally:
            await nc.close()

    return asyncio.run(read())


def _stored_outputs(hub: HubProcess) -> bool:
    return _health(hub).get("pipeline", {}).get("counts", {}).get("out", 0) > 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with EmbeddedNats(store_dir=tmp_path_factory.mktemp("nats")) as running:
        yield running


@pytest.fixture
def no_connectors(monkeypatch):
    """The hubs run no connector (they listen on fixed ports); the pipeline is what takes over."""
    monkeypatch.setenv(ALLOW_LIST_ENV, "redaction")


# --- takeover ------------------------------------------------------------------------------------------


class _Pair:
    """An active and a standby ``cityhub run``: ``ready`` waits for both (bringing a killed hub back as the
    standby) and for the standby to have caught up; ``kill_active`` kills the active one and waits for the
    standby's first outputs."""

    def __init__(self, config: Path, urls: list[str]):
        self.urls = urls
        self.hubs = [HubProcess(config, "hub-a").start(), HubProcess(config, "hub-b").start()]
        self.active: HubProcess | None = None
        self.mark = 0

    def ready(self) -> None:
        for index, hub in enumerate(self.hubs):
            if not hub.alive:
                self.hubs[index] = HubProcess(hub.config, hub.name).start()
        _wait(self._both, "an active hub with outputs and a standby that has caught up", timeout=300)
        self.mark = _current_mark(self.urls)

    def kill_active(self) -> None:
        assert self.active is not None
        self.active.kill()
        _lease_waits.append(asyncio.run(_new_active_stores(self.urls, self.mark, time.monotonic())))

    def stop(self) -> None:
        for hub in self.hubs:
            hub.stop()

    def _both(self) -> bool:
        healths = [_health(hub) for hub in self.hubs]
        roles = [health.get("availability", {}).get("role") for health in healths]
        if sorted(roles, key=str) != ["active", "standby"]:
            return False
        active, standby = healths[roles.index("active")]["pipeline"], healths[roles.index("standby")]["pipeline"]
        self.active = self.hubs[roles.index("active")]
        return active["counts"].get("out", 0) > 0 and active["last_sequence"] - standby["last_sequence"] < PACE


@pytest.mark.timeout(900)
def test_standby_takes_over(benchmark, server, no_connectors, tmp_path):
    with _steady_load([server.url]):
        pair = _Pair(_config(tmp_path, [server.url]), [server.url])
        try:
            benchmark.pedantic(pair.kill_active, setup=pair.ready, rounds=KILLS, iterations=1)
        finally:
            pair.stop()
    rounds = benchmark.stats.stats
    label(
        benchmark,
        TAKEOVER_GROUP,
        "cityhub",
        1,
        measure="duration",
        note=(
            f"{KILLS} kills under {PACE:,} events/s, until the first output stored after the new active hub's fence "
            f"mark; kill to that mark (the lease expiring, lease_ttl 3 s, and the takeover's first step): median "
            f"{statistics.median(_lease_waits):.2f} s, longest {max(_lease_waits):.2f} s; "
            f"median {rounds.median:.2f} s, "
            f"longest {rounds.max:.2f} s"
        ),
    )


@pytest.mark.timeout(900)
def test_restart_without_a_standby(benchmark, server, no_connectors, tmp_path):
    urls = [server.url]
    with _steady_load(urls):
        config = _config(tmp_path, urls)
        hub = HubProcess(config, "hub-a").start()
        mark = 0

        def ready() -> None:
            nonlocal mark
            _wait(lambda: _stored_outputs(hub), "the hub's outputs")
            mark = _current_mark(urls)

        def kill_and_restart() -> None:
            nonlocal hub
            hub.kill()
            killed_at = time.monotonic()
            hub = HubProcess(config, "hub-a").start()
            asyncio.run(_new_active_stores(urls, mark, killed_at))

        try:
            benchmark.pedantic(kill_and_restart, setup=ready, rounds=RESTARTS, iterations=1)
        finally:
            hub.stop()
    label(
        benchmark,
        TAKEOVER_GROUP,
        "peer",
        1,
        measure="duration",
        note=f"{RESTARTS} kills under {PACE:,} events/s, each followed at once by a new cityhub run (a process "
        "supervisor's restart), which loads its grids, restores the snapshot and replays the input since",
    )


# --- node loss -----------------------------------------------------------------------------------------


class _ClusterHub:
    """One ``cityhub run`` on a 3-node cluster, with a backlog in ingest topped up before each round."""

    def __init__(self, folder: Path):
        self.cluster = EmbeddedCluster(folder / "cluster").start()
        self.urls = self.cluster.urls
        asyncio.run(_answering(self.urls))
        config = _config(folder, self.urls, REPLICATED + "[nats.buckets]\nreplicas = 3\n")
        self.hub = HubProcess(config, "hub")
        self.hub.start()  # creates the replicated streams; the backlog follows
        _wait(lambda: _health(self.hub).get("availability", {}).get("role") == "active", "the hub")
        self.published = 0
        self.killed: EmbeddedNats | None = None

    def every_node_up(self) -> None:
        """Bring a killed node back, wait until every replica is current, and leave a backlog of at least two
        rounds in ingest."""
        if self.killed is not None:
            self.cluster.restart(self.killed)
            self.killed = None
        asyncio.run(_replicas_current(self.urls))
        while (backlog := asyncio.run(_ask(self.urls, _unprocessed))) < 2 * ROUND_EVENTS:
            self.published = asyncio.run(_publish(self.urls, self.published, 3 * ROUND_EVENTS - backlog))

    def grow(self) -> None:
        asyncio.run(_grown(self.urls, ROUND_EVENTS))

    def kill_ingest_leader_and_grow(self) -> None:
        leader = asyncio.run(_ingest_leader(self.urls))
        self.killed = self.cluster.node_named(leader)
        self.killed.kill()
        self.grow()

    def stop(self) -> None:
        self.hub.stop()
        self.cluster.stop()


async def _answering(urls: list[str]) -> None:
    nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(Exception):
                    await nc.jetstream(timeout=2).account_info()
                    return
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def _ask(urls: list[str], question):  # noqa: ANN001, ANN202 - a coroutine function of a JetStreamContext
    """Ask until the cluster answers (a stream may be electing its leader)."""
    nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        while True:
            with contextlib.suppress(Exception):
                return await question(nc.jetstream(timeout=2))
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def _unprocessed(js) -> int:  # noqa: ANN001 - nats JetStreamContext
    """Ingest messages past the pipeline's acknowledgements."""
    last = (await js.stream_info(topology.INGEST_STREAM)).state.last_seq
    return last - await terms.acknowledged(js, topology.INGEST_STREAM, PIPELINE_CONSUMER)


async def _ingest_leader(urls: list[str]) -> str:
    return (await _ask(urls, lambda js: js.stream_info(topology.INGEST_STREAM))).cluster.leader


async def _grown(urls: list[str], more: int) -> None:
    """Wait until the unified stream holds ``more`` messages than now."""

    async def count(js) -> int:  # noqa: ANN001
        return (await js.stream_info(topology.EVENTS_STREAM)).state.messages

    start = await _ask(urls, count)
    async with asyncio.timeout(300):
        while await _ask(urls, count) < start + more:
            await asyncio.sleep(0.05)


async def _replicas_current(urls: list[str]) -> None:
    async def current(js) -> bool:  # noqa: ANN001
        for stream in (topology.INGEST_STREAM, *topology.OUTPUT_STREAMS):
            cluster = (await js.stream_info(stream)).cluster
            if not cluster.leader or len(cluster.replicas or []) != 2 or not all(r.current for r in cluster.replicas):
                return False
        return True

    while not await _ask(urls, current):
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def cluster_hub(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_LIST_ENV, "redaction")
        running = _ClusterHub(tmp_path_factory.mktemp("always_on"))
        try:
            yield running
        finally:
            running.stop()


@pytest.mark.timeout(900)
def test_every_node_up(benchmark, cluster_hub):
    benchmark.pedantic(cluster_hub.grow, setup=cluster_hub.every_node_up, rounds=ROUNDS, iterations=1)
    label(
        benchmark,
        NODE_LOSS_GROUP,
        "peer",
        ROUND_EVENTS,
        note="3 of 3 nodes, every CityHub stream and bucket at 3 replicas, a backlog in ingest: the steady state",
    )


@pytest.mark.timeout(900)
def test_ingest_leader_killed(benchmark, cluster_hub):
    benchmark.pedantic(
        cluster_hub.kill_ingest_leader_and_grow, setup=cluster_hub.every_node_up, rounds=ROUNDS, iterations=1
    )
    label(
        benchmark,
        NODE_LOSS_GROUP,
        "cityhub",
        ROUND_EVENTS,
        note="from kill -9 of the node leading CITYHUB_INGEST: the stream elects a new leader, the hub reconnects "
        "if that node was its server, and carries on with 2 of 3 nodes (the node comes back between rounds)",
    )
