"""Retry with exponential backoff, for connectors talking to external systems that may be down or slow.

Delays grow ``initial_s * factor**attempt`` up to ``max_s``; each delay keeps its lower half and draws the
upper half at random ("equal jitter"), so many clients retrying the same server do not retry in lockstep yet
never retry at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class BackoffSettings(BaseModel):
    """How a connector retries an external system (a settings section every connector can embed)."""

    model_config = ConfigDict(extra="forbid")

    initial_s: float = Field(0.5, gt=0, description="First retry delay in seconds.")
    max_s: float = Field(30.0, gt=0, description="Longest delay between two retries in seconds.")
    factor: float = Field(2.0, ge=1, description="Growth of the delay after each failed attempt.")

    def make(self, rng: random.Random | None = None) -> Backoff:
        return Backoff(self.initial_s, self.max_s, self.factor, rng or random.Random())


@dataclass
class Backoff:
    """The delay sequence of one retrying loop; ``reset()`` after a success."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        self.attempt += 1
        ceiling = self.ceiling(self.attempt)
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def ceiling(self, failures: int) -> float:
        """The longest delay after ``failures`` failed attempts (1: the first), without jitter: for a count kept
        elsewhere (a message's delivery count) where retries must come back in their order."""
        return min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1))

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self) -> float:
        """Sleep for the next delay and return it."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Await ``operation()`` until it succeeds, sleeping between attempts; errors outside ``retry_on``
    propagate at once. ``on_retry(error, delay)`` is called before each sleep (log and count there)."""
    while True:
        try:
            result = await operation()
        except retry_on as error:
            delay = backoff.next_delay()
            if on_retry is not None:
                on_retry(error, delay)
            await asyncio.sleep(delay)
        else:
            backoff.reset()
            return result
