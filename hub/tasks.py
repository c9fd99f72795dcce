"""Stopping background tasks the one way that leaves nothing running."""

from __future__ import annotations

import asyncio
import contextlib

RECANCEL_EVERY_S = 1.0


def stop_if_cancelled() -> None:
    """Raise CancelledError when this task has a pending cancellation. ``asyncio.wait_for`` in Python 3.11
    (inside aiomqtt and nats-py) can swallow a cancellation that arrives just as its future completes (fixed in
    3.12); a loop that runs for ever must then notice the request itself, or nothing can stop it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel every task given (``None`` is skipped) and wait until each has finished unwinding. A cancel
    that a library call swallowed (Python 3.11's ``asyncio.wait_for`` loses one that arrives as its inner
    future completes, and nats-py's timeouts use it) is sent again until the task ends: a stop never hangs
    on a retry loop that caught the cancellation as a timeout."""
    running = [task for task in tasks if task is not None]
    while pending := [task for task in running if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=RECANCEL_EVERY_S)
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
