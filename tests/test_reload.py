"""Live reload: editing cityhub.toml (or a rules file it names) applies a valid config and rejects a bad one."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hub.errors import GeoError
from hub.reload import ConfigReloader, watched_files
from standin_hub import StandInHub
from tests.waiting import wait_until

GOOD = 'rule_files = ["rules.toml"]\n\n[dedup]\nwindow = "10m"\n'
RULES = '[[rules]]\nid = "gas"\nwhen = \'category == "gas_leak"\'\n'


@pytest.fixture
def config_dir(tmp_path):
    (tmp_path / "cityhub.toml").write_text(GOOD)
    (tmp_path / "rules.toml").write_text(RULES)
    return tmp_path


async def test_watching_applies_good_edits_and_keeps_the_running_config_on_bad_ones(config_dir, caplog):
    hub = StandInHub(config_dir / "cityhub.toml", {})
    reloader = ConfigReloader(hub)
    stop = asyncio.Event()
    watcher = asyncio.create_task(reloader.watch(stop))
    await asyncio.sleep(0.5)  # let the watcher register with inotify before editing
    with caplog.at_level(logging.ERROR, logger="cityhub.reload"):
        (config_dir / "cityhub.toml").write_text(GOOD.replace('"10m"', '"whenever"'))
        await wait_until(lambda: reloader.last is not None, "the bad edit was seen")
    assert not reloader.last.applied and hub.applied == []
    assert f"{config_dir / 'cityhub.toml'}:4: dedup.window: 'whenever' is not a duration" in caplog.text
    assert hub.config.dedup.window.total_seconds() == 600  # still the running config

    (config_dir / "cityhub.toml").write_text(GOOD.replace('"10m"', '"20m"'))
    await wait_until(lambda: len(hub.applied) == 1, "the good edit was applied")
    assert hub.config.dedup.window.total_seconds() == 1200

    (config_dir / "rules.toml").write_text(RULES.replace('"gas"', '"gas-v2"'))
    await wait_until(lambda: len(hub.applied) == 2, "the rules-file edit was applied")
    assert [rule.id for rule in hub.config.all_rules()] == ["gas-v2"]
    stop.set()
    await asyncio.wait_for(watcher, timeout=30)


def test_watched_files_are_the_config_and_what_it_names(config_dir):
    hub = StandInHub(config_dir / "cityhub.toml", {})
    assert watched_files(hub.config) == {(config_dir / "cityhub.toml").resolve(), (config_dir / "rules.toml").resolve()}


async def test_a_config_the_hub_cannot_apply_is_reported_and_the_running_one_kept(config_dir):
    class RefusingHub(StandInHub):
        async def apply_config(self, config):
            raise GeoError("layer 'admin': polygon 17 has 2 points")

    hub = RefusingHub(config_dir / "cityhub.toml", {})
    outcome = await ConfigReloader(hub).reload()
    assert not outcome.applied and outcome.public()["issues"] == [
        {
            "file": str(config_dir / "cityhub.toml"),
            "line": None,
            "key": "(apply)",
            "message": "layer 'admin': polygon 17 has 2 points",
        }
    ]
