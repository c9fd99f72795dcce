"""Shared fixtures. Every test that needs NATS gets a real nats-server on a free port with its own store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from hub.embedded import EmbeddedNats
from hub.streams import ensure_streams

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def nats_server(tmp_path: Path):
    """A fresh JetStream-enabled nats-server for one test."""
    with EmbeddedNats(store_dir=tmp_path / "nats") as server:
        yield server


SMALL_MAX_PAYLOAD = 64 * 1024  # keeps tests of messages at the limit fast (nats-server's default is 1 MiB)


@pytest.fixture
def small_payload_server(tmp_path: Path):
    """A fresh JetStream-enabled nats-server that takes messages of at most ``SMALL_MAX_PAYLOAD`` bytes."""
    with EmbeddedNats(store_dir=tmp_path / "nats", extra_config=f"max_payload: {SMALL_MAX_PAYLOAD}") as server:
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


@contextlib.asynccontextmanager
async def _client_with_streams(url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(url)
    await ensure_streams(client.jetstream())
    yield client
    await client.close()


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
