"""Connectors for supervisor tests, importable by the spawned child processes."""

from __future__ import annotations

import asyncio
import os
import time

from pydantic import BaseModel

from hub.connector import Connector, ConnectorContext
from hub.models import Category, Event, utcnow


class NoSettings(BaseModel):
    pass


class TickingConnector(Connector):
    """Publishes one event every 50 ms."""

    source = "ticking"

    def __init__(self) -> None:
        super().__init__(NoSettings())

    async def run(self, ctx: ConnectorContext) -> None:
        n = 0
        while True:
            n += 1
            await ctx.publish(
                Event(source=self.source, source_event_id=f"{os.getpid()}-{n}", category=Category.NOISE, time=utcnow())
            )
            await asyncio.sleep(0.05)


class CrashingConnector(Connector):
    """Publishes one event, then dies."""

    source = "crashing"

    def __init__(self) -> None:
        super().__init__(NoSettings())

    async def run(self, ctx: ConnectorContext) -> None:
        await ctx.publish(
            Event(source=self.source, source_event_id=str(os.getpid()), category=Category.FIRE, time=utcnow())
        )
        await asyncio.sleep(0.2)
        raise RuntimeError("the vendor SDK crashed")


class BlockingConnector(Connector):
    """Blocks its event loop for good, as a synchronous vendor call with no timeout would."""

    source = "blocking"

    def __init__(self) -> None:
        super().__init__(NoSettings())

    async def run(self, ctx: ConnectorContext) -> None:
        time.sleep(3600)


class ClosedByTheServerConnector(Connector):
    """Publishes one event, then makes nats-server close its connection: a message whose payload fits
    max_payload and whose headers take it over (sent on the context's client directly, which the context's own
    publishing never does), as issue 10 saw."""

    source = "closed_by_server"

    def __init__(self) -> None:
        super().__init__(NoSettings())

    async def run(self, ctx: ConnectorContext) -> None:
        await ctx.publish(
            Event(source=self.source, source_event_id=str(os.getpid()), category=Category.FIRE, time=utcnow())
        )
        nc = ctx._nc  # type: ignore[attr-defined]
        await nc.publish("cityhub.test", b"x" * (nc.max_payload - 10), headers={"Reason": "y" * 100})
        await asyncio.sleep(3600)
