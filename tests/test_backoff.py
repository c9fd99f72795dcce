"""Backoff (hub.backoff): delays grow to the cap with jitter in the upper half; retry() retries only what it is
told to and returns the first success."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.backoff import Backoff, BackoffSettings, retry


@given(initial=st.floats(0.001, 10), cap=st.floats(0.001, 100), factor=st.floats(1, 4), seed=st.integers())
def test_delays_stay_in_the_upper_half_of_a_capped_exponential(initial, cap, factor, seed):
    backoff = Backoff(initial, cap, factor, random.Random(seed))
    for attempt in range(12):
        ceiling = min(cap, initial * factor**attempt)
        assert ceiling / 2 <= backoff.next_delay() <= ceiling
        assert backoff.ceiling(attempt + 1) == ceiling
    backoff.reset()
    assert backoff.next_delay() <= min(cap, initial)


async def test_retry_retries_transient_errors_then_returns():
    outcomes = [ConnectionError("down"), TimeoutError("slow"), "done"]
    seen: list[str] = []

    async def operation() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = await retry(
        operation,
        retry_on=(ConnectionError, TimeoutError),
        backoff=BackoffSettings(initial_s=0.001, max_s=0.002).make(),
        on_retry=lambda error, delay: seen.append(type(error).__name__),
    )
    assert result == "done" and seen == ["ConnectionError", "TimeoutError"]


async def test_retry_lets_other_errors_through():
    async def operation() -> None:
        raise ValueError("bad request")

    with pytest.raises(ValueError, match="bad request"):
        await retry(operation, retry_on=(ConnectionError,), backoff=Backoff(0.001, 0.001))
