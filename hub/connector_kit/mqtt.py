"""MQTT 3.1.1 plumbing shared by the MQTT connectors: broker URLs and a receive loop that reconnects with
backoff. The session is persistent (``clean_session=False``), subscriptions are QoS 1 and each message is
acknowledged only once handled, so the broker keeps what devices publish while the hub is away, and redelivers
what the hub received but had not yet stored when it stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

import aiomqtt

from hub import topology
from hub.backoff import Backoff
from hub.connector import ConnectorContext
from hub.errors import ConfigError
from hub.handle import HubHandle
from hub.tasks import stop_if_cancelled

DISCONNECT_TIMEOUT_S = 5.0

MessageHandler = Callable[[str, bytes], Awaitable[None]]


def outside_the_unified_namespace(topic_prefix: str) -> str:
    """``topic_prefix`` unless it would put raw device messages among CityHub's CloudEvents: an MQTT topic
    ``a/b`` is NATS subject ``a.b`` on the embedded server, and inside ``cityhub/`` only ``cityhub/raw/`` is raw."""
    inside = topic_prefix == topology.PREFIX or topic_prefix.startswith(f"{topology.PREFIX}/")
    raw = topic_prefix == topology.RAW_TOPIC_PREFIX or topic_prefix.startswith(f"{topology.RAW_TOPIC_PREFIX}/")
    if inside and not raw:
        raise ValueError(
            f"{topic_prefix!r} would publish raw device messages among CityHub's CloudEvents "
            f"(cityhub.>); use a prefix under {topology.RAW_TOPIC_PREFIX}/ or outside {topology.PREFIX}/"
        )
    return topic_prefix


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def client(self, identifier: str, *, clean_session: bool = False, keepalive: int = 30) -> aiomqtt.Client:
        """A fresh aiomqtt client for this broker (aiomqtt clients are not reentrant)."""
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            clean_session=clean_session,
            keepalive=keepalive,
            protocol=aiomqtt.ProtocolVersion.V311,
        )


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:password@]host[:port]`` → :class:`BrokerAddress` (port 1883 when absent)."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ConfigError(f"broker_url {url!r}: expected mqtt://[user:password@]host[:port]")
    return BrokerAddress(parts.hostname, parts.port or 1883, parts.username, parts.password)


def broker_for(hub: HubHandle, broker_url: str | None, plugin: str) -> BrokerAddress:
    """The plugin's configured broker, else the MQTT listener of the hub's embedded nats-server
    (``hub.nats.embedded``, an :class:`hub.nats.embedded.EmbeddedNats` started with an ``mqtt_port``)."""
    embedded_port = getattr(getattr(hub, "embedded", None), "mqtt_port", None)
    if broker_url:
        return parse_broker_url(broker_url)
    if embedded_port:
        return BrokerAddress("127.0.0.1", embedded_port)
    raise ConfigError(
        f"[plugins.{plugin}] broker_url: empty, and the hub runs no embedded nats-server with MQTT "
        '([nats.embedded] mqtt_port); set broker_url = "mqtt://host:1883"'
    )


def payload_bytes(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


async def disconnect(client: aiomqtt.Client, log: logging.Logger, timeout_s: float = DISCONNECT_TIMEOUT_S) -> None:
    """Leave the broker cleanly, but never wait for ever: a broker that does not confirm the disconnect
    must not keep the hub (or a simulator) from stopping."""
    try:
        async with asyncio.timeout(timeout_s):
            await client.__aexit__(None, None, None)
    except (TimeoutError, aiomqtt.MqttError) as error:
        log.warning("MQTT disconnect not confirmed (%s); dropping the connection", type(error).__name__)


async def consume(
    broker: BrokerAddress,
    *,
    client_id: str,
    topics: list[str],
    handle: MessageHandler,
    backoff: Backoff,
    ctx: ConnectorContext,
) -> NoReturn:
    """Subscribe to ``topics`` and await ``handle(topic, payload)`` for every message, forever; reconnect
    with backoff when the broker is down or drops the connection."""
    while True:
        stop_if_cancelled()
        try:
            client = broker.client(client_id)
            # Acknowledge only after the handler is done (the event is in JetStream or the DLQ), so a message
            # in flight when the hub stops is redelivered, not lost. aiomqtt has no public switch for paho's
            # manual acks yet (aiomqtt issue #345), hence the paho client underneath.
            client._client.manual_ack_set(True)
            await client.__aenter__()
            try:
                for topic in topics:
                    await client.subscribe(topic, qos=1)
                stop_if_cancelled()
                ctx.count("mqtt_connects")
                ctx.log.info("subscribed to %s on %s:%d", ", ".join(topics), broker.host, broker.port)
                backoff.reset()
                async for message in client.messages:
                    ctx.count("mqtt_received")
                    await handle(str(message.topic), payload_bytes(message))
                    client._client.ack(message.mid, message.qos)
                    stop_if_cancelled()
            finally:
                await disconnect(client, ctx.log)
        except aiomqtt.MqttError as error:
            delay = backoff.next_delay()
            ctx.count("mqtt_reconnects")
            ctx.log.warning(
                "MQTT broker %s:%d unavailable (%s); retrying in %.1fs", broker.host, broker.port, error, delay
            )
            await asyncio.sleep(delay)
