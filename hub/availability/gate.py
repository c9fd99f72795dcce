"""The lease, shared with the hub's connector processes: they run only while it lets them.

The hub writes into shared memory the moment until which its connectors may run — its own view of its lease
(:attr:`hub.availability.lease.Lease.valid_until`) while it is active, 0 while it stands by — and refreshes it
every ``REFRESH_S``. A connector process waits until that moment is in the future, runs, and stops by itself as
soon as it has passed. So a hub that is paused (SIGSTOP, a frozen VM) or killed stops refreshing, and its
connectors stop when its own view of the lease ends: before the server lets the lease expire, so before another
hub's connectors start. No connector runs twice, and a connector never outlives its hub's lease.

The moment is on ``time.monotonic()``, the system's monotonic clock, which every process on the machine
shares (connector processes are children of the hub).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

REFRESH_S = 0.1  # how often the hub writes the moment
WATCH_S = 0.05  # how often a connector process looks at it
_SPAWN = multiprocessing.get_context("spawn")


class Gate:
    """The moment until which connectors may run, in memory shared with the processes given :attr:`shared`.
    ``until`` says it (the hub's lease); without one the gate is always open."""

    def __init__(self, until: Callable[[], float] | None = None):
        self.until = until or (lambda: math.inf)
        self.shared: Any = _SPAWN.RawValue("d", self.until())
        self._refreshing: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        """Write the moment now (right after the hub's role changed)."""
        self.shared.value = self.until()

    def start(self) -> None:
        self._refreshing = asyncio.create_task(self._refresh(), name="cityhub.gate")

    def stop(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            self._refreshing = None

    async def _refresh(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(REFRESH_S)


def is_open(shared: Any) -> bool:
    """In a connector process: may it run now?"""
    return time.monotonic() < shared.value


async def opened(shared: Any, waiting: Callable[[], None]) -> None:
    """In a connector process: return once the gate is open, calling ``waiting`` about once a second meanwhile
    (its health report: a process that waits is not hung)."""
    beat = time.monotonic()
    while not is_open(shared):
        if time.monotonic() - beat >= 1.0:
            waiting()
            beat = time.monotonic()
        await asyncio.sleep(WATCH_S)


async def closed(shared: Any) -> None:
    """In a connector process: return once the gate has closed."""
    while is_open(shared):
        await asyncio.sleep(WATCH_S)
