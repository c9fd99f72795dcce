"""Long-running connector loops that always stop when cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn


def stop_if_cancelled() -> None:
    """Raise CancelledError when this task has a pending cancellation. ``asyncio.wait_for`` in Python 3.11
    (inside aiomqtt and nats-py) can swallow a cancellation that arrives just as its future completes (fixed in
    3.12); a loop that runs for ever must then notice the request itself, or the hub cannot stop the connector."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def every(interval_s: float, tick: Callable[[], Awaitable[None]]) -> NoReturn:
    """Await ``tick()`` every ``interval_s`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await tick()
        stop_if_cancelled()
