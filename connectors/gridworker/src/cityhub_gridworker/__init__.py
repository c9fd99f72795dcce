"""Grid-worker app (``gridworker``): the phone app of the people responsible for each grid cell, over WebSocket.

Dispatch orders for this connector are pushed to the worker responsible for the order's cell (roster: primary,
backup, grid leader); the app reports accepted, on site and resolved (with photo references), which become
dispatch updates, and its live location, kept in the connector's key/value state. An order not accepted in time
moves to the backup worker, then to the grid leader; orders and timers survive restarts.
"""

from __future__ import annotations

from cityhub_gridworker.connector import GridworkerConnector
from cityhub_gridworker.settings import GridworkerSettings
from cityhub_gridworker.simulator import GridWorkerAppSimulator
from hub.connector_kit import HubHandle
from hub.hookspecs import hookimpl


@hookimpl
def plugin_settings_model() -> type[GridworkerSettings]:
    return GridworkerSettings


@hookimpl
def register_connectors(hub: HubHandle, settings: GridworkerSettings) -> list[GridworkerConnector]:
    return [GridworkerConnector(settings)]


@hookimpl
def register_simulators(hub: HubHandle, settings: GridworkerSettings) -> list[GridWorkerAppSimulator]:
    return [GridWorkerAppSimulator(settings)]
