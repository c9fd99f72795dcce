"""12345 citizen hotline (``hotline12345``), the Chinese 311.

In: service requests polled from the hotline's Open311 GeoReport v2 endpoint (``services.json`` discovery,
``requests.json`` read incrementally by updated time; status changes become new versions of the same report), and
work orders (工单) posted to a webhook signed with HMAC-SHA256 (see :mod:`hub.signing`).
Out: accept / re-dispatch (二次派单) / resolve / citizen evaluation posted back to the hotline, signed.
Docs: docs/connectors/hotline12345.md.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cityhub_hotline12345.connector import Hotline12345Connector
from cityhub_hotline12345.settings import Hotline12345Settings
from cityhub_hotline12345.simulator import CHENGDU_CENTRE, HotlineSimulator
from hub.connector_kit import HubHandle
from hub.hookspecs import hookimpl


@hookimpl
def plugin_settings_model() -> type[Hotline12345Settings]:
    return Hotline12345Settings


@hookimpl
def register_connectors(hub: HubHandle, settings: Hotline12345Settings) -> list[Hotline12345Connector]:
    return [Hotline12345Connector(settings)]


@hookimpl
def register_simulators(hub: HubHandle, settings: Hotline12345Settings) -> list[HotlineSimulator]:
    """The simulated hotline on the host and port of ``open311.base_url``, posting work orders to the webhook
    every few seconds, with its Boston records moved to Chengdu."""
    open311 = urlsplit(settings.open311.base_url)
    return [
        HotlineSimulator(
            feedback_secret=settings.outbound.secret.get_secret_value(),
            webhook_url=settings.webhook.listen.url(settings.webhook.path),
            webhook_secret=settings.webhook.secret.get_secret_value(),
            host=open311.hostname or "127.0.0.1",
            port=open311.port or 80,
            relocate_to=CHENGDU_CENTRE,
            released=10,
            traffic_interval_s=2.0,
        )
    ]
