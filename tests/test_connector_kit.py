"""The public connector kit and test harness: the docs page names every public name, and the fixtures ship as a
pytest plugin of cityhub itself, so a third-party connector's tests get them from ``pip install cityhub``."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

import hub.connector_kit
import hub.testing

PAGE = (Path(__file__).resolve().parents[1] / "docs" / "connector_kit.md").read_text(encoding="utf-8")
PUBLIC = [*hub.connector_kit.__all__, *hub.testing.__all__]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_documented(name):
    assert f"| `{name}` |" in PAGE, f"docs/connector_kit.md has no row for {name}"


def test_every_name_the_page_documents_is_public():
    documented = {line.split("`")[1] for line in PAGE.splitlines() if line.startswith("| `")}
    assert documented <= set(PUBLIC) | {"nats_url", "nats_server", "restart_nats", "mqtt_broker"}


def test_the_kit_promises_semantic_versioning():
    assert "semantic versioning" in hub.connector_kit.__doc__


def test_the_fixtures_ship_as_a_pytest_plugin_of_cityhub(request):
    [plugin] = [entry for entry in entry_points(group="pytest11") if entry.value == "hub.testing.pytest_plugin"]
    assert plugin.dist.name == "cityhub"
    assert request.config.pluginmanager.has_plugin(plugin.name)
    for fixture in ("nats_server", "nats_url", "restart_nats", "mqtt_broker"):
        [definition] = request._fixturemanager.getfixturedefs(fixture, request.node)
        assert definition.func.__module__ == "hub.testing.pytest_plugin"
