"""The one readiness wait of connector and hub tests: poll a condition with a generous deadline, never time it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import pytest


async def holds_within(
    condition: Callable[[], object | Awaitable[object]], timeout: float, interval: float = 0.02
) -> bool:
    """Poll ``condition()`` (a plain or an async function) until it holds or ``timeout`` seconds pass; whether
    it held. For scenarios that carry on and report what did not happen instead of stopping there."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                held = condition()
                if inspect.isawaitable(held):
                    held = await held
                if held:
                    return True
                await asyncio.sleep(interval)
    except TimeoutError:
        return False


async def wait_until(
    condition: Callable[[], object | Awaitable[object]], what: str = "the awaited condition", timeout: float = 60.0
) -> None:
    """Poll ``condition()`` (a plain or an async function) until it holds; fail saying ``what`` never happened.
    The timeout only stops a hung test: nothing asserts on speed."""
    if not await holds_within(condition, timeout):
        pytest.fail(f"never happened: {what}")
