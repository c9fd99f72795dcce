"""The Hub as ``cityhub run`` builds it: config file → NATS, pipeline, admin API, live reload, dry-run."""

from __future__ import annotations

import asyncio
import copy
import logging
from pathlib import Path

import httpx
import pytest

from hub import topology
from hub.app import Hub
from hub.config import load_config
from hub.simulate import stop_simulators
from tests.pipeline_support import data_of, event, hub_toml, ingest_item, publish_raw, read_stream, stream_count
from tests.waiting import wait_until

GAS_RULE = """
[[rules]]
id = "gas"
when = 'category == "gas_leak"'
actions = {{ severity = "{severity}", route = ["gridworker"] }}
"""


def _write(path: Path, url: str, severity: str) -> Path:
    path.write_text(hub_toml(url, GAS_RULE.format(severity=severity), token="t0ken"))
    return path


@pytest.fixture
async def hub(tmp_path, nats_url):
    running = Hub.from_file(_write(tmp_path / "cityhub.toml", nats_url, "high"))
    await running.start()
    yield running
    await running.stop()


async def test_hub_serves_health_and_processes_events(hub, nats_url):
    await publish_raw(nats_url, [ingest_item(event(1))])
    await wait_until(lambda: hub.pipeline.counts["out"] == 1)
    async with httpx.AsyncClient(base_url=hub.admin_url) as client:
        health = (await client.get("/health")).json()
        ready = await client.get("/ready")
        metrics = (await client.get("/metrics")).text
    assert health["runtime"]["ok"] and health["runtime"]["pipeline"]["counts"]["out"] == 1
    assert ready.status_code == 200
    assert 'cityhub_stage_events_total{outcome="out",stage="pipeline"} 1.0' in metrics
    [unified] = await read_stream(nats_url, topology.EVENTS_STREAM)
    assert unified.subject.endswith(".gas_leak.high")


async def test_dry_run_shows_grid_incident_and_rules_without_publishing(hub, nats_url):
    async with httpx.AsyncClient(base_url=hub.admin_url) as client:
        answer = (await client.post("/dry-run", json=event(7).model_dump(mode="json"))).json()
    assert answer["matched_rules"] == ["gas"], answer
    assert answer["grid_path"][0]["id"] == "510104"
    assert answer["incident"]["is_new"]
    assert await stream_count(nats_url, topology.EVENTS_STREAM) == 0


async def test_config_reload_applies_new_rules_to_later_events(hub, nats_url, tmp_path):
    await publish_raw(nats_url, [ingest_item(event(1, offset_m=0))])
    await wait_until(lambda: hub.pipeline.counts["out"] == 1)
    await hub.apply_config(
        load_config(
            _write(tmp_path / "cityhub.toml", nats_url, "critical"), plugin_models=hub.plugins.settings_models()
        )
    )
    await publish_raw(nats_url, [ingest_item(event(2, offset_m=5000))])
    await wait_until(lambda: hub.pipeline.counts["out"] == 2)
    severities = [data_of(m)["severity"] for m in await read_stream(nats_url, topology.EVENTS_STREAM)]
    assert severities == ["high", "critical"]


async def test_a_bad_new_config_keeps_the_running_one(hub, nats_url, tmp_path):
    bad = _write(tmp_path / "bad.toml", nats_url, "high")
    bad.write_text(bad.read_text().replace('category == "gas_leak"', "category == == 1"))
    with pytest.raises(ValueError):
        await hub.apply_config(load_config(bad, plugin_models=hub.plugins.settings_models()))
    assert [rule.id for rule in hub.pipeline.engines.rules.rules] == ["gas"]


async def test_dry_run_that_merges_into_an_open_incident_leaves_the_live_one_unchanged(hub, nats_url):
    await publish_raw(nats_url, [ingest_item(event(1))])
    await wait_until(lambda: hub.pipeline.counts["out"] == 1)
    before = {key: record.dump() for key, record in copy.deepcopy(hub.pipeline.state.incidents).items()}
    answer = await hub.dry_run(event(2, source="hotline12345"))
    assert not answer["incident"]["is_new"], answer
    assert answer["incident"]["id"] in before
    assert {key: record.dump() for key, record in hub.pipeline.state.incidents.items()} == before


class _Simulator:
    """Stops cleanly, raises, or never finishes stopping."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.stopped = False

    async def stop(self) -> None:
        if self.behaviour == "raises":
            raise RuntimeError("socket already closed")
        if self.behaviour == "hangs":
            await asyncio.Event().wait()
        self.stopped = True


async def test_a_simulator_that_fails_to_stop_is_logged_by_name_and_the_others_still_stop(caplog):
    first, broken, hung, last = (_Simulator(b) for b in ("stops", "raises", "hangs", "stops"))
    simulators = [("alpha", first), ("beta", broken), ("gamma", hung), ("delta", last)]
    with caplog.at_level(logging.ERROR, logger="cityhub"):
        await stop_simulators(simulators, timeout_s=0.05)
    assert first.stopped and last.stopped
    failures = [(record.getMessage(), record.exc_info[0]) for record in caplog.records]
    assert failures == [
        ("simulator _Simulator of plugin gamma did not stop cleanly", TimeoutError),
        ("simulator _Simulator of plugin beta did not stop cleanly", RuntimeError),
    ]
