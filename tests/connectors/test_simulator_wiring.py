"""The demo sections the connectors ship (``demo.toml`` in each package) load through the real config loader and
plugin host, and the simulators that ``register_simulators`` builds from them feed their connectors: events flow
with no test code in between."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import cityhub_citybrain as citybrain
from cityhub_citybrain.settings import CitybrainSettings
from hub.connector_runtime import running_connector
from hub.demo.config import DEMO_SECRET_VARIABLE, SAMPLE_GRIDS, demo_sections
from hub.errors import ConfigError
from hub.models import utcnow
from hub.testing import ingested_events
from tests.waiting import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from standin_hub import StandInHub  # noqa: E402 - the control plane's real stand-in hub, one folder up

GRIDS = SAMPLE_GRIDS / "chengdu_admin_gcj02.geojson"
DEMO_PLUGINS = ("hotline12345", "citizen_report", "citybrain")


def _demo_config(tmp_path: Path) -> Path:
    """A cityhub.toml with the demo sections of these connectors, as ``cityhub demo`` assembles them."""
    sections = demo_sections(DEMO_PLUGINS)
    path = tmp_path / "cityhub.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n[geo]\n'
        f'layers = [{{ name = "admin", path = "{GRIDS}", crs = "gcj02" }}]\n\n{sections}'
    )
    return path


async def test_demo_sections_wire_simulators_to_their_connectors(nats_url, tmp_path, monkeypatch):
    monkeypatch.setenv(DEMO_SECRET_VARIABLE, "wiring-test-secret")
    hub = StandInHub(_demo_config(tmp_path), plugins={}, installed=True)
    built = {result.plugin: result.value for result in await hub.plugins.call("register_connectors")}
    [hotline], [citizen], [city] = (built[name] for name in DEMO_PLUGINS)
    simulators = [
        sim
        for result in await hub.plugins.call("register_simulators")
        if result.plugin in DEMO_PLUGINS
        for sim in result.value
    ]
    assert len(simulators) == 3
    assert [layer.name for layer in city.layers] == ["admin"]  # the hub's [geo] layers, as the section names none
    assert citizen.settings.photo_dir == tmp_path / "data" / "citizen_report" / "photos"

    async with running_connector(hotline, nats_url) as hotline_ctx, running_connector(citizen, nats_url) as citizen_ctx:
        for simulator in simulators:
            await simulator.start()
        try:
            await wait_until(
                lambda: hotline_ctx.counters["orders_published"] >= 1 and citizen_ctx.counters["published"] >= 1
            )
        finally:
            for simulator in simulators:
                await simulator.stop()
    hotline_events = [event for _, event in await ingested_events(nats_url, "hotline12345")]
    assert {event.payload["channel"] for event in hotline_events} == {"webhook"}  # Open311 is for protocol tests
    order = hotline_events[0]
    assert order.payload["category_name"] == "燃气泄漏" and order.address.startswith("成都市")
    assert abs((order.time - utcnow()).total_seconds()) < 600  # a call of now, not a replayed record
    [(_, report)] = (await ingested_events(nats_url, "citizen_report"))[:1]
    # the demo's shared scenario: the 12345 call and the citizen photo describe the same gas leak, a few tens of
    # metres apart as two people tap a map
    assert order.category == report.category == "gas_leak"
    assert abs(order.location.lon - report.location.lon) < 6e-4 and abs(order.location.lat - report.location.lat) < 6e-4
    assert report.attachments and report.location.crs == "gcj02"


def test_demo_city_platform_needs_a_plain_http_url():
    settings = CitybrainSettings.model_validate({"northbound": {"secret": "n"}, "southbound": {"secret": "s"}})
    with pytest.raises(ConfigError, match="northbound.url"):
        citybrain.register_simulators(hub=None, settings=settings)


def test_area_warnings_without_any_grid_layers_are_a_config_error():
    settings = CitybrainSettings.model_validate({"northbound": {"secret": "n"}, "southbound": {"secret": "s"}})
    with pytest.raises(ConfigError, match="southbound.layers is empty"):
        citybrain.register_connectors(hub=None, settings=settings)
