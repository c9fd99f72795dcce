"""Connecting to NATS the way a real deployment needs: several server URLs, user/password, token, NKey seed
or a creds file, TLS with a private CA, from the ``[nats]`` section of ``cityhub.toml``
(:class:`hub.config.NatsConfig`). Secrets are :class:`~pydantic.SecretStr` there, so they never show up in
``repr``, logs or the admin API; they are revealed only in the keyword arguments handed to ``nats.connect``.
The client reconnects for ever: a hub must outlive a restart of its NATS server.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from hub.config import NatsConfig
from hub.errors import ConfigError

log = logging.getLogger("cityhub.nats")

RECONNECT_WAIT_S = 1.0


def _uses_tls(config: NatsConfig) -> bool:
    return config.tls is not None or any(url.startswith("tls://") for url in config.servers)


def _tls_context(config: NatsConfig) -> ssl.SSLContext:
    tls = config.tls
    context = ssl.create_default_context(cafile=str(tls.ca) if tls and tls.ca else None)
    if tls is not None and tls.cert is not None and tls.key is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def connect_kwargs(config: NatsConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`nats.connect` for this config (secrets revealed only here)."""
    if not config.servers:
        raise ConfigError("nats.servers is empty: give at least one server URL or let the hub embed one")
    kwargs: dict[str, Any] = {
        "servers": list(config.servers),
        "name": config.name,
        "connect_timeout": config.connect_timeout.total_seconds(),
        "reconnect_time_wait": RECONNECT_WAIT_S,
        "max_reconnect_attempts": -1,
    }
    if config.user is not None and config.password is not None:
        kwargs["user"] = config.user
        kwargs["password"] = config.password.get_secret_value()
    if config.token is not None:
        kwargs["token"] = config.token.get_secret_value()
    if config.nkey_seed_file is not None:
        kwargs["nkeys_seed"] = str(config.nkey_seed_file)
    if config.creds_file is not None:
        kwargs["user_credentials"] = str(config.creds_file)
    if _uses_tls(config):
        kwargs["tls"] = _tls_context(config)
    return kwargs


def redacted_servers(config: NatsConfig) -> list[str]:
    """Server URLs with any ``user:password@`` part masked, for logs and the admin API."""
    return [_redact_url(url) for url in config.servers]


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


async def connect(config: NatsConfig) -> NatsClient:
    """Connect with reconnect for ever; connection state changes are logged without secrets."""
    servers = ", ".join(redacted_servers(config))

    async def on_error(exc: Exception) -> None:
        log.warning("nats error (%s): %s", servers, exc)

    async def on_disconnected() -> None:
        if not client.is_closed:  # nats-py reports its own close() as a disconnect too
            log.warning("nats disconnected from %s; reconnecting", servers)

    async def on_reconnected() -> None:
        log.info("nats reconnected (%s)", servers)

    client = await nats.connect(
        **connect_kwargs(config),
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    log.info("connected to nats %s", servers)
    return client
