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
from cityhub_hotline12345.simulator import HotlineSimulator
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
    """The simulated hotline on the host and port of ``outbound.base_url`` (its feedback API; its Open311
    endpoint is served there too), posting a Chinese work order (工单) of the current time to the webhook every
    few seconds. Its Boston Open311 records are replayed only when ``open311`` is enabled: they are the
    protocol's fixtures, not Chengdu's calls."""
    feedback = urlsplit(settings.outbound.base_url)
    return [
        HotlineSimulator(
            feedback_secret=settings.outbound.secret.get_secret_value(),
            webhook_url=settings.webhook.listen.url(settings.webhook.path),
            webhook_secret=settings.webhook.secret.get_secret_value(),
            host=feedback.hostname or "127.0.0.1",
            port=feedback.port or 80,
            released=10 if settings.open311.enabled else 0,
            replay_records=settings.open311.enabled,
            traffic_interval_s=2.0,
        )
    ]
