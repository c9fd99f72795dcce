"""Incident merging: the Rust merger against the brute-force reference on random streams, snapshots,
policy updates, expiry on a running watermark under any cut into batches, Chinese text repeats and bad input."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import ConfigError, InvalidEventError, SnapshotError
from hub.incidents import (
    CategoryPolicy,
    Deduper,
    ExpiredIncidents,
    ExpiringMerge,
    IncidentMerger,
    MergeBatch,
    MergeInput,
    MergePolicy,
    MergeResult,
)
from tests.reference_incidents import ReferenceMerger, reseal

BASE_LON, BASE_LAT = 104.0665, 30.5728  # Chengdu, Tianfu Square
METRE_LAT = 1 / 111_195.0

POLICY = MergePolicy(
    groups={"gas": ["gas_leak", "smell_gas"], "water": ["water_leak", "flooding"]},
    default=CategoryPolicy(distance_m=100, window_s=600),
    per_category={"gas_leak": CategoryPolicy(distance_m=200, window_s=1200), "noise": CategoryPolicy(50, 300)},
    text_similarity=0.7,
)
OTHER_POLICY = MergePolicy(
    groups={"gas": ["gas_leak", "smell_gas", "fire"]},
    default=CategoryPolicy(distance_m=150, window_s=900),
    text_similarity=0.5,
    incident_ttl_s=2000,
)

ADDRESSES = ["幸福小区3号楼2单元", "幸福小区 3号楼 2单元", "人民南路二段18号", "ＸＹＺ Plaza"]
TEXTS = [
    "幸福小区3号楼2单元楼道里有很浓的煤气味，请尽快派人处理",
    "幸福小区3号楼2单元楼道里有很浓的煤气味,请尽快派人来处理",
    "人民南路二段18号门口路灯不亮已经三天了",
    "门口路灯不亮",
    "水管爆裂，地下室进水",
]

CATEGORIES = st.sampled_from(["gas_leak", "smell_gas", "fire", "water_leak", "flooding", "noise"])
OFFSETS_M = st.integers(min_value=-300, max_value=300).map(float)


@st.composite
def events(draw, index: int) -> MergeInput:
    located = draw(st.booleans())
    east, north = draw(OFFSETS_M), draw(OFFSETS_M)
    lat = BASE_LAT + north * METRE_LAT
    lon = BASE_LON + east * METRE_LAT / math.cos(math.radians(BASE_LAT))
    with_text = draw(st.booleans())
    return MergeInput(
        event_id=draw(st.sampled_from([f"e{index}", "e0"])),
        time=float(draw(st.integers(min_value=0, max_value=3000))),
        category=draw(CATEGORIES),
        lon=lon if located else None,
        lat=lat if located else None,
        address=draw(st.sampled_from(ADDRESSES)) if with_text else None,
        text=draw(st.sampled_from(TEXTS)) if with_text else None,
    )


def columns(events: list[MergeInput]) -> list[list]:
    """The events as the columns add_columns takes (seven lists, empty ones for no events)."""
    return [[event[field] for event in events] for field in range(len(MergeInput._fields))]


@st.composite
def operations(draw) -> list[tuple]:
    """A random session: batches of events (merged with or without expiry on the running watermark),
    explicit closes, expiries and policy swaps."""
    ops: list[tuple] = []
    count = 0
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        kind = draw(st.sampled_from(["add", "add", "add_expiring", "add_expiring", "close", "expire", "policy"]))
        if kind in ("add", "add_expiring"):
            size = draw(st.integers(min_value=1, max_value=12))
            ops.append((kind, [draw(events(count + i)) for i in range(size)]))
            count += size
        elif kind == "close":
            ops.append(("close", f"inc-e{draw(st.integers(min_value=0, max_value=max(count, 1)))}"))
        elif kind == "expire":
            ops.append((draw(st.sampled_from(["expire", "expire_with_deadlines"])), float(draw(st.integers(0, 5000)))))
        else:
            ops.append(("policy", draw(st.sampled_from([POLICY, OTHER_POLICY]))))
    return ops


def apply(ops: list[tuple], merger: IncidentMerger, reference: ReferenceMerger) -> None:
    watermark = -math.inf
    for kind, arg in ops:
        if kind == "add":
            got = [(r.incident_id, r.is_new, r.report_count) for r in merger.add_many(arg)]
            assert got == [reference.add(e) for e in arg]
        elif kind == "add_expiring":
            merged = merger.add_columns_expiring(*columns(arg), watermark)
            results, closed, watermark = reference.add_expiring(arg, watermark)
            assert (
                list(zip(*merged.merge, strict=True)),
                list(zip(*merged.closed, strict=True)),
                merged.watermark,
            ) == (results, closed, watermark)
        elif kind == "close":
            assert merger.close(arg) == reference.close(arg)
        elif kind == "expire":
            assert merger.expire(arg) == reference.expire(arg)
        elif kind == "expire_with_deadlines":
            assert merger.expire_with_deadlines(arg) == reference.expire_with_deadlines(arg)
        else:
            merger.update_policy(arg)
            reference.update_policy(arg)


@settings(max_examples=250, deadline=None)
@given(ops=operations())
def test_same_answers_as_the_brute_force_reference(ops):
    merger, reference = IncidentMerger(POLICY), ReferenceMerger(POLICY)
    apply(ops, merger, reference)
    assert merger.stats["open_incidents"] == len(reference.open)


@settings(max_examples=100, deadline=None)
@given(ops=operations(), later=operations(), use_delta=st.booleans())
def test_restored_merger_continues_exactly_like_the_original(ops, later, use_delta):
    merger = IncidentMerger(POLICY)
    full = merger.snapshot()
    apply(ops, merger, ReferenceMerger(POLICY))
    if use_delta:
        restored = IncidentMerger.restore(full, merger.policy, [merger.snapshot_delta()])
    else:
        restored = IncidentMerger.restore(merger.snapshot(), merger.policy)
    assert restored.stats == merger.stats
    watermark = -math.inf
    for kind, arg in later:
        if kind == "add":
            assert restored.add_many(arg) == merger.add_many(arg)
        elif kind == "add_expiring":
            merged = merger.add_columns_expiring(*columns(arg), watermark)
            assert restored.add_columns_expiring(*columns(arg), watermark) == merged
            watermark = merged.watermark
        elif kind == "close":
            assert restored.close(arg) == merger.close(arg)
        elif kind in ("expire", "expire_with_deadlines"):
            assert getattr(restored, kind)(arg) == getattr(merger, kind)(arg)
        else:
            restored.update_policy(arg)
            merger.update_policy(arg)


def merge_in_batches(
    stream: list[MergeInput], cuts: list[int], restore_before: int | None = None, use_delta: bool = False
) -> tuple[list[tuple[str, bool, int]], list[tuple[int, str, float]], float]:
    """Merges the stream cut before each index in ``cuts``, threading the watermark from batch to batch and
    restoring from a snapshot (full, or full + delta) before batch number ``restore_before``. Per event
    (incident id, is new, report count); per close (index in the stream, incident id, closed at)."""
    merger, watermark = IncidentMerger(POLICY), -math.inf
    full = merger.snapshot()
    results: list[tuple[str, bool, int]] = []
    closed: list[tuple[int, str, float]] = []
    bounds = [0, *cuts, len(stream)]
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        if number == restore_before:
            deltas = [merger.snapshot_delta()] if use_delta else []
            merger = IncidentMerger.restore(full if use_delta else merger.snapshot(), POLICY, deltas)
        merged = merger.add_columns_expiring(*columns(stream[start:end]), watermark)
        results += zip(*merged.merge, strict=True)
        closed += [
            (start + position, incident_id, at) for position, incident_id, at in zip(*merged.closed, strict=True)
        ]
        watermark = merged.watermark
    return results, closed, watermark


@st.composite
def cut_streams(draw) -> tuple[list[MergeInput], list[int], int | None, bool]:
    """A stream of reports in no particular time order, where to cut it (empty batches too), and before
    which batch but the first, if any, to restore from a snapshot."""
    stream = [draw(events(i)) for i in range(draw(st.integers(min_value=1, max_value=40)))]
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=6)))
    restore_before = draw(st.sampled_from([None, *range(1, len(cuts) + 1)]))
    return stream, cuts, restore_before, draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(case=cut_streams())
def test_expiring_merge_gives_the_same_results_however_the_stream_is_cut(case):
    stream, cuts, restore_before, use_delta = case
    whole = merge_in_batches(stream, [])
    assert merge_in_batches(stream, cuts, restore_before, use_delta) == whole
    assert whole == ReferenceMerger(POLICY).add_expiring(stream, -math.inf)


def test_a_late_report_cannot_join_an_incident_a_newer_report_expired():
    """The late report arrives in the same batch as the newer one: it still finds the incident closed, as it
    would if the two had come in separate batches."""
    m = IncidentMerger(POLICY)
    first = m.add_columns_expiring(["a"], [0.0], ["fire"], [BASE_LON], [BASE_LAT], None, None, -math.inf)
    assert first == ExpiringMerge(MergeBatch(["inc-a"], [True], [1]), ExpiredIncidents([], [], []), 0.0)
    later = m.add_columns_expiring(
        ["n", "late"], [700.0, 500.0], ["noise", "fire"], [BASE_LON] * 2, [BASE_LAT] * 2, None, None, first.watermark
    )
    assert later.closed == ExpiredIncidents([0], ["inc-a"], [600.0]), "fire lives 600 s after its last report"
    assert later.merge.incident_ids == ["inc-n", "inc-late"] and later.watermark == 700.0
    assert m.expire_with_deadlines(1100.5) == [("inc-n", 1000.0), ("inc-late", 1100.0)]


@pytest.mark.parametrize("watermark", [math.nan, math.inf])
def test_a_watermark_that_is_no_time_is_refused_and_nothing_applied(watermark):
    m = IncidentMerger(POLICY)
    with pytest.raises(InvalidEventError, match="watermark"):
        m.add_columns_expiring(["a"], [0.0], ["fire"], None, None, None, None, watermark)
    with pytest.raises(InvalidEventError, match="column times has 1 items but event_ids has 2"):
        m.add_columns_expiring(["a", "b"], [0.0], ["fire", "fire"], None, None, None, None, 0.0)
    assert m.stats["events"] == 0


def test_gas_alarm_hotline_call_and_photo_are_one_incident():
    m = IncidentMerger(POLICY)
    results = m.add_many(
        [
            MergeInput("iot-1", 0.0, "gas_leak", BASE_LON, BASE_LAT),
            MergeInput("hotline-7", 120.0, "smell_gas", BASE_LON, BASE_LAT + 150 * METRE_LAT, "幸福小区3号楼"),
            MergeInput("photo-3", 300.0, "gas_leak", BASE_LON, BASE_LAT + 20 * METRE_LAT),
            MergeInput("noise-1", 310.0, "noise", BASE_LON, BASE_LAT),
        ]
    )
    assert results == [
        MergeResult("inc-iot-1", True, 1),
        MergeResult("inc-iot-1", False, 2),
        MergeResult("inc-iot-1", False, 3),
        MergeResult("inc-noise-1", True, 1),
    ]


def test_repeated_hotline_complaint_in_chinese_merges_by_address_and_text():
    m = IncidentMerger(POLICY)
    first, repeat, other = m.add_many(
        [
            MergeInput("wo-1", 0.0, "smell_gas", address=ADDRESSES[0], text=TEXTS[0]),
            MergeInput("wo-2", 400.0, "smell_gas", address=ADDRESSES[1], text=TEXTS[1]),
            MergeInput("wo-3", 500.0, "smell_gas", address=ADDRESSES[0], text=TEXTS[4]),
        ]
    )
    assert first.is_new and not repeat.is_new and repeat.incident_id == "inc-wo-1"
    assert other.is_new, "a different complaint at the same address is a different incident"


def test_closed_incidents_never_take_new_reports():
    m = IncidentMerger(POLICY)
    m.add(MergeInput("a", 0.0, "fire", BASE_LON, BASE_LAT))
    assert m.close("inc-a") and not m.close("inc-a")
    assert m.add(MergeInput("b", 1.0, "fire", BASE_LON, BASE_LAT)) == MergeResult("inc-b", True, 1)
    assert m.expire(1.0 + 600.0) == []
    assert m.expire(1.0 + 600.5) == ["inc-b"]
    assert m.add(MergeInput("c", 2.0, "fire", BASE_LON, BASE_LAT)).is_new
    assert m.stats == {"events": 3, "opened": 3, "merged": 0, "closed": 2, "open_incidents": 1}


def test_replaying_the_same_stream_gives_the_same_incidents():
    stream = [MergeInput(f"e{i}", float(i * 30), "fire", BASE_LON + (i % 3) * 1e-4, BASE_LAT) for i in range(50)]
    first, second = IncidentMerger(POLICY), IncidentMerger(POLICY)
    assert first.add_many(stream) == second.add_many(stream[:17]) + second.add_many(stream[17:])


def test_columns_and_rows_give_the_same_results():
    stream = [
        MergeInput(f"e{i}", float(i * 50), "gas_leak", BASE_LON, BASE_LAT + i * 10 * METRE_LAT) for i in range(30)
    ]
    rows = IncidentMerger(POLICY).add_many(stream)
    columns = IncidentMerger(POLICY).add_columns(*map(list, zip(*stream, strict=True)))
    assert isinstance(columns, MergeBatch)
    assert columns == MergeBatch(
        [r.incident_id for r in rows], [r.is_new for r in rows], [r.report_count for r in rows]
    )


def test_policy_update_keeps_open_incidents():
    m = IncidentMerger(POLICY)
    m.add(MergeInput("a", 0.0, "gas_leak", BASE_LON, BASE_LAT))
    assert m.add(MergeInput("b", 10.0, "fire", BASE_LON, BASE_LAT)).is_new
    m.update_policy(OTHER_POLICY)
    assert m.add(MergeInput("c", 20.0, "fire", BASE_LON, BASE_LAT)) == MergeResult("inc-a", False, 2)
    assert m.stats["open_incidents"] == 2 and m.policy is OTHER_POLICY


@pytest.mark.parametrize(
    ("event", "says"),
    [
        (MergeInput("a", 0.0, "fire", math.nan, 30.0), "location"),
        (MergeInput("a", 0.0, "fire", 104.0, 91.0), "location"),
        (MergeInput("a", 0.0, "fire", 181.0, 30.0), "location"),
        (MergeInput("a", 0.0, "fire", 104.0, None), "both"),
        (MergeInput("a", math.inf, "fire"), "finite"),
        (MergeInput("", 0.0, "fire"), "event_id is empty"),
        (MergeInput("a", 0.0, ""), "category is empty"),
        (MergeInput("a", "noon", "fire"), "time: expected a number"),  # type: ignore[arg-type]
        (MergeInput("a", 0.0, 7), "category: expected str"),  # type: ignore[arg-type]
        (("a", 0.0), "3 to 7 fields"),
        ("not a row", "expected a MergeInput"),
    ],
)
def test_bad_events_raise_naming_the_event_and_apply_nothing(event, says):
    m = IncidentMerger(POLICY)
    with pytest.raises(InvalidEventError, match=says) as info:
        m.add_many([MergeInput("ok", 0.0, "fire"), event])
    assert "event 1" in str(info.value)
    assert m.stats["events"] == 0


def test_bad_columns_and_times_raise():
    m = IncidentMerger(POLICY)
    with pytest.raises(InvalidEventError, match="column times has 1 items but event_ids has 2"):
        m.add_columns(["a", "b"], [0.0], ["fire", "fire"])
    with pytest.raises(InvalidEventError, match="now"):
        m.expire(math.nan)
    with pytest.raises(InvalidEventError, match="events: expected a sequence, got NoneType"):
        m.add_many(None)
    with pytest.raises(InvalidEventError, match="event_id: not valid Unicode"):
        m.add(MergeInput("\ud800", 0.0, "fire"))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"default": CategoryPolicy(distance_m=-1)}, "default.distance_m"),
        ({"default": CategoryPolicy(window_s=math.nan)}, "default.window_s"),
        ({"per_category": {"fire": CategoryPolicy(window_s=-5)}}, 'per_category\\["fire"\\].window_s'),
        ({"groups": {"a": ["fire"], "b": ["fire"]}}, "already in another group"),
        ({"text_similarity": 1.5}, "text_similarity"),
        ({"incident_ttl_s": 0.0}, "incident_ttl_s"),
        ({"groups": {"gas": "gas_leak"}}, "expected a list of categories"),
        ({"per_category": {"fire": 100}}, "expected a CategoryPolicy"),
        ({"default": CategoryPolicy(distance_m="far")}, "wrong type"),
    ],
)
def test_bad_policies_are_config_errors(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        MergePolicy(**kwargs)


def test_garbage_snapshots_are_refused_clearly():
    m = IncidentMerger(POLICY)
    m.add(MergeInput("a", 0.0, "fire", BASE_LON, BASE_LAT))
    good = m.snapshot()
    for data, says in [
        (b"not a snapshot", "header"),
        (good[:-3], "checksum"),
        (Deduper(1.0, 1).snapshot(), "Deduper snapshot"),
        (m.snapshot_delta(), "delta"),
    ]:
        with pytest.raises(SnapshotError, match=says):
            IncidentMerger.restore(data, POLICY)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_snapshots_are_refused_or_restore_a_usable_state(data):
    merger = IncidentMerger(POLICY)
    merger.add_many(data.draw(st.lists(events(0), min_size=1, max_size=6)))
    good = bytearray(merger.snapshot())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        good[data.draw(st.integers(min_value=6, max_value=len(good) - 9))] = data.draw(st.integers(0, 255))
    try:
        restored = IncidentMerger.restore(reseal(bytes(good)), POLICY)
    except SnapshotError:
        return
    probe = restored.add(MergeInput("probe", 0.0, "fire", BASE_LON, BASE_LAT))
    assert probe.incident_id and probe.report_count >= 1
    restored.expire(1e12)


def test_columns_read_any_str_and_number_like_rows_do():
    """add_columns reads list items in place: non-ASCII and long ids, str subclasses, ints for floats, and
    columns that are tuples give the same answers as add_many."""

    class Tag(str):
        pass

    ids = ["évt-1", "事件-2", "e" * 40, Tag("e4"), "évt-1"]
    times = [0, 1.5, 2, 3.0, 4]
    categories = ["fire", Tag("fire"), "noise", "fire", "fire"]
    lons = [BASE_LON, BASE_LON + 0.1, None, 104, BASE_LON]
    lats = [BASE_LAT, BASE_LAT, None, 30, BASE_LAT]
    by_rows = IncidentMerger(POLICY).add_many(
        [MergeInput(*row) for row in zip(ids, times, categories, lons, lats, strict=True)]
    )
    merger = IncidentMerger(POLICY)
    batch = merger.add_columns(ids, tuple(times), categories, lons, lats)
    assert [MergeResult(*row) for row in zip(*batch, strict=True)] == by_rows
    assert batch.incident_ids[:3] == ["inc-évt-1", "inc-事件-2", "inc-" + "e" * 40]
    assert sorted(merger.expire(1e9)) == sorted(set(batch.incident_ids))
