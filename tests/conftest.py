"""Shared fixtures. Every test that needs NATS gets a real nats-server on a free port with its own store:
``nats_server``, ``nats_url``, ``restart_nats`` and ``mqtt_broker`` come from cityhub's own pytest plugin
(:mod:`hub.testing.pytest_plugin`, which third-party connectors get too); the ones below are the hub's own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from hub.nats.embedded import EmbeddedCluster, EmbeddedNats
from hub.nats.streams import ensure_streams

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


SMALL_MAX_PAYLOAD = 64 * 1024  # keeps tests of messages at the limit fast (nats-server's default is 1 MiB)


@pytest.fixture
def small_payload_server(tmp_path: Path):
    """A fresh JetStream-enabled nats-server that takes messages of at most ``SMALL_MAX_PAYLOAD`` bytes."""
    with EmbeddedNats(store_dir=tmp_path / "nats", extra_config=f"max_payload: {SMALL_MAX_PAYLOAD}") as server:
        yield server


@contextlib.asynccontextmanager
async def _client_with_streams(url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(url)
    await ensure_streams(client.jetstream())
    yield client
    await client.close()


@pytest.fixture
def nats_cluster(tmp_path: Path):
    """A fresh 3-node JetStream cluster on loopback for one test (its meta leader may still be electing)."""
    with EmbeddedCluster(tmp_path / "cluster") as cluster:
        yield cluster


@pytest.fixture
async def nc(nats_url):
    """A client of the test's nats-server, with CityHub's streams created."""
    async with _client_with_streams(nats_url) as client:
        yield client


@pytest.fixture
async def small_payload_nc(small_payload_server: EmbeddedNats):
    """A client of ``small_payload_server``, with CityHub's streams created."""
    async with _client_with_streams(small_payload_server.url) as client:
        yield client
