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
            await ctx.publish(Event(source=self.source, source_event_id=f"{os.getpid()}-{n}", category=Category.NOISE,
                                    time=utcnow()))
            await asyncio.sleep(0.05)


class CrashingConnector(Connector):
    """Publishes one event, then dies."""

    source = "crashing"

    def __init__(self) -> None:
        super().__init__(NoSettings())

    async def run(self, ctx: ConnectorContext) -> None:
        await ctx.publish(Event(source=self.source, source_event_id=str(os.getpid()), category=Category.FIRE,
                                time=utcnow()))
        await asyncio.sleep(0.2)
        raise RuntimeError("the vendor SDK crashed")


class BlockingConnector(Connector):
    """Blocks its event loop for good, as a synchronous vendor call with no timeout would."""

    source = "blocking"

    def __init__(self) -> None:
        super().__init__(NoSettings())

    async def run(self, ctx: ConnectorContext) -> None:
        time.sleep(3600)
