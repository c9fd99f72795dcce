"""Each connector's docs page names every setting its model has, and each connector distribution
(``connectors/<name>/``, installed and loaded through its entry point) has the house shape (settings model,
connector and simulator hooks), a valid `cityhub demo` section (`demo.toml`), and pickles into its own process,
so docs, demo and code cannot drift apart."""

from __future__ import annotations

import pickle
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from pydantic import BaseModel

from hub.connector_kit.mqtt import broker_for
from hub.errors import ConfigError
from hub.plugins import demo_section_file, installed_plugins
from hub.testing import undocumented_settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "connectors"
CONNECTORS = sorted(project.parent.name for project in (ROOT / "connectors").glob("*/pyproject.toml"))
HUB_WITH_MQTT = SimpleNamespace(embedded=SimpleNamespace(mqtt_port=18830))
# Connectors that need nothing from the hub handle but its embedded MQTT port (others need its geo layers).
STANDALONE = ["eldercare", "gridworker", "iot_mqtt", "recycling"]


def load(name: str) -> ModuleType:
    """The connector's plugin module, through its entry point as the hub loads it."""
    return installed_plugins()[name].load()


@pytest.mark.parametrize("name", CONNECTORS)
def test_docs_page_names_every_setting(name):
    plugin = load(name)
    page = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    missing = undocumented_settings(plugin.plugin_settings_model(), page)
    assert missing == [], f"docs/connectors/{name}.md does not describe {missing}"


@pytest.mark.parametrize("name", CONNECTORS)
def test_package_has_the_house_shape(name):
    plugin = load(name)
    assert plugin.__doc__ and "(``" + name + "``)" in plugin.__doc__
    for hook in ("plugin_settings_model", "register_connectors", "register_simulators"):
        assert callable(getattr(plugin, hook)), f"{name} lacks the {hook} hook"
    model = plugin.plugin_settings_model()
    assert model.model_config.get("extra") == "forbid"
    assert all(field.description for field in model.model_fields.values())


def demo_settings(name: str) -> BaseModel:
    """The plugin's settings from its ``demo.toml``, its section in the ``cityhub demo`` config."""
    plugin = load(name)
    section = tomllib.loads(demo_section_file(installed_plugins()[name]).read_text(encoding="utf-8"))["plugins"][name]
    return plugin.plugin_settings_model().model_validate(section)


@pytest.mark.parametrize("name", STANDALONE)
def test_connectors_pickle_into_their_own_process(name):
    """The supervisor pickles each connector into a spawned child process."""
    plugin = load(name)
    settings = demo_settings(name)
    [connector] = plugin.register_connectors(hub=HUB_WITH_MQTT, settings=settings)
    assert type(pickle.loads(pickle.dumps(connector))) is type(connector)
    assert len(plugin.register_simulators(hub=HUB_WITH_MQTT, settings=settings)) == 1


def test_mqtt_connectors_default_to_the_embedded_broker_and_say_so_when_there_is_none():
    assert broker_for(HUB_WITH_MQTT, None, "iot_mqtt").port == 18830
    assert broker_for(HUB_WITH_MQTT, "mqtt://user:pw@broker.example:1884", "iot_mqtt").host == "broker.example"
    with pytest.raises(ConfigError, match=r"\[plugins.recycling\] broker_url"):
        broker_for(SimpleNamespace(embedded=None), None, "recycling")
