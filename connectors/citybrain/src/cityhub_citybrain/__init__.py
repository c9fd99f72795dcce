"""City-level platform (``citybrain``): the 城市大脑 / city tier of the 城运中心.

Northbound: incident changes that meet the configured criteria (severity, category, overdue) are reported upward
over HTTPS, signed with HMAC-SHA256 over timestamp and body (:mod:`hub.signing`), with an ``Idempotency-Key`` per
incident version and retries with backoff; the connector reads incidents by declaring
``outbound_subjects = ("cityhub.incidents.>",)``.
Southbound: the platform pushes signed area warnings (a GeoJSON polygon + message); the hub publishes one
``area_warning`` event per warning carrying its area and the grid cells it touches at the configured levels
(``hub.geofence.GridIndex.cells_intersecting_arrays``); the pipeline makes it one incident with one order per cell.
Docs: docs/connectors/citybrain.md.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cityhub_citybrain.connector import CitybrainConnector
from cityhub_citybrain.settings import CitybrainSettings
from cityhub_citybrain.simulator import CityPlatformSimulator
from hub.connector_kit import HubHandle, hub_layers
from hub.errors import ConfigError
from hub.hookspecs import hookimpl


@hookimpl
def plugin_settings_model() -> type[CitybrainSettings]:
    return CitybrainSettings


@hookimpl
def register_connectors(hub: HubHandle, settings: CitybrainSettings) -> list[CitybrainConnector]:
    """The connector, listing the cells warnings touch in ``southbound.layers`` or, else, the hub's [geo] layers."""
    layers = settings.southbound.layers or hub_layers(hub)
    if settings.southbound.enabled and not layers:
        raise ConfigError(
            "plugins.citybrain.southbound.layers is empty and the hub has no [geo] layers: area warnings need grids"
        )
    return [CitybrainConnector(settings, layers)]


@hookimpl
def register_simulators(hub: HubHandle, settings: CitybrainSettings) -> list[CityPlatformSimulator]:
    """The city platform over plain HTTP on the host and port of ``northbound.url`` (the demo does not make
    certificates), pushing an area warning every 30 s to the southbound endpoint."""
    north = urlsplit(settings.northbound.url)
    if north.scheme != "http":
        raise ConfigError(
            f"plugins.citybrain.northbound.url: the simulated city platform serves plain HTTP (no certificate to "
            f"trust in a demo); use http://{north.netloc}{north.path} while simulating"
        )
    return [
        CityPlatformSimulator(
            report_secret=settings.northbound.secret.get_secret_value(),
            warning_url=settings.southbound.listen.url(settings.southbound.path),
            warning_secret=settings.southbound.secret.get_secret_value(),
            host=north.hostname or "127.0.0.1",
            port=north.port or 80,
            warning_interval_s=30.0,
        )
    ]
