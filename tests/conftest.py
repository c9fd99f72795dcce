"""Shared fixtures. Every test that needs NATS gets a real nats-server on a free port with its own store."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.embedded import EmbeddedNats

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def nats_server(tmp_path: Path):
    """A fresh JetStream-enabled nats-server for one test."""
    with EmbeddedNats(store_dir=tmp_path / "nats") as server:
        yield server


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url
