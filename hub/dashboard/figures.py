"""The figures operations centres are judged on, kept incrementally so a figures request costs little even
with 10,000 open incidents: response-time distributions per key and event rates per source."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import defaultdict
from datetime import datetime

RATE_HISTORY_MIN = 30


def nearest_rank(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of a non-empty sorted list (``fraction`` 0.5 is the median)."""
    rank = max(1, math.ceil(len(sorted_values) * fraction))
    return sorted_values[rank - 1]


class Durations:
    """Samples of one duration (time to accept, time to resolve) in seconds, sorted per key."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[float]] = defaultdict(list)

    def add(self, keys: list[str], seconds: float) -> None:
        """Record one sample under every key it belongs to (its category, its street, ``all``)."""
        for key in keys:
            insort(self._by_key[key], seconds)

    def remove(self, keys: list[str], seconds: float) -> None:
        """Take back a sample recorded with :meth:`add` (an earlier acceptance arrived later)."""
        for key in keys:
            samples = self._by_key[key]
            del samples[bisect_left(samples, seconds)]

    def summary(self, key: str) -> dict[str, float | int] | None:
        samples = self._by_key.get(key)
        if not samples:
            return None
        return {"count": len(samples), "median_s": nearest_rank(samples, 0.5), "p90_s": nearest_rank(samples, 0.9)}

    def summaries(self, prefix: str) -> dict[str, dict[str, float | int]]:
        """Summaries of every key that starts with ``prefix`` (``category:``, ``street:``), prefix removed."""
        found = {}
        for key in self._by_key:
            if key.startswith(prefix):
                summary = self.summary(key)
                if summary is not None:
                    found[key.removeprefix(prefix)] = summary
        return found


class EventRates:
    """Events per minute per source, bucketed by the minute JetStream stored each event, so a restarted
    dashboard that replays the stream shows the same rates."""

    def __init__(self) -> None:
        self._minutes: dict[str, dict[int, int]] = defaultdict(dict)

    def add(self, source: str, stored_at: datetime) -> None:
        minute = int(stored_at.timestamp() // 60)
        buckets = self._minutes[source]
        buckets[minute] = buckets.get(minute, 0) + 1
        if len(buckets) > 2 * RATE_HISTORY_MIN:
            for old in sorted(buckets)[: len(buckets) - RATE_HISTORY_MIN]:
                del buckets[old]

    def per_source(self, now: datetime) -> dict[str, dict[str, object]]:
        """Per source: ``per_minute``, the events of the last 60 seconds (the minute so far plus the
        uncovered part of the minute before, assuming it was even), ``last_minute`` (the last complete
        minute), ``current`` (the minute so far) and ``series``, the counts of the last RATE_HISTORY_MIN
        minutes, oldest first."""
        this_minute, seconds_into = divmod(now.timestamp(), 60)
        result: dict[str, dict[str, object]] = {}
        for source, buckets in self._minutes.items():
            first = int(this_minute) - RATE_HISTORY_MIN + 1
            series = [buckets.get(minute, 0) for minute in range(first, int(this_minute) + 1)]
            per_minute = series[-1] + series[-2] * (1 - seconds_into / 60)
            result[source] = {
                "per_minute": round(per_minute, 1),
                "last_minute": series[-2],
                "current": series[-1],
                "series": series,
            }
        return result
