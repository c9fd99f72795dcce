"""The hub's NATS connection, kept working whatever the server does to it.

nats-py reconnects a client whose server went away, but when the server *closes* the connection with an
error (``-ERR``: a publish above max_payload, credentials revoked by a config reload, ...) the client goes to
its closed state for good, and every later publish, request or fetch on it raises. :class:`NatsLink` then
opens a new client with the same ``[nats]`` config (retrying, with backoff, for as long as it takes) and hands
it to its listeners, which move their work onto it: JetStream contexts, KV buckets and subscriptions all
belong to the client that made them, so the pipeline, the escalator and the dashboard re-create theirs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client as NatsClient

from hub.backoff import Backoff, retry
from hub.config import NatsConfig
from hub.nats.natsconn import connect, redacted_servers
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.nats")

ConnectionListener = Callable[[NatsClient], Awaitable[None]]


class NatsLink:
    """Holds the current client (``client``); replaces it when the server closes it for good."""

    def __init__(self, config: NatsConfig):
        self.config = config
        self.client: NatsClient | None = None
        self.replaced = 0  # clients opened after the first
        self._listeners: list[ConnectionListener] = []
        self._replacing: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> NatsClient:
        """Connect the first client (see :func:`hub.nats.natsconn.connect` for how it fails)."""
        self.client = await connect(self.config, on_closed=self._on_closed)
        return self.client

    def add_listener(self, listener: ConnectionListener) -> None:
        """``await listener(client)`` after each replacement, in the order they were added."""
        self._listeners.append(listener)

    async def close(self) -> None:
        self._closing = True
        if self._replacing is not None:
            await cancel_and_wait(self._replacing)
        if self.client is not None:
            try:
                await self.client.close()
            except (OSError, nats.errors.Error) as exc:  # the server is away: nothing left to flush to
                log.warning("closing the nats connection: %s: %s", type(exc).__name__, exc)

    async def _on_closed(self, client: NatsClient) -> None:
        if client is not self.client or self._closing:
            return  # an earlier client, or our own close()
        log.error(
            "nats-server %s closed the connection (%s); opening a new one",
            ", ".join(redacted_servers(self.config)),
            client.last_error,
        )
        # nats-py awaits this callback while it tears the client down: replace it outside of that
        self._replacing = asyncio.get_running_loop().create_task(self._replace(), name="cityhub.nats.replace")

    async def _replace(self) -> None:
        def retrying(exc: BaseException, delay: float) -> None:
            log.error(
                "opening a new nats connection failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay
            )

        client = await retry(
            lambda: connect(self.config, on_closed=self._on_closed),
            retry_on=(Exception,),
            backoff=Backoff(initial_s=0.5, max_s=10.0),
            on_retry=retrying,
        )
        self.client = client
        self.replaced += 1
        log.warning("new nats connection open; moving the hub onto it")
        for listener in self._listeners:
            try:
                await listener(client)
            except Exception:  # one part that cannot move must not keep the others on the closed client
                log.exception(
                    "moving %s onto the new nats connection failed", getattr(listener, "__qualname__", listener)
                )
