"""Fixtures of the connector contract tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.embedded import EmbeddedNats, free_port


@pytest.fixture
def mqtt_broker(tmp_path: Path):
    """An MQTT 3.1.1 broker playing the devices' external broker: a second nats-server's MQTT listener,
    apart from the hub's NATS (never the machine's own broker)."""
    with EmbeddedNats(store_dir=tmp_path / "broker", mqtt_port=free_port()) as server:
        yield server
