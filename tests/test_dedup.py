"""Exact dedup: the Rust Deduper against the OrderedDict reference, snapshots, and bad input."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import ConfigError, HubError, InvalidEventError, SnapshotError
from hub.incidents import Deduper, IncidentMerger, MergePolicy, idempotency_key
from tests.reference_incidents import ReferenceDeduper, reseal

KEYS = st.sampled_from([f"src\x1f{i}" for i in range(12)] + ["", "🚒", "煤气"])
TIMES = st.integers(min_value=0, max_value=40).map(float)
STREAMS = st.lists(st.tuples(KEYS, TIMES), max_size=80)
SETTINGS = st.tuples(st.sampled_from([0.0, 1.0, 5.0, 12.5, 1e9]), st.integers(min_value=1, max_value=8))


def run_in_batches(deduper: Deduper, stream: list[tuple[str, float]], batch: int) -> list[bool]:
    out: list[bool] = []
    for start in range(0, len(stream), batch):
        chunk = stream[start : start + batch]
        out += deduper.check_many([k for k, _ in chunk], [t for _, t in chunk])
    return out


@settings(max_examples=300, deadline=None)
@given(stream=STREAMS, config=SETTINGS, batch=st.integers(min_value=1, max_value=20))
def test_answers_and_counters_match_the_reference(stream, config, batch):
    window_s, max_keys = config
    reference = ReferenceDeduper(window_s, max_keys)
    expected = [reference.check(k, t) for k, t in stream]
    deduper = Deduper(window_s, max_keys)
    assert run_in_batches(deduper, stream, batch) == expected
    assert deduper.stats == reference.stats()


@settings(max_examples=150, deadline=None)
@given(stream=STREAMS, config=SETTINGS, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=4))
def test_snapshot_and_deltas_restore_the_same_future(stream, config, cuts):
    window_s, max_keys = config
    original = Deduper(window_s, max_keys)
    marks = sorted({min(c, len(stream)) for c in cuts} | {0})
    full = b""
    deltas: list[bytes] = []
    for i, (start, end) in enumerate(zip(marks, [*marks[1:], len(stream)], strict=True)):
        if i == 0:
            full = original.snapshot()
        else:
            deltas.append(original.snapshot_delta())
        run_in_batches(original, stream[start:end], 7)
        if end == len(stream):
            break
    deltas.append(original.snapshot_delta())
    restored = Deduper.restore(full, deltas)
    assert restored.stats == original.stats
    probe_keys = [k for k, _ in stream] + ["fresh"]
    probe_times = [40.0] * len(probe_keys)
    assert restored.check_many(probe_keys, probe_times) == original.check_many(probe_keys, probe_times)


def test_many_re_records_keep_answers_order_and_snapshots():
    """Keys re-recorded thousands of times while nothing expires (their old records pile up until the deduper
    compacts them), then enough new keys to evict them in record order."""
    rng = random.Random(5)
    stream = [("anchor", 40.0)]
    stream += [(f"k{rng.randrange(4)}", rng.choice([0.0, 40.0])) for _ in range(6_000)]
    stream += [(f"new{i}", 40.0) for i in range(8)] + [("k0", 0.0), ("k1", 40.0)]
    reference = ReferenceDeduper(5.0, 6)
    expected = [reference.check(k, t) for k, t in stream]
    deduper = Deduper(5.0, 6)
    full = deduper.snapshot()
    assert run_in_batches(deduper, stream[:3_000], 500) == expected[:3_000]
    delta = deduper.snapshot_delta()
    restored = Deduper.restore(full, [delta])
    for d in (deduper, restored):
        assert run_in_batches(d, stream[3_000:], 500) == expected[3_000:]
        assert d.stats == reference.stats()


def test_long_streams_with_expiry_and_eviction_match_the_reference():
    """Tens of thousands of keys through a short window and a small bound: the table grows, and forgotten
    records pile up at the front until the deduper moves the rest down (more than live + 1,024 of them)."""
    rng = random.Random(9)
    stream = [(f"k{rng.randrange(3_000)}", i / 10) for i in range(30_000)]
    for window_s, max_keys, batch in [(20.0, 10_000, 1_000), (1e9, 500, 777), (3.0, 2_000, 4_096)]:
        reference = ReferenceDeduper(window_s, max_keys)
        expected = [reference.check(k, t) for k, t in stream]
        deduper = Deduper(window_s, max_keys)
        assert run_in_batches(deduper, stream, batch) == expected
        assert deduper.stats == reference.stats()


def test_max_keys_is_at_most_2_to_the_30():
    assert Deduper(1.0, 2**30).max_keys == 2**30
    with pytest.raises(ConfigError, match="max_keys"):
        Deduper(1.0, 2**30 + 1)


def test_window_and_eviction_by_example():
    d = Deduper(window_s=60.0, max_keys=2)
    assert d.check_many(["a", "b", "a"], [0.0, 1.0, 30.0]) == [False, False, True]
    assert d.check("a", 61.0) is False, "recorded at 0: 61 s later it is outside the window"
    assert d.check_many([b"c", "b"], [62.0, 62.0]) == [False, False]
    assert d.stats == {"live_keys": 2, "evicted": 1, "expired": 2, "duplicates": 1}


def test_idempotency_key_uses_the_source_id_or_a_content_hash():
    assert idempotency_key("hotline", "WO-1") == "hotline\x1fWO-1"
    by_content = idempotency_key("iot", content=b'{"ppm": 5000}')
    assert by_content == idempotency_key("iot", content=b'{"ppm": 5000}') != idempotency_key("iot", content=b"{}")
    with pytest.raises(ValueError):
        idempotency_key("iot")


@pytest.mark.parametrize(
    ("window_s", "max_keys"),
    [(-1.0, 10), (math.nan, 10), (math.inf, 10), (1.0, 0), (1.0, -5), ("day", 10), (1.0, 2.5)],
)
def test_bad_settings_are_config_errors(window_s, max_keys):
    with pytest.raises(ConfigError) as info:
        Deduper(window_s, max_keys)
    assert "window_s" in str(info.value) or "max_keys" in str(info.value)


@pytest.mark.parametrize(
    ("keys", "times", "says"),
    [
        (["a"], [math.nan], "finite"),
        (["a", "b"], [1.0], "2 keys but 1 times"),
        ([1], [1.0], "str or bytes"),
        (["a"], ["noon"], "a number"),
        (["\udfff"], [1.0], "not valid Unicode"),
        (None, [1.0], "keys: expected a sequence"),
    ],
)
def test_bad_batches_raise_and_record_nothing(keys, times, says):
    d = Deduper(10.0, 10)
    with pytest.raises(InvalidEventError, match=says):
        d.check_many(keys, times)
    assert d.stats["live_keys"] == 0


def test_times_may_be_any_real_number_even_one_that_edits_the_batch():
    d = Deduper(10.0, 10)
    assert d.check_many(("a", "b", "a"), [1, 2.5, True]) == [False, False, True]

    class ClearsTheBatch:
        def __float__(self) -> float:
            times.clear()
            return 5.0

    times = [3.0, ClearsTheBatch(), 4.0]
    with pytest.raises(InvalidEventError, match="3 keys but 2 times"):
        d.check_many(["c", "d", "e"], times)
    assert d.stats["live_keys"] == 2


def test_garbage_snapshots_are_refused_clearly():
    d = Deduper(10.0, 10)
    d.check_many(["a"], [1.0])
    good = d.snapshot()
    merger_snapshot = IncidentMerger(MergePolicy()).snapshot()
    for data, says in [
        (b"", "header"),
        (b"\x00" * 100, "header"),
        (good[:-1], "checksum"),
        (good[:10] + bytes([good[10] ^ 1]) + good[11:], "checksum"),
        (merger_snapshot, "IncidentMerger snapshot"),
    ]:
        with pytest.raises(SnapshotError, match=says):
            Deduper.restore(data)
    delta = d.snapshot_delta()
    with pytest.raises(SnapshotError, match="delta"):
        Deduper.restore(delta)
    with pytest.raises(SnapshotError, match="follows generation"):
        Deduper.restore(good, [delta, delta])
    assert issubclass(SnapshotError, HubError) and issubclass(SnapshotError, ValueError)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_snapshots_are_refused_or_restore_a_usable_state(data):
    deduper = Deduper(10.0, 5)
    stream = data.draw(STREAMS.filter(bool))
    deduper.check_many([k for k, _ in stream], [t for _, t in stream])
    good = bytearray(deduper.snapshot())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        good[data.draw(st.integers(min_value=6, max_value=len(good) - 9))] = data.draw(st.integers(0, 255))
    try:
        restored = Deduper.restore(reseal(bytes(good)))
    except SnapshotError:
        return
    restored.check_many(["probe", "probe"], [50.0, 51.0])
