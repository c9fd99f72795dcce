"""The connector kit: what every connector needs beyond its own protocol, the same for the built-ins and for
third-party connectors (``pip install cityhub``; ``cityhub new-connector NAME`` writes a package that uses it).

* the seam: :class:`Connector`, the :class:`ConnectorContext` it publishes through, its :class:`StateStore`,
  and :class:`HubHandle`, the ``hub`` every plugin hook receives;
* HTTP (:mod:`hub.connector_kit.http`): an embedded server the hub owns, signed webhook intake with size limits
  and DLQ answers, signed POSTs outward, once or retried with backoff;
* MQTT 3.1.1 (:mod:`hub.connector_kit.mqtt`): broker URLs, the embedded broker as default, a receive loop that
  reconnects with backoff and acknowledges only what was handled;
* the hub's area (:class:`ServiceArea`): refuse out-of-area input at the door with a clear reply;
* liveness (:class:`SilenceWatch`), loops that always stop when cancelled (:func:`every`), registry imports that
  report every bad row at once (:func:`load_records`), and validation errors in one wording (:func:`describe`);
* testing: :func:`running_connector` runs a connector against a real nats-server; the fixtures (a nats-server
  on a free port, an MQTT broker) come with cityhub as the pytest plugin :mod:`hub.testing.pytest_plugin`.

Compatibility promise (semantic versioning): every name in ``__all__`` below keeps its meaning and its
signature (new optional keyword arguments aside) for as long as cityhub's major version stays the same; a
minor version may add names, and a removal or incompatible change comes only with a new major version,
announced one minor version before. Import from ``hub.connector_kit`` itself; its submodules' other names and
everything else under ``hub`` may change in any version. The page ``docs/connector_kit.md`` documents each name
(a test keeps the two in step).
"""

from __future__ import annotations

from hub.connector import Connector, ConnectorContext, StateStore
from hub.connector_kit.area import ServiceArea, hub_layers, required_layers
from hub.connector_kit.http import (
    IDEMPOTENCY_HEADER,
    KIND_OF_STATUS,
    HttpServer,
    ListenSettings,
    RetrySettings,
    WebhookRejected,
    dead_letter,
    oversize_summary,
    post_signed,
    post_signed_with_retry,
    read_body,
    refuse,
    send_demo_traffic,
    serve,
    signed_body,
    unavailable,
)
from hub.connector_kit.liveness import SilenceWatch
from hub.connector_kit.loops import every
from hub.connector_kit.mqtt import (
    BrokerAddress,
    broker_for,
    consume,
    disconnect,
    outside_the_unified_namespace,
    parse_broker_url,
)
from hub.connector_kit.registry import SitedRecord, load_records
from hub.connector_kit.validation import describe, error_kind, event_from
from hub.connector_runtime import running_connector
from hub.handle import HubHandle
from hub.tasks import stop_if_cancelled

__all__ = [
    "IDEMPOTENCY_HEADER",
    "KIND_OF_STATUS",
    "BrokerAddress",
    "Connector",
    "ConnectorContext",
    "HttpServer",
    "HubHandle",
    "ListenSettings",
    "RetrySettings",
    "ServiceArea",
    "SilenceWatch",
    "SitedRecord",
    "StateStore",
    "WebhookRejected",
    "broker_for",
    "consume",
    "dead_letter",
    "describe",
    "disconnect",
    "error_kind",
    "event_from",
    "every",
    "hub_layers",
    "load_records",
    "outside_the_unified_namespace",
    "oversize_summary",
    "parse_broker_url",
    "post_signed",
    "post_signed_with_retry",
    "read_body",
    "refuse",
    "required_layers",
    "running_connector",
    "send_demo_traffic",
    "serve",
    "signed_body",
    "stop_if_cancelled",
    "unavailable",
]
