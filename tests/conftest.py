"""Shared fixtures. Every test that needs NATS gets a real nats-server on a free port with its own store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from hub.embedded import EmbeddedNats
from hub.streams import ensure_streams

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def nats_server(tmp_path: Path):
    """A fresh JetStream-enabled nats-server for one test."""
    with EmbeddedNats(store_dir=tmp_path / "nats") as server:
        yield server


@pytest.fixture
def restart_nats(nats_server: EmbeddedNats):
    """An async function that restarts the test's nats-server on its port with its store (streams, consumers
    and KV that the server keeps on disk survive; clients see a disconnect and reconnect)."""

    async def restart() -> None:
        await asyncio.to_thread(nats_server.stop)
        nats_server.launch()  # from the event loop's thread, which lives as long as the test
        await asyncio.to_thread(nats_server.wait_listening)

    return restart


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
