"""Shared fixtures. Every test that needs NATS gets a real nats-server on a free port with its own store."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from hub.embedded import EmbeddedCluster, EmbeddedNats
from hub.streams import ensure_streams

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def nats_server(tmp_path: Path):
    """A fresh JetStream-enabled nats-server for one test."""
    with EmbeddedNats(store_dir=tmp_path / "nats") as server:
        yield server


@pytest.fixture
def nats_cluster(tmp_path: Path):
    """A fresh 3-node JetStream cluster on loopback for one test (its meta leader may still be electing)."""
    with EmbeddedCluster(tmp_path / "cluster") as cluster:
        yield cluster


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture
async def nc(nats_url):
    """A client of the test's nats-server, with CityHub's streams created."""
    client = await nats.connect(nats_url)
    await ensure_streams(client.jetstream())
    yield client
    await client.close()
