"""The production recipe of docs/operations.md ("Always on") is ready to use: the three nats-server configs in
deploy/nats/ are valid, form one JetStream cluster (run here on loopback, with host names, ports and store
moved), and take the hub's streams at 3 replicas from deploy/cityhub-always-on.toml."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from pathlib import Path

import nats
import pytest

from hub.config import load_config
from hub.nats.embedded import free_port, nats_server_binary
from hub.nats.streams import ensure_buckets, ensure_streams, streams_by_name

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NODE_CONFIGS = sorted((DEPLOY / "nats").glob("nats-*.conf"))
PASSWORD = "test-password"


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    monkeypatch.setenv("CITYHUB_NATS_PASSWORD", PASSWORD)
    monkeypatch.setenv("CITYHUB_ADMIN_TOKEN", "test-token")


def test_each_node_config_is_valid_and_routes_to_the_other_two():
    assert [path.name for path in NODE_CONFIGS] == ["nats-1.conf", "nats-2.conf", "nats-3.conf"]
    for path in NODE_CONFIGS:
        checked = subprocess.run(
            [nats_server_binary(), "-t", "-c", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "CITYHUB_NATS_PASSWORD": PASSWORD},
        )
        assert checked.returncode == 0, checked.stderr
        text = path.read_text()
        me = re.search(r"server_name: (\S+)", text).group(1)
        assert me == path.stem
        assert sorted(re.findall(r"nats-route://(nats-\d)\.", text)) == sorted(
            other.stem for other in NODE_CONFIGS if other != path
        )


def test_the_hub_config_keeps_three_copies_of_everything():
    config = load_config(DEPLOY / "cityhub-always-on.toml")
    assert len(config.nats.servers) == 3
    assert {limits.replicas for limits in streams_by_name(config.nats.streams).values()} == {3}
    assert config.nats.buckets.replicas == 3


def _on_loopback(text: str, client_ports: list[int], cluster_ports: list[int], store: Path) -> str:
    """A node config moved onto this machine: host names → 127.0.0.1 with free ports, store → ``store``."""
    me = int(re.search(r"server_name: nats-(\d)", text).group(1)) - 1
    text = re.sub(
        r"nats-route://nats-(\d)\.city\.internal:6222",
        lambda match: f"nats-route://127.0.0.1:{cluster_ports[int(match.group(1)) - 1]}",
        text,
    )
    text = text.replace("0.0.0.0:4222", f"127.0.0.1:{client_ports[me]}")
    text = text.replace("0.0.0.0:6222", f"127.0.0.1:{cluster_ports[me]}")
    text = text.replace("127.0.0.1:8222", f"127.0.0.1:{free_port()}")
    return text.replace("/var/lib/nats/jetstream", str(store))


async def test_the_three_node_configs_form_a_jetstream_cluster_that_takes_the_streams(tmp_path):
    client_ports = [free_port() for _ in NODE_CONFIGS]
    cluster_ports = [free_port() for _ in NODE_CONFIGS]
    processes = []
    try:
        for index, path in enumerate(NODE_CONFIGS):
            moved = tmp_path / path.name
            moved.write_text(_on_loopback(path.read_text(), client_ports, cluster_ports, tmp_path / f"store{index}"))
            processes.append(
                subprocess.Popen(
                    [nats_server_binary(), "-c", str(moved)],
                    stdout=subprocess.DEVNULL,
                    stderr=open(tmp_path / f"{path.stem}.log", "wb"),
                )
            )
        config = load_config(DEPLOY / "cityhub-always-on.toml")
        nc = await nats.connect(
            servers=[f"nats://127.0.0.1:{port}" for port in client_ports],
            user="cityhub",
            password=PASSWORD,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
        )
        js = nc.jetstream(timeout=5)
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(Exception):
                    await js.account_info()
                    break
                await asyncio.sleep(0.2)
        infos = await ensure_streams(js, config.nats.streams)
        await ensure_buckets(js, config.nats.buckets)
        await nc.close()
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
    assert [info.config.num_replicas for info in infos] == [3] * len(infos)
    assert all(info.cluster is not None and info.cluster.name == "cityhub" for info in infos)
