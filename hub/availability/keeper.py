"""The lease's calls on a thread of their own, with a NATS connection of their own.

On the hub's event loop a renewal waits behind whatever runs there: a batch being processed, a standby catching
up, on a machine short of CPU a few hundred milliseconds each, and a renewal needs several turns of the loop
(send, read the answer, resume). Under load the active hub's lease lapsed that way and the hubs swapped roles for
nothing, and a standby's campaign took a second or more after the lease had expired. Here the calls wait only
for the network and for Python's GIL (handed over every few milliseconds).

A hub whose own event loop stops running (a plugin blocking it, say) must still lose its lease, so the elector
renews only while that loop keeps running (:class:`hub.availability.elector.Elector`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient

from hub.config import NatsConfig
from hub.nats.natslink import ConnectionListener, NatsLink

T = TypeVar("T")


class LeaseThread:
    """An event loop on a thread of its own and a NATS connection opened on it (named ``<name>-lease``),
    replaced like the hub's own when the server closes it (:mod:`hub.nats.natslink`)."""

    def __init__(self, config: NatsConfig):
        self.link = NatsLink(config.model_copy(update={"name": f"{config.name}-lease"}))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cityhub-lease", daemon=True)

    async def start(self, on_replaced: ConnectionListener) -> NatsClient:
        """Start the thread and connect on it; ``on_replaced(client)`` runs on it after each replacement."""
        self._thread.start()
        self.link.add_listener(on_replaced)
        return await self.run(self.link.open())

    async def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Run ``call`` on the thread's loop and wait for it here (a cancellation here cancels it there)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, self._loop))

    async def background(self, call: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start ``call`` as a task on the thread's loop; cancel it with ``run(cancel_and_wait(task))``."""

        async def spawn() -> asyncio.Task[None]:
            return asyncio.create_task(call)

        return await self.run(spawn())

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    async def stop(self) -> None:
        if not self.running:
            return
        await self.run(self.link.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()
