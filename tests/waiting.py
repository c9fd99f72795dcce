"""The one readiness wait of the test suite."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

import pytest


async def wait_until(condition: Callable[[], object], what: str = "the awaited condition", timeout: float = 60.0) -> None:
    """Poll ``condition()`` (a coroutine function too) until it holds; fail saying ``what`` never happened. The
    timeout only stops a hung test: nothing asserts on speed."""
    try:
        async with asyncio.timeout(timeout):
            while not await _holds(condition):
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")


async def _holds(condition: Callable[[], object]) -> object:
    result = condition()
    return await result if inspect.isawaitable(result) else result
