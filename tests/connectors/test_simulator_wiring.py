"""The simulators that ``register_simulators`` builds from a plugin's settings (what ``cityhub demo`` runs) find
their connectors: events flow without any test code in between."""

from __future__ import annotations

import pytest
from connector_harness import ingested_events
from harness import until

import connectors.citizen_report as citizen_report
import connectors.citybrain as citybrain
import connectors.hotline12345 as hotline12345
from connectors.citizen_report.settings import CitizenReportSettings
from connectors.citybrain.settings import CitybrainSettings
from connectors.hotline12345.settings import Hotline12345Settings
from connectors.hotline12345.simulator import SAMPLE_SERVICE_CATEGORIES
from hub.connector_runtime import running_connector
from hub.embedded import free_port
from hub.errors import ConfigError


async def test_demo_simulators_feed_their_connectors(nats_url, tmp_path):
    hotline_settings = Hotline12345Settings.model_validate({
        "open311": {"base_url": f"http://127.0.0.1:{free_port()}/open311/v2", "poll_interval_s": 0.2,
                    "service_categories": SAMPLE_SERVICE_CATEGORIES},
        "webhook": {"secret": "w", "listen": {"port": free_port()}},
        "outbound": {"base_url": "http://127.0.0.1:1/unused", "secret": "f"},
    })
    citizen_settings = CitizenReportSettings.model_validate(
        {"listen": {"port": free_port()}, "photo_dir": tmp_path / "photos"}
    )
    [hotline] = hotline12345.register_connectors(hub=None, settings=hotline_settings)
    [citizen] = citizen_report.register_connectors(hub=None, settings=citizen_settings)
    simulators = [*hotline12345.register_simulators(hub=None, settings=hotline_settings),
                  *citizen_report.register_simulators(hub=None, settings=citizen_settings)]
    async with running_connector(hotline, nats_url) as hotline_ctx, running_connector(citizen, nats_url) as citizen_ctx:
        for simulator in simulators:
            await simulator.start()
        try:
            await until(lambda: hotline_ctx.counters["orders_published"] >= 1 and citizen_ctx.counters["published"] >= 1)
        finally:
            for simulator in simulators:
                await simulator.stop()
    channels = {event.payload["channel"] for _, event in await ingested_events(nats_url, "hotline12345")}
    assert channels == {"open311", "webhook"}
    [(_, report)] = (await ingested_events(nats_url, "citizen_report"))[:1]
    assert report.attachments and report.location.crs == "gcj02"


def test_demo_city_platform_needs_a_plain_http_url():
    settings = CitybrainSettings.model_validate({"northbound": {"secret": "n"}, "southbound": {"secret": "s"}})
    with pytest.raises(ConfigError, match="northbound.url"):
        citybrain.register_simulators(hub=None, settings=settings)
