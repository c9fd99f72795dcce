"""Eldercare platform (``eldercare``): a community smart-care platform's alerts over a signed HTTP webhook.

SOS buttons, fall detection, abnormal vitals, no activity for hours (elders living alone) and gas alarms at an
elder's home become events routed to the grid worker first (``payload.route_hint``). Dispatch orders for this
connector are posted to the platform as visit orders; the platform reports their outcomes back, which become
dispatch updates. The elder registry stays in the connector; only what a responder needs is published.
"""

from __future__ import annotations

from cityhub_eldercare.connector import EldercareConnector
from cityhub_eldercare.settings import EldercareSettings
from cityhub_eldercare.simulator import EldercarePlatformSimulator
from hub.connector_kit import HubHandle
from hub.hookspecs import hookimpl


@hookimpl
def plugin_settings_model() -> type[EldercareSettings]:
    return EldercareSettings


@hookimpl
def register_connectors(hub: HubHandle, settings: EldercareSettings) -> list[EldercareConnector]:
    return [EldercareConnector(settings)]


@hookimpl
def register_simulators(hub: HubHandle, settings: EldercareSettings) -> list[EldercarePlatformSimulator]:
    return [EldercarePlatformSimulator(settings)]
