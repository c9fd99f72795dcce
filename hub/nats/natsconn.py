"""Connecting to NATS the way a real deployment needs: several server URLs, user/password, token, NKey seed
or a creds file, TLS with a private CA, from the ``[nats]`` section of ``cityhub.toml``
(:class:`hub.config.NatsConfig`). Secrets are :class:`~pydantic.SecretStr` there, so they never show up in
``repr``, logs or the admin API; they are revealed only in the keyword arguments handed to ``nats.connect``.

The first connection fails fast when retrying cannot help: a server that rejects the credentials or whose
certificate the CA does not vouch for ends it at once with a :class:`~hub.errors.NatsConnectError`. Servers
that are merely not up yet are retried for ``nats.initial_connect_wait``. Once connected, the client
reconnects for ever: a hub must outlive a restart of its NATS server.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import AuthorizationError

from hub.config import NatsConfig
from hub.errors import ConfigError, NatsConnectError
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.nats")

RECONNECT_WAIT_S = 1.0
# What nats-server answers (-ERR) when it refuses the credentials of a CONNECT.
_AUTH_REFUSALS = ("authorization violation", "authentication expired", "authentication revoked")


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


async def connect(config: NatsConfig, on_closed: Callable[[NatsClient], Awaitable[None]] | None = None) -> NatsClient:
    """Connect (failing fast on rejected credentials or certificates, retrying servers that are not up for
    ``config.initial_connect_wait``), then reconnect for ever; state changes are logged without secrets.
    ``on_closed(client)`` is awaited when the client is closed for good (by the server, or by ``close()``)."""
    servers = ", ".join(redacted_servers(config))
    client = NatsClient()
    refusal: asyncio.Future[NatsConnectError] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        if not refusal.done() and (error := _refusal(config, servers, exc)) is not None:
            refusal.set_result(error)
        log.warning("nats error (%s): %s", servers, exc)

    async def on_disconnected() -> None:
        if not client.is_closed:  # nats-py reports its own close() as a disconnect too
            log.warning("nats disconnected from %s; reconnecting", servers)

    async def on_reconnected() -> None:
        log.info("nats reconnected (%s)", servers)

    async def closed() -> None:
        if on_closed is not None:
            await on_closed(client)

    attempt = asyncio.create_task(
        client.connect(
            **connect_kwargs(config),
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            closed_cb=closed,
        ),
        name="cityhub.nats.connect",
    )
    await _first_connection(client, attempt, refusal, config.initial_connect_wait.total_seconds(), servers)
    log.info("connected to nats %s", servers)
    return client


async def _first_connection(
    client: NatsClient,
    attempt: asyncio.Task[None],
    refusal: asyncio.Future[NatsConnectError],
    wait_s: float,
    servers: str,
) -> None:
    """Wait for ``attempt`` to connect; give up at once on a ``refusal``, or after ``wait_s``."""
    try:
        await asyncio.wait((attempt, refusal), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not attempt.done():
            await cancel_and_wait(attempt)
            await client.close()
    if not attempt.cancelled():
        attempt.result()  # raises nats-py's own errors, e.g. an unreadable creds file
        return
    if refusal.done():
        raise refusal.result()
    raise NatsConnectError(
        f"no NATS server answered within {wait_s:g} s: {servers} (last error: "
        f"{client.last_error}); is nats-server running and reachable? "
        "nats.initial_connect_wait sets how long start-up waits"
    )


def _refusal(config: NatsConfig, servers: str, exc: Exception) -> NatsConnectError | None:
    """The error that ends the first connection at once, if ``exc`` is one retrying cannot fix."""
    if isinstance(exc, AuthorizationError) or any(text in str(exc).lower() for text in _AUTH_REFUSALS):
        return NatsConnectError(
            f"NATS server {servers} rejected the credentials ({_credentials(config)}): "
            f"{exc}; check them and the environment variables they come from"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return NatsConnectError(
            f"the TLS certificate of NATS server {servers} was not accepted: "
            f"{exc.verify_message}; check nats.tls.ca is the CA that signed it and the "
            "URL's host is in it"
        )
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return NatsConnectError(
            f"the TLS handshake with NATS server {servers} failed: {exc.reason or exc}; "
            "check nats.tls (client certificate and key) and that the server speaks TLS"
        )
    return None


def _credentials(config: NatsConfig) -> str:
    """Which settings held the credentials, for the message that says they were rejected."""
    if config.user is not None:
        return "nats.user and nats.password"
    for name in ("token", "nkey_seed_file", "creds_file"):
        if getattr(config, name) is not None:
            return f"nats.{name}"
    if any("@" in url for url in config.servers):
        return "the user:password@ in nats.servers"
    return "none configured: set nats.user and nats.password, nats.token, nats.nkey_seed_file or nats.creds_file"
