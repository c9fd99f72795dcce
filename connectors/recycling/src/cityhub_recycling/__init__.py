"""Recycling stations (``recycling``): station controllers report over MQTT 3.1.1.

Stations are embedded controllers on 4G links that report on their own schedule, so MQTT (the devices'
usual protocol) fits better than an HTTP webhook: a QoS 1 persistent session makes the broker keep their
reports while the hub is away, and a last will announces a station that drops off the network. Telemetry
(bin fill level per fraction, weight collected, faults) becomes full-bin, fault and offline events; residents'
drop-offs and carbon-credit points are summed per station and day and never published per person.
"""

from __future__ import annotations

from cityhub_recycling.connector import RecyclingConnector
from cityhub_recycling.settings import RecyclingSettings
from cityhub_recycling.simulator import RecyclingStationSimulator
from hub.connector_kit import HubHandle, broker_for
from hub.hookspecs import hookimpl


@hookimpl
def plugin_settings_model() -> type[RecyclingSettings]:
    return RecyclingSettings


@hookimpl
def register_connectors(hub: HubHandle, settings: RecyclingSettings) -> list[RecyclingConnector]:
    return [RecyclingConnector(settings, broker_for(hub, settings.broker_url, "recycling"))]


@hookimpl
def register_simulators(hub: HubHandle, settings: RecyclingSettings) -> list[RecyclingStationSimulator]:
    return [RecyclingStationSimulator(broker_for(hub, settings.broker_url, "recycling"), settings)]
