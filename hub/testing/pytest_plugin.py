"""CityHub's pytest plugin, loaded by pytest wherever cityhub is installed (entry point ``pytest11``): the
fixtures a connector's tests need, each a real server started for one test and stopped after it.

``nats_server``  a fresh JetStream-enabled nats-server on a free port with its own store (:class:`EmbeddedNats`)
``nats_url``     its URL, what :func:`hub.connector_kit.running_connector` and :mod:`hub.testing` take
``restart_nats`` an async function that restarts that server on its port with its store
``mqtt_broker``  an MQTT 3.1.1 broker (a second nats-server's MQTT listener) playing an external broker

The fixtures are synchronous, so they need no async plugin; tests that await need one (pytest-asyncio).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from hub.nats.embedded import EmbeddedNats, free_port


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A fresh JetStream-enabled nats-server for one test."""
    with EmbeddedNats(store_dir=tmp_path / "nats") as server:
        yield server


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    """The URL of the test's nats-server."""
    return nats_server.url


@pytest.fixture
def restart_nats(nats_server: EmbeddedNats) -> Callable[[], Awaitable[None]]:
    """An async function that restarts the test's nats-server on its port with its store (streams, consumers
    and KV that the server keeps on disk survive; clients see a disconnect and reconnect)."""

    async def restart() -> None:
        await asyncio.to_thread(nats_server.stop)
        nats_server.launch()  # from the event loop's thread, which lives as long as the test
        await asyncio.to_thread(nats_server.wait_listening)

    return restart


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """An MQTT 3.1.1 broker playing the devices' external broker: a second nats-server's MQTT listener,
    apart from the hub's NATS (never the machine's own broker)."""
    with EmbeddedNats(store_dir=tmp_path / "broker", mqtt_port=free_port()) as server:
        yield server
