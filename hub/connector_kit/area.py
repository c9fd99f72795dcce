"""The area a hub serves, for connectors that refuse out-of-area input at the door with a clear reply
(instead of letting it reach the hub, where it would go to triage as ``no_cell``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.connector_kit.http import WebhookRejected
from hub.errors import ConfigError
from hub.geofence import GridIndex, LayerSpec
from hub.handle import HubHandle
from hub.models import Location


def hub_layers(hub: HubHandle | Any) -> list[LayerSpec]:
    """The hub's ``[geo]`` layers (empty when the hub has none or no config)."""
    config = getattr(hub, "config", None)
    if config is None:
        return []
    return [LayerSpec.model_validate(layer.model_dump()) for layer in config.geo.layers]


def required_layers(hub: HubHandle | Any, setting: str) -> list[LayerSpec]:
    """The hub's layers for a connector ``setting`` that needs them; ConfigError saying so when there are none."""
    layers = hub_layers(hub)
    if not layers:
        raise ConfigError(f"{setting} needs grids, and the hub has no [geo] layers: add them or turn the setting off")
    return layers


class ServiceArea:
    """Every cell of the given grid layers; a location in none of them is outside the area."""

    def __init__(self, layers: Sequence[LayerSpec]):
        self.layers = list(layers)
        self._grids: GridIndex | None = None

    def load(self) -> None:
        """Read the layers (seconds for a whole city: call it once, off the event loop)."""
        self._grids = GridIndex.load(self.layers)

    def check(self, location: Location) -> None:
        """Raise :class:`WebhookRejected` (422) when ``location`` is in no cell of the area."""
        if self._grids is None:
            raise RuntimeError("the service area is not loaded: call load() when the connector starts")
        if self._grids.locate(location.lon, location.lat, location.crs).outside:
            raise WebhookRejected(
                422,
                f"location {location.lon:.6f}, {location.lat:.6f} ({location.crs.value}) is outside the area this "
                f"hub serves ({', '.join(layer.name for layer in self.layers)}); send it to the hub responsible "
                f"for that place",
            )
