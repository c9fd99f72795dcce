"""Dedup and incident merging: CityHub's Rust core beside the pure-Python code a user would otherwise write.

- merging 1,000,000 events over one day in a 30 × 30 km area vs a pure-Python grid-hash merger (same rules,
  its answers compared with CityHub's and the verdict put in the note);
- exact dedup of 1,000,000 keys vs dict + deque;
- the cost of crossing into Rust at batch sizes 1, 100 and 10,000;
- what a per-batch snapshot costs: delta vs full.
"""

from __future__ import annotations

import math
import random
from collections import deque

import pytest

from hub.incidents import CategoryPolicy, Deduper, IncidentMerger, MergeInput, MergePolicy
from tests.reference_incidents import haversine_m

EVENTS = 1_000_000
BATCH = 10_000
DAY_S = 86_400.0
BASE_LON, BASE_LAT = 104.0665, 30.5728
SIDE_M = 30_000.0
METRE_LAT = 1 / 111_195.0

POLICY = MergePolicy(
    groups={"gas": ["gas_leak", "smell_gas"], "water": ["water_leak", "flooding"]},
    default=CategoryPolicy(distance_m=100, window_s=3_600),
    per_category={"gas_leak": CategoryPolicy(distance_m=200, window_s=7_200)},
)
CATEGORIES = ["gas_leak", "smell_gas", "water_leak", "flooding", "noise", "road_damage", "fire", "sanitation"]


def city_day(count: int, seed: int = 7) -> tuple[list[str], list[float], list[str], list[float], list[float]]:
    """Columns of `count` located events in time order: 70 % anywhere, 30 % near one of 2,000 hot spots."""
    rng = random.Random(seed)
    lon_scale = METRE_LAT / math.cos(math.radians(BASE_LAT))
    hot_spots = [(rng.uniform(0, SIDE_M), rng.uniform(0, SIDE_M)) for _ in range(2_000)]
    ids, times, categories, lons, lats = [], [], [], [], []
    for i, time in enumerate(sorted(rng.uniform(0, DAY_S) for _ in range(count))):
        if rng.random() < 0.3:
            x, y = rng.choice(hot_spots)
            x, y = x + rng.gauss(0, 40), y + rng.gauss(0, 40)
        else:
            x, y = rng.uniform(0, SIDE_M), rng.uniform(0, SIDE_M)
        ids.append(f"evt-{i:07d}")
        times.append(time)
        categories.append(rng.choice(CATEGORIES))
        lons.append(BASE_LON + x * lon_scale)
        lats.append(BASE_LAT + y * METRE_LAT)
    return ids, times, categories, lons, lats


class GridHashMerger:
    """The pure-Python merger a user would write: a dict of grid cells, the same rules as CityHub
    (category groups, wider D and T of the pair, first-opened incident wins, expiry by last report)."""

    def __init__(self, policy: MergePolicy, max_lat: float) -> None:
        self.policy = policy
        radius = max([policy.default.distance_m, *(p.distance_m for p in policy.per_category.values())])
        self.cell_lat = radius * METRE_LAT
        self.cell_lon = self.cell_lat / math.cos(math.radians(max_lat))
        self.group = {c: name for name, members in policy.groups.items() for c in members}
        self.cells: dict[tuple, list[list]] = {}
        self.open: dict[int, list] = {}
        self.next_seq = 0

    def limits(self, category: str) -> tuple[float, float]:
        p = self.policy.per_category.get(category, self.policy.default)
        return p.distance_m, p.window_s

    def add(self, event_id: str, time: float, category: str, lon: float, lat: float) -> tuple[str, bool, int]:
        group = self.group.get(category, category)
        row, col = int(lat // self.cell_lat), int(lon // self.cell_lon)
        d1, t1 = self.limits(category)
        best = None
        for r in (row - 1, row, row + 1):
            for c in (col - 1, col, col + 1):
                for inc in self.cells.get((group, r, c), ()):
                    seq, _, inc_cat, first, last, inc_lon, inc_lat, _ = inc
                    if best is not None and best[0] <= seq:
                        continue
                    d2, t2 = self.limits(inc_cat)
                    window = max(t1, t2)
                    if first - window <= time <= last + window and haversine_m(lon, lat, inc_lon, inc_lat) <= max(
                        d1, d2
                    ):
                        best = inc
        if best is not None:
            best[3], best[4], best[7] = min(best[3], time), max(best[4], time), best[7] + 1
            return best[1], False, best[7]
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        incident = [seq, f"inc-{event_id}", category, time, time, lon, lat, 1]
        self.open[seq] = incident
        self.cells.setdefault((group, row, col), []).append(incident)
        return incident[1], True, 1

    def expire(self, now: float) -> list[str]:
        due = sorted(
            (inc[4] + self.limits(inc[2])[1], seq)
            for seq, inc in self.open.items()
            if inc[4] + self.limits(inc[2])[1] < now
        )
        closed = []
        for _, seq in due:
            inc = self.open.pop(seq)
            group = self.group.get(inc[2], inc[2])
            self.cells[(group, int(inc[6] // self.cell_lat), int(inc[5] // self.cell_lon))].remove(inc)
            closed.append(inc[1])
        return closed


@pytest.fixture(scope="module")
def day():
    return city_day(EVENTS)


@pytest.fixture(scope="module")
def outcomes() -> dict:
    return {}


def merge_day_with_cityhub(day) -> tuple[list, list[str]]:
    ids, times, categories, lons, lats = day
    merger, batches, closed = IncidentMerger(POLICY), [], []
    for start in range(0, len(ids), BATCH):
        end = start + BATCH
        closed += merger.expire(times[start])
        batches.append(
            merger.add_columns(
                ids[start:end], times[start:end], categories[start:end], lons[start:end], lats[start:end]
            )
        )
    return batches, closed


def as_rows(batches: list) -> list[tuple[str, bool, int]]:
    return [row for batch in batches for row in zip(*batch, strict=True)]


def merge_day_with_python(day) -> tuple[list, list[str]]:
    ids, times, categories, lons, lats = day
    peer = GridHashMerger(POLICY, max_lat=max(lats))
    results, closed = [], []
    for start in range(0, len(ids), BATCH):
        closed += peer.expire(times[start])
        for i in range(start, min(start + BATCH, len(ids))):
            results.append(peer.add(ids[i], times[i], categories[i], lons[i], lats[i]))
    return results, closed


def test_merge_cityhub(benchmark, day, outcomes):
    benchmark.group = "incident merging: 1M events, one day, 30 x 30 km"
    result = benchmark.pedantic(merge_day_with_cityhub, args=(day,), rounds=3, iterations=1)
    outcomes["cityhub"] = (as_rows(result[0]), result[1])
    merged = sum(1 for batch in result[0] for is_new in batch.is_new if not is_new)
    benchmark.extra_info.update(
        items=EVENTS, role="cityhub", note=f"add_columns in batches of {BATCH:,}, expire per batch; {merged:,} merged"
    )


def test_merge_python_grid_hash(benchmark, day, outcomes):
    benchmark.group = "incident merging: 1M events, one day, 30 x 30 km"
    result = benchmark.pedantic(merge_day_with_python, args=(day,), rounds=1, iterations=1)
    same = "same answers as CityHub" if outcomes.get("cityhub") == result else "ANSWERS DIFFER from CityHub"
    benchmark.extra_info.update(items=EVENTS, role="peer", note=f"pure-Python grid hash; {same}")


def test_merge_cityhub_rows(benchmark, day):
    benchmark.group = "incident merging: 1M events, one day, 30 x 30 km"
    rows = [MergeInput(*fields) for fields in zip(*day, strict=True)]

    def run():
        merger = IncidentMerger(POLICY)
        for start in range(0, len(rows), BATCH):
            merger.expire(rows[start].time)
            merger.add_many(rows[start : start + BATCH])

    benchmark.pedantic(run, rounds=2, iterations=1)
    benchmark.extra_info.update(items=EVENTS, role="cityhub", note="add_many(list[MergeInput]) → list[MergeResult]")


@pytest.fixture(scope="module")
def dedup_stream() -> tuple[list[str], list[float]]:
    """1M idempotency keys over a day, 10 % of them re-deliveries of a recent key."""
    rng = random.Random(11)
    keys, times = [], []
    for i in range(EVENTS):
        if i and rng.random() < 0.1:
            keys.append(keys[max(0, i - rng.randint(1, 5_000))])
        else:
            keys.append(f"hotline\x1fWO-2026-{i:08d}")
        times.append(i * DAY_S / EVENTS)
    return keys, times


class DictDequeDeduper:
    """The dict + deque dedup a user would write: key → time, a deque of (time, key) to expire and evict."""

    def __init__(self, window_s: float, max_keys: int) -> None:
        self.window_s, self.max_keys = window_s, max_keys
        self.live: dict[str, float] = {}
        self.order: deque[tuple[float, str]] = deque()

    def check_many(self, keys: list[str], times: list[float]) -> list[bool]:
        out = []
        live, order, window = self.live, self.order, self.window_s
        for key, time in zip(keys, times, strict=True):
            while order and (order[0][0] < time - window or len(live) >= self.max_keys):
                old_time, old_key = order.popleft()
                if live.get(old_key) == old_time:
                    del live[old_key]
            recorded = live.get(key)
            if recorded is not None and abs(time - recorded) <= window:
                out.append(True)
            else:
                live[key] = time
                order.append((time, key))
                out.append(False)
        return out


def test_dedup_cityhub(benchmark, dedup_stream):
    benchmark.group = "exact dedup: 1M keys, 10 % duplicates"
    keys, times = dedup_stream
    result = benchmark.pedantic(
        lambda d: d.check_many(keys, times), setup=lambda: ((Deduper(DAY_S, 1_000_000),), {}), rounds=5
    )
    benchmark.extra_info.update(items=EVENTS, role="cityhub", note=f"one check_many call; {sum(result):,} duplicates")


def test_dedup_cityhub_batches(benchmark, dedup_stream):
    benchmark.group = "exact dedup: 1M keys, 10 % duplicates"
    keys, times = dedup_stream

    def run(d: Deduper) -> None:
        for start in range(0, EVENTS, BATCH):
            d.check_many(keys[start : start + BATCH], times[start : start + BATCH])

    benchmark.pedantic(run, setup=lambda: ((Deduper(DAY_S, 1_000_000),), {}), rounds=5)
    benchmark.extra_info.update(items=EVENTS, role="cityhub", note=f"check_many in batches of {BATCH:,}")


def test_dedup_dict_deque(benchmark, dedup_stream):
    benchmark.group = "exact dedup: 1M keys, 10 % duplicates"
    keys, times = dedup_stream
    result = benchmark.pedantic(
        lambda d: d.check_many(keys, times), setup=lambda: ((DictDequeDeduper(DAY_S, 1_000_000),), {}), rounds=3
    )
    benchmark.extra_info.update(items=EVENTS, role="peer", note=f"dict + deque; {sum(result):,} duplicates")


CROSSING_EVENTS = 10_000


@pytest.mark.parametrize("batch", [1, 100, 10_000])
def test_dedup_crossing(benchmark, dedup_stream, batch):
    benchmark.group = "crossing into Rust: dedup, 10,000 keys by batch size"
    keys, times = dedup_stream[0][:CROSSING_EVENTS], dedup_stream[1][:CROSSING_EVENTS]
    chunks = [(keys[i : i + batch], times[i : i + batch]) for i in range(0, CROSSING_EVENTS, batch)]

    def run(d: Deduper) -> None:
        for chunk_keys, chunk_times in chunks:
            d.check_many(chunk_keys, chunk_times)

    benchmark.pedantic(run, setup=lambda: ((Deduper(DAY_S, 1_000_000),), {}), rounds=5)
    role = "cityhub" if batch == 10_000 else "sanity"
    benchmark.extra_info.update(items=CROSSING_EVENTS, role=role, note=f"batches of {batch:,}")


@pytest.mark.parametrize("batch", [1, 100, 10_000])
def test_merge_crossing(benchmark, day, batch):
    benchmark.group = "crossing into Rust: merging, 10,000 events by batch size"
    columns = [column[:CROSSING_EVENTS] for column in day]
    chunks = [[column[i : i + batch] for column in columns] for i in range(0, CROSSING_EVENTS, batch)]

    def run(m: IncidentMerger) -> None:
        for chunk in chunks:
            m.add_columns(*chunk)

    benchmark.pedantic(run, setup=lambda: ((IncidentMerger(POLICY),), {}), rounds=5)
    role = "cityhub" if batch == 10_000 else "sanity"
    benchmark.extra_info.update(items=CROSSING_EVENTS, role=role, note=f"add_columns in batches of {batch:,}")


@pytest.fixture(scope="module")
def busy_merger(day) -> IncidentMerger:
    """A merger two hours into the day (its open incidents are what a snapshot has to carry)."""
    ids, times, categories, lons, lats = day
    merger = IncidentMerger(POLICY)
    end = next(i for i, t in enumerate(times) if t > 7_200)
    for start in range(0, end, BATCH):
        merger.expire(times[start])
        merger.add_columns(
            ids[start : start + BATCH],
            times[start : start + BATCH],
            categories[start : start + BATCH],
            lons[start : start + BATCH],
            lats[start : start + BATCH],
        )
    return merger


@pytest.mark.parametrize("kind", ["delta", "full"])
def test_merger_snapshot_per_batch(benchmark, busy_merger, day, kind):
    benchmark.group = "merger snapshot after a 10,000-event batch"
    ids, times, categories, lons, lats = day
    start = next(i for i, t in enumerate(times) if t > 7_200)
    batch = [
        ids[start : start + BATCH],
        times[start : start + BATCH],
        categories[start : start + BATCH],
        lons[start : start + BATCH],
        lats[start : start + BATCH],
    ]
    take = busy_merger.snapshot_delta if kind == "delta" else busy_merger.snapshot
    rounds = iter(range(1_000))

    def fresh_batch() -> tuple[tuple, dict]:
        busy_merger.snapshot()
        prefix = f"{kind}{next(rounds)}-"
        return ([[prefix + x for x in batch[0]], *batch[1:]],), {}

    def run(columns: list) -> bytes:
        busy_merger.add_columns(*columns)
        return take()

    data = benchmark.pedantic(run, setup=fresh_batch, rounds=5)
    open_incidents = busy_merger.stats["open_incidents"]
    benchmark.extra_info.update(
        items=BATCH,
        role="cityhub" if kind == "delta" else "sanity",
        note=f"merge + {kind} snapshot: {len(data):,} bytes, {open_incidents:,} open incidents",
    )


@pytest.mark.parametrize("kind", ["delta", "full"])
def test_dedup_snapshot_per_batch(benchmark, dedup_stream, kind):
    benchmark.group = "dedup snapshot after a 10,000-key batch (1M live keys)"
    keys, times = dedup_stream
    deduper = Deduper(DAY_S, 1_000_000)
    deduper.check_many(keys, times)
    take = deduper.snapshot_delta if kind == "delta" else deduper.snapshot
    later = [DAY_S] * BATCH
    rounds = iter(range(1_000))

    def fresh_keys() -> tuple[tuple, dict]:
        deduper.snapshot()
        prefix = f"{kind}{next(rounds)}-"
        return ([f"{prefix}{i}" for i in range(BATCH)],), {}

    def run(fresh: list[str]) -> bytes:
        deduper.check_many(fresh, later)
        return take()

    data = benchmark.pedantic(run, setup=fresh_keys, rounds=3)
    benchmark.extra_info.update(
        items=BATCH,
        role="cityhub" if kind == "delta" else "sanity",
        note=f"check + {kind} snapshot: {len(data):,} bytes",
    )
