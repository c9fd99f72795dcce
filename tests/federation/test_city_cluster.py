"""The city's server as a 3-node JetStream cluster, from the configs ``cityhub nats-config`` writes, with a
district linked to every node: hand-offs reach the district while each city node in turn is down."""

from __future__ import annotations

import asyncio

import nats
import pytest

from hub.config import StreamLimits, StreamsConfig, TierConfig, TierParent
from hub.federation.deployment import (
    Deployment,
    Keys,
    Placement,
    hub_user,
    node_config_name,
    node_store,
    write_deployment,
)
from hub.nats.embedded import EmbeddedNats, free_port
from hub.nats.streams import ensure_streams
from hub.topology import handoff_subject
from tests.waiting import wait_until

NODES = 3
REPLICATED = StreamsConfig(**{name: StreamLimits(replicas=NODES) for name in StreamsConfig.model_fields})


@pytest.fixture
def deployment(tmp_path, hierarchy):
    city, district = hierarchy.scope("city"), hierarchy.scope("510104")
    placements = [Placement(city, "127.0.0.1", free_port(), free_port(), free_port()) for _ in range(NODES)]
    placements.append(Placement(district, "127.0.0.1", free_port(), free_port()))
    deployed = Deployment(placements, hierarchy)
    write_deployment(deployed, tmp_path / "config", tmp_path / "store")
    servers = {
        code: [
            EmbeddedNats(
                store_dir=node_store(tmp_path / "store", code, len(nodes), index),
                port=node.port,
                config_file=tmp_path / "config" / code / node_config_name(len(nodes), index),
            )
            for index, node in enumerate(nodes)
        ]
        for code, nodes in deployed.nodes.items()
    }
    every = [server for nodes in servers.values() for server in nodes]
    for server in every:
        server.launch()
    try:
        for server in every:
            server.wait_listening()
        yield deployed, servers, Keys(tmp_path / "config" / "creds")
    finally:
        for server in every:
            server.stop()


async def _connect(servers: list[EmbeddedNats], keys: Keys, deployed: Deployment, code: str):
    return await nats.connect(
        [server.url for server in servers],
        nkeys_seed=str(keys.path(hub_user(deployed.placements[code].scope))),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
    )


async def _ensure(js, streams: StreamsConfig, tier: TierConfig) -> None:
    """The hub's streams, once JetStream answers (the cluster elects its meta leader first)."""
    while True:
        try:
            await ensure_streams(js, streams, tier)
            return
        except (nats.errors.Error, nats.js.errors.Error):
            await asyncio.sleep(0.5)


async def _ingested(js, expected: int) -> bool:
    """Whether the district's ingest stream holds exactly ``expected`` hand-offs."""
    try:
        return (await js.stream_info("CITYHUB_INGEST")).state.messages == expected
    except (nats.errors.Error, nats.js.errors.Error):
        return False


@pytest.mark.slow
async def test_hand_offs_reach_the_district_while_each_city_node_in_turn_is_down(deployment):
    deployed, servers, keys = deployment
    city = await _connect(servers["city"], keys, deployed, "city")
    district = await _connect(servers["510104"], keys, deployed, "510104")
    try:
        await _ensure(city.jetstream(timeout=10), REPLICATED, TierConfig(scope="city", children=["510104"]))
        await _ensure(
            district.jetstream(timeout=10), StreamsConfig(), TierConfig(scope="510104", parent=TierParent(scope="city"))
        )
        for sent, down in enumerate([None, *servers["city"]], start=1):
            if down is not None:
                down.stop()
            while True:  # a stream leader may be moving to another node
                try:
                    await city.jetstream(timeout=10).publish(
                        handoff_subject("510104", "hotline_12345"),
                        b"{}",
                        headers={"Nats-Msg-Id": f"hotline_12345:{sent}"},
                    )
                    break
                except (nats.errors.Error, nats.js.errors.Error):
                    await asyncio.sleep(0.5)
            await wait_until(
                lambda: _ingested(district.jetstream(), sent),  # noqa: B023 - awaited at once
                f"hand-off {sent} at the district",
                timeout=120,
            )
            if down is not None:
                down.launch()
                down.wait_listening()
    finally:
        await city.close()
        await district.close()
