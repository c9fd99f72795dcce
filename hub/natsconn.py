"""Connecting to NATS the way a real deployment needs: several server URLs, user/password, token, NKey seed
or a creds file, TLS with a private CA. :class:`NatsSettings` is the ``[nats]`` section of ``cityhub.toml``;
secrets are :class:`~pydantic.SecretStr` so they never show up in ``repr``, logs or the admin API
(``${ENV}`` substitution in the config file is how they get in).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.errors import ConfigError

log = logging.getLogger("cityhub.nats")


class NatsSettings(BaseModel):
    """How to reach NATS. With no ``urls`` the hub starts an embedded nats-server."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(default_factory=list, description="Server URLs, e.g. nats://nats-1:4222; tried in turn.")
    name: str = Field("cityhub", description="Client name shown in the server's connection list.")
    user: str | None = Field(None, description="User for user/password authentication.")
    password: SecretStr | None = Field(None, description="Password; use ${ENV} substitution, never a literal.")
    token: SecretStr | None = Field(None, description="Token authentication.")
    nkey_seed_file: Path | None = Field(None, description="File holding an NKey seed (SU...).")
    creds_file: Path | None = Field(None, description="Decentralised-auth .creds file (JWT + NKey seed).")
    tls_ca_file: Path | None = Field(None, description="CA bundle that signed the servers' certificates.")
    tls_cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    tls_key_file: Path | None = Field(None, description="Client private key for mutual TLS.")
    tls_hostname: str | None = Field(None, description="Expected server name when it differs from the URL host.")
    connect_timeout_s: float = Field(5.0, gt=0)
    reconnect_wait_s: float = Field(1.0, gt=0, description="Pause between reconnect attempts.")
    max_reconnect_attempts: int = Field(-1, description="-1: keep trying for ever (a hub must outlive a restart).")

    @model_validator(mode="after")
    def _one_auth_method(self) -> NatsSettings:
        chosen = [
            name
            for name, present in (
                ("user/password", self.user is not None or self.password is not None),
                ("token", self.token is not None),
                ("nkey_seed_file", self.nkey_seed_file is not None),
                ("creds_file", self.creds_file is not None),
            )
            if present
        ]
        if len(chosen) > 1:
            raise ValueError(f"choose one NATS authentication method, got {', '.join(chosen)}")
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca_file is not None or self.tls_cert_file is not None or any(
            url.startswith("tls://") for url in self.urls
        )


def _tls_context(settings: NatsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None)
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    return context


def connect_kwargs(settings: NatsSettings) -> dict[str, Any]:
    """The keyword arguments of :func:`nats.connect` for these settings (secrets revealed only here)."""
    if not settings.urls:
        raise ConfigError("nats.urls is empty: give at least one server URL or let the hub embed one")
    kwargs: dict[str, Any] = {
        "servers": list(settings.urls),
        "name": settings.name,
        "connect_timeout": settings.connect_timeout_s,
        "reconnect_time_wait": settings.reconnect_wait_s,
        "max_reconnect_attempts": settings.max_reconnect_attempts,
    }
    if settings.user is not None and settings.password is not None:
        kwargs["user"] = settings.user
        kwargs["password"] = settings.password.get_secret_value()
    if settings.token is not None:
        kwargs["token"] = settings.token.get_secret_value()
    if settings.nkey_seed_file is not None:
        kwargs["nkeys_seed"] = str(settings.nkey_seed_file)
    if settings.creds_file is not None:
        kwargs["user_credentials"] = str(settings.creds_file)
    if settings.uses_tls:
        kwargs["tls"] = _tls_context(settings)
        if settings.tls_hostname:
            kwargs["tls_hostname"] = settings.tls_hostname
    return kwargs


def redacted_servers(settings: NatsSettings) -> list[str]:
    """Server URLs with any ``user:password@`` part masked, for logs and the admin API."""
    return [_redact_url(url) for url in settings.urls]


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


async def connect(settings: NatsSettings) -> NatsClient:
    """Connect with reconnect for ever; connection state changes are logged without secrets."""
    servers = ", ".join(redacted_servers(settings))

    async def on_error(exc: Exception) -> None:
        log.warning("nats error (%s): %s", servers, exc)

    async def on_disconnected() -> None:
        log.warning("nats disconnected from %s; reconnecting", servers)

    async def on_reconnected() -> None:
        log.info("nats reconnected (%s)", servers)

    client = await nats.connect(
        **connect_kwargs(settings),
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    log.info("connected to nats %s", servers)
    return client
