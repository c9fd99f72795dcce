"""Long-running connector loops that always stop when cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn

from hub.tasks import stop_if_cancelled


async def every(interval_s: float, tick: Callable[[], Awaitable[None]]) -> NoReturn:
    """Await ``tick()`` every ``interval_s`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await tick()
        stop_if_cancelled()
