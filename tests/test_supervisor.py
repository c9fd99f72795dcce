"""Connectors in their own processes: a crashing one is restarted, a blocked one is killed and restarted,
and neither stalls the pipeline."""

from __future__ import annotations

import asyncio

import nats

from hub import topology
from hub.config import NatsConfig
from hub.metrics import Metrics
from hub.nats.streams import ensure_streams
from hub.pipeline import Pipeline, PipelineOptions
from hub.supervisor import Supervisor
from tests.pipeline_support import engines, event, ingest_item, publish_raw, stream_count
from tests.supervised_connectors import (
    BlockingConnector,
    ClosedByTheServerConnector,
    CrashingConnector,
    TickingConnector,
)
from tests.waiting import wait_until


async def test_crashing_and_blocking_connectors_do_not_stall_the_pipeline(nats_url):
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    pipeline = Pipeline(nc, engines(), Metrics(), PipelineOptions(batch_size=100, fetch_timeout_s=0.1))
    await pipeline.start()
    supervisor = Supervisor(NatsConfig(servers=[nats_url]), hang_timeout_s=3.0)
    try:
        for connector in (BlockingConnector(), CrashingConnector(), TickingConnector()):
            await supervisor.start(connector)
        await publish_raw(nats_url, [ingest_item(event(n, offset_m=n * 500)) for n in range(50)])
        await wait_until(lambda: pipeline.counts["out"] >= 50)

        health = supervisor.health
        await wait_until(lambda: health()["crashing"]["restarts"] >= 2 and health()["blocking"]["restarts"] >= 1)
        assert health()["blocking"]["last_exit"] == "killed: no health report (hung)"
        assert "exit code 1" == health()["crashing"]["last_exit"]
        ticking = health()["ticking"]
        assert ticking["alive"] and ticking["restarts"] == 0
        await wait_until(lambda: health()["ticking"]["counters"].get("published", 0) >= 20)
        before = pipeline.counts["out"]
        await wait_until(lambda: pipeline.counts["out"] >= before + 10)  # still flowing while the others misbehave
    finally:
        await supervisor.stop_all()
        await pipeline.stop()
        await nc.close()
    assert supervisor.health() == {}


async def test_a_connector_whose_connection_the_server_closes_is_restarted_with_a_new_one(nats_url, nc):
    supervisor = Supervisor(NatsConfig(servers=[nats_url]))
    try:
        await supervisor.start(ClosedByTheServerConnector())
        await wait_until(lambda: supervisor.health()["closed_by_server"]["restarts"] >= 1, "a restart")
        while await stream_count(nats_url, topology.INGEST_STREAM) < 2:  # each incarnation published its event
            await asyncio.sleep(0.05)
    finally:
        await supervisor.stop_all()
