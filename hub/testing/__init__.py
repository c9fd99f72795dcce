"""Testing a connector against the real thing, for the built-ins and for third-party connectors alike.

The fixtures come with cityhub as a pytest plugin (entry point ``pytest11``, :mod:`hub.testing.pytest_plugin`):
installing cityhub is enough for a connector's tests to ask for ``nats_url`` (a fresh JetStream-enabled
nats-server on a free port), ``nats_server``, ``restart_nats`` and ``mqtt_broker``. The helpers below read what
the connector left on NATS and play the hub's side; :func:`hub.connector_kit.running_connector` runs the
connector itself. These names are under the same compatibility promise as :mod:`hub.connector_kit`.
"""

from __future__ import annotations

from hub.nats.embedded import free_port
from hub.testing.docs import undocumented_settings
from hub.testing.harness import (
    Simulator,
    dead_letter_messages,
    dead_letters,
    demo_section,
    dispatch_updates,
    ingested,
    ingested_events,
    publish_outbound,
    send_order,
    simulating,
    stream_messages,
    wiretap,
)
from hub.testing.waiting import holds_within, wait_until

__all__ = [
    "Simulator",
    "dead_letter_messages",
    "dead_letters",
    "demo_section",
    "dispatch_updates",
    "free_port",
    "holds_within",
    "ingested",
    "ingested_events",
    "publish_outbound",
    "send_order",
    "simulating",
    "stream_messages",
    "undocumented_settings",
    "wait_until",
    "wiretap",
]
