"""The hub on a 3-node nats-server cluster (loopback, every CityHub stream and bucket at 3 replicas), under
a steady load: kill -9 of one node and its restart, kill -9 of the node that leads the ingest stream, and a
rolling restart of all three. Each time: nothing lost or doubled (every event in the same incident as in an
uninterrupted pass over the ingest stream's order), the hub carries on without a restart, and whenever
``/ready`` says 503 it says what it waits for."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from hub import topology
from hub.app import build_engines
from hub.availability import LEASE_BUCKET
from hub.config import load_config
from hub.connector_runtime import encode_ingest
from hub.models import Event
from hub.nats.embedded import EmbeddedCluster
from hub.nats.streams import ESCALATION_BUCKET, SNAPSHOT_BUCKET
from tests.hub_processes import HubProcess
from tests.pipeline_support import hub_toml, read_stream, stream_count
from tests.test_durability import GAS_RULE, city_event, consumer_done, oracle, unified_assignment
from tests.test_failover import _assert_exactly_once_in_the_same_incidents

pytestmark = pytest.mark.slow

PLACES = 600
PACE_PER_S = 2_000  # a steady load from before the disruption until after the hub's recovery from it
REPLICATED = "\n".join(
    f"[nats.streams.{name}]\nreplicas = 3\n" for name in ("ingest", "events", "incidents", "dispatch", "dlq")
)
REPLICATED += "\n[nats.buckets]\nreplicas = 3\n"
ALL_STREAMS = [
    topology.INGEST_STREAM,
    *topology.OUTPUT_STREAMS,  # a hub without [tier] makes no tier streams
    f"KV_{LEASE_BUCKET}",
    f"KV_{ESCALATION_BUCKET}",
    f"OBJ_{SNAPSHOT_BUCKET}",
]

Disruption = Callable[[EmbeddedCluster], Awaitable[None]]


def _config(tmp_path: Path, urls: list[str]) -> Path:
    config = tmp_path / "cityhub.toml"
    toml = hub_toml(urls[0], GAS_RULE + REPLICATED, pipeline="batch_size = 500")
    config.write_text(toml.replace(f'servers = ["{urls[0]}"]', f"servers = {urls!r}".replace("'", '"')))
    return config


async def _connect(urls: list[str]) -> nats.NATS:
    return await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)


async def _jetstream_ready(urls: list[str]) -> None:
    """Wait for the cluster's JetStream meta leader (elected a few seconds after the nodes start)."""
    nc = await _connect(urls)
    try:
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(Exception):
                    await nc.jetstream(timeout=2).account_info()
                    return
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def _publish_paced(urls: list[str], stop: asyncio.Event) -> list[Event]:
    """Publish events to ingest at ``PACE_PER_S`` until ``stop`` is set, re-sending (same Nats-Msg-Id)
    whatever is not acknowledged, however the cluster changes meanwhile; returns the events published."""
    nc = await _connect(urls)
    js = nc.jetstream(timeout=5)
    chunk = PACE_PER_S // 10
    published: list[Event] = []
    try:
        while not stop.is_set():
            start = len(published)
            pending = [(index, city_event(index, PLACES)) for index in range(start, start + chunk)]
            published.extend(event for _, event in pending)
            while pending:
                results = await asyncio.gather(*(_publish_one(js, index, event) for index, event in pending))
                pending = [item for item, stored in zip(pending, results, strict=True) if not stored]
                if pending:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
    return published


async def _publish_one(js, index: int, event: Event) -> bool:  # noqa: ANN001 - nats JetStreamContext
    msg_id, raw = encode_ingest(event)
    try:
        # Distinct msg ids for the input's re-deliveries: the pipeline's own dedup must catch those.
        await js.publish(
            topology.ingest_subject(event.source), raw, headers={topology.HEADER_MSG_ID: f"{msg_id}@{index}"}
        )
    except Exception:  # no leader, no connection: sent again
        return False
    return True


async def _expected_in_stream_order(urls: list[str], events: list[Event], config: Path) -> dict[str, str]:
    """The oracle over the events in the order the ingest stream stored them (re-sends reorder them)."""
    stored = await read_stream(urls, topology.INGEST_STREAM)
    ordered = [events[int(msg.headers[topology.HEADER_MSG_ID].rsplit("@", 1)[1])] for msg in stored]
    assert len(ordered) == len(events)
    return oracle(ordered, build_engines(load_config(config)))


async def _watch_ready(hub: HubProcess, seen: list[tuple[int, list[str]]]) -> None:
    async with httpx.AsyncClient(base_url=hub.admin_url, timeout=3.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get("/ready")
                seen.append((response.status_code, response.json()["waiting_for"]))
            await asyncio.sleep(0.1)


async def _answer(question: Callable[[], Awaitable[Any]]) -> Any:
    """Ask until the cluster answers (a stream may be electing its leader)."""
    while True:
        with contextlib.suppress(Exception):
            return await question()
        await asyncio.sleep(0.2)


async def _progress(urls: list[str], more: int = 1_000) -> None:
    """Wait until the unified stream has ``more`` events than now."""
    count = functools.partial(_answer, functools.partial(stream_count, urls, topology.EVENTS_STREAM))
    start = await count()
    async with asyncio.timeout(120):
        while await count() < start + more:
            await asyncio.sleep(0.1)


async def _all_replicas_current(urls: list[str]) -> None:
    """Wait until every CityHub stream and bucket has a leader and all its replicas have caught up."""
    nc = await _connect(urls)
    js = nc.jetstream(timeout=2)
    try:
        async with asyncio.timeout(120):
            for stream in ALL_STREAMS:
                while True:
                    with contextlib.suppress(Exception):
                        cluster = (await js.stream_info(stream)).cluster
                        if (
                            cluster.leader
                            and len(cluster.replicas or []) == 2
                            and all(replica.current for replica in cluster.replicas)
                        ):
                            break
                    await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def _under_load(nats_cluster: EmbeddedCluster, tmp_path: Path, disrupt: Disruption) -> None:
    urls = nats_cluster.urls
    await _jetstream_ready(urls)
    config = _config(tmp_path, urls)
    hub = HubProcess(config, "hub").start()
    seen: list[tuple[int, list[str]]] = []
    stop_loading = asyncio.Event()
    loading = asyncio.create_task(_publish_paced(urls, stop_loading))
    watching = asyncio.create_task(_watch_ready(hub, seen))
    try:
        await hub.wait_for_role("active")
        await _progress(urls)
        await disrupt(nats_cluster)
        stop_loading.set()
        events = await loading
        async with asyncio.timeout(180):
            while not await _answer(functools.partial(consumer_done, urls)):
                await asyncio.sleep(0.2)
        assert hub.alive, f"the hub exited; see {hub.log}"
        expected = await _expected_in_stream_order(urls, events, config)
    finally:
        stop_loading.set()
        watching.cancel()
        hub.stop()
    _assert_exactly_once_in_the_same_incidents(await unified_assignment(urls), expected)
    assert seen and seen[-1] == (200, []), seen[-5:]
    assert all(waiting for status, waiting in seen if status != 200), [s for s in seen if s[0] != 200][:5]
    print("while disrupted, /ready said:", sorted({reason.split(" (")[0] for _, waiting in seen for reason in waiting}))


async def _kill_and_restart(cluster: EmbeddedCluster, node) -> None:  # noqa: ANN001 - EmbeddedNats
    node.kill()
    await _progress(cluster.urls)
    await asyncio.to_thread(cluster.restart, node)
    await _all_replicas_current(cluster.urls)
    await _progress(cluster.urls)


async def test_kill_9_of_one_node_then_its_restart(nats_cluster, tmp_path):
    async def disrupt(cluster: EmbeddedCluster) -> None:
        await _kill_and_restart(cluster, cluster.nodes[1])

    await _under_load(nats_cluster, tmp_path, disrupt)


async def test_kill_9_of_the_node_leading_the_ingest_stream(nats_cluster, tmp_path):
    async def disrupt(cluster: EmbeddedCluster) -> None:
        nc = await _connect(cluster.urls)
        leader = (await _answer(functools.partial(nc.jetstream().stream_info, topology.INGEST_STREAM))).cluster.leader
        await nc.close()
        await _kill_and_restart(cluster, cluster.node_named(leader))

    await _under_load(nats_cluster, tmp_path, disrupt)


async def test_rolling_restart_of_all_three_nodes(nats_cluster, tmp_path):
    async def disrupt(cluster: EmbeddedCluster) -> None:
        for node in cluster.nodes:
            await asyncio.to_thread(node.stop)
            await asyncio.to_thread(cluster.restart, node)
            await _all_replicas_current(cluster.urls)
            await _progress(cluster.urls, more=500)

    await _under_load(nats_cluster, tmp_path, disrupt)
