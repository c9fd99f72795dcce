"""The ``hub`` every plugin hook receives: what a plugin may rely on, as a Protocol (the running
:class:`hub.app.Hub` satisfies it; tests may pass any object with these attributes)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hub.config import HubConfig
    from hub.metrics import Metrics
    from hub.nats.embedded import EmbeddedNats
    from hub.plugins import PluginHost
    from hub.taxonomy import Taxonomy


class HubHandle(Protocol):
    """The running hub as plugins see it: its validated config, metrics, plugin host, logger and taxonomy
    (the categories events may carry), and the embedded nats-server when it runs one (its ``mqtt_port`` is
    the default broker of MQTT connectors)."""

    config: HubConfig
    metrics: Metrics
    plugins: PluginHost
    log: logging.Logger
    embedded: EmbeddedNats | None
    taxonomy: Taxonomy
