"""Rule matching: 1,000 rules, events per second, beside the rule engines a Python user would install
(datalogic-py — JsonLogic in Rust —, durable_rules, rule-engine, panzi-json-logic) and a hand-indexed
pure-Python matcher as a sanity line; plus the cost of crossing into Rust at batch sizes 1, 100, 10,000.

Every engine gets the same 1,000 rules (``category == C && payload.level >= T && payload.zone == Z``)
and the same realistic canonical events. CityHub and datalogic-py start from the event's JSON bytes;
the pure-Python engines get the events already parsed (a head start the note records)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from benchmarks.report import label
from hub.models import Category, Event, Location
from hub.rules import Rule, RuleSet

RULE_COUNT = 1_000
EVENT_COUNT = 10_000
CATEGORIES = [c.value for c in Category]
ZONES = [f"z{i}" for i in range(10)]


def rule_parts(index: int) -> tuple[str, int, str]:
    """Rule ``index`` requires (category, minimum level, zone)."""
    return CATEGORIES[index % len(CATEGORIES)], (index * 37) % 100, ZONES[(index // len(CATEGORIES)) % len(ZONES)]


@cache
def events() -> tuple[list[bytes], list[dict[str, Any]]]:
    """Canonical events as the pipeline passes them (model_dump(mode="json") plus grid paths)."""
    rng = random.Random(7)
    start = datetime(2026, 5, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    dicts = []
    for n in range(EVENT_COUNT):
        event = Event(
            id=f"01J{n:020d}",
            source="iot_alarm",
            source_event_id=f"dev-{n}",
            category=rng.choice(CATEGORIES),
            time=start + timedelta(seconds=8 * n),
            location=Location(lon=104.0 + rng.random() / 10, lat=30.6 + rng.random() / 10, crs="gcj02"),
            address="成都市成华区府青路二段2号",
            text="燃气浓度超标，请尽快处理",
            payload={"level": rng.randrange(100), "zone": rng.choice(ZONES), "ppm": rng.randrange(20_000)},
            device_id=f"dev-{n % 500}",
        ).model_dump(mode="json")
        event["grid"] = "成都市/成华区/府青路街道/社区A/网格3"
        event["grid_ids"] = "510100/510108/51010801/5101080101/g3"
        dicts.append(event)
    return [orjson.dumps(e) for e in dicts], dicts


@cache
def cityhub_rules() -> RuleSet:
    rules = [
        Rule(
            id=f"r{i}",
            priority=i % 7,
            when=f'category == "{c}" && payload.level >= {t} && payload.zone == "{z}"',
            actions={"severity": "high", "route": ["gridworker"]},
        )
        for i, (c, t, z) in ((i, rule_parts(i)) for i in range(RULE_COUNT))
    ]
    return RuleSet.compile(rules, timezone="Asia/Shanghai")


def jsonlogic_rule(index: int) -> dict[str, Any]:
    c, t, z = rule_parts(index)
    return {
        "and": [
            {"==": [{"var": "category"}, c]},
            {">=": [{"var": "payload.level"}, t]},
            {"==": [{"var": "payload.zone"}, z]},
        ]
    }


def reference_matches(event: dict[str, Any]) -> int:
    """How many rules an event matches (for the correctness column)."""
    payload = event["payload"]
    return sum(
        1
        for i in range(RULE_COUNT)
        if (parts := rule_parts(i))[0] == event["category"]
        and payload["level"] >= parts[1]
        and payload["zone"] == parts[2]
    )


@cache
def expected_total(count: int) -> int:
    return sum(reference_matches(e) for e in events()[1][:count])


ALL_MATCHES = "rules: 1,000 rules, every matching rule per event (events/s)"
FIRST_MATCH = "rules: 1,000 rules, first matching rule per event (events/s)"
CROSSING = "rules: cost of crossing into Rust by batch size (10,000 events)"


def test_cityhub_all_matches(benchmark) -> None:
    payloads, _ = events()
    rule_set = cityhub_rules()
    label(benchmark, ALL_MATCHES, "cityhub", EVENT_COUNT, "match_many on JSON bytes, one batch of 10,000, one thread")
    result = benchmark(rule_set.match_many, payloads)
    assert sum(map(len, result)) == expected_total(EVENT_COUNT)


def test_cityhub_all_matches_columnar(benchmark) -> None:
    payloads, _ = events()
    rule_set = cityhub_rules()
    label(
        benchmark,
        ALL_MATCHES,
        "cityhub",
        EVENT_COUNT,
        "match_indices on JSON bytes: flat buffers of rule positions, no list per event",
    )
    result = benchmark(rule_set.match_indices, payloads)
    assert len(result.rule_indices) == expected_total(EVENT_COUNT)


def test_datalogic_py_all_rules_per_event(benchmark) -> None:
    datalogic = pytest.importorskip("datalogic_py")
    engine = datalogic.Engine()
    compiled = [engine.compile(orjson.dumps(jsonlogic_rule(i)).decode()) for i in range(RULE_COUNT)]
    session = engine.session()
    count = 1_000
    texts = [p.decode() for p in events()[0][:count]]

    def run() -> int:
        return sum(
            result == "true" for text in texts for result in session.evaluate_many(compiled, datalogic.DataHandle(text))
        )

    label(
        benchmark,
        ALL_MATCHES,
        "peer",
        count,
        "datalogic-py 5.9: DataHandle + Session.evaluate_many (1,000 rules, one call per event)",
    )
    assert benchmark.pedantic(run, rounds=3, iterations=1) == expected_total(count)


def test_rule_engine_all_rules_per_event(benchmark) -> None:
    rule_engine = pytest.importorskip("rule_engine")
    rules = []
    for i in range(RULE_COUNT):
        c, t, z = rule_parts(i)
        rules.append(rule_engine.Rule(f"category == '{c}' and payload['level'] >= {t} and payload['zone'] == '{z}'"))
    count = 50
    batch = events()[1][:count]
    label(benchmark, ALL_MATCHES, "peer", count, "rule-engine 5.1, every rule per event; events given parsed")
    total = benchmark.pedantic(lambda: sum(r.matches(e) for e in batch for r in rules), rounds=3, iterations=1)
    assert total == expected_total(count)


def test_panzi_json_logic_all_rules_per_event(benchmark) -> None:
    json_logic = pytest.importorskip("json_logic")
    rules = [jsonlogic_rule(i) for i in range(RULE_COUNT)]
    count = 50
    batch = events()[1][:count]
    label(
        benchmark,
        ALL_MATCHES,
        "peer",
        count,
        "panzi-json-logic 1.0 (pure Python), every rule per event; events given parsed",
    )
    total = benchmark.pedantic(
        lambda: sum(bool(json_logic.jsonLogic(r, e)) for e in batch for r in rules), rounds=3, iterations=1
    )
    assert total == expected_total(count)


class HandIndexed:
    """What a careful Python programmer writes: rules grouped by category, then checked in order."""

    def __init__(self) -> None:
        self.by_category: dict[str, list[tuple[int, str, int]]] = {}
        order = sorted(range(RULE_COUNT), key=lambda i: (-(i % 7), i))
        for i in order:
            c, t, z = rule_parts(i)
            self.by_category.setdefault(c, []).append((t, z, i))

    def match(self, raw: bytes, first_only: bool) -> list[int]:
        event = orjson.loads(raw)
        payload = event.get("payload") or {}
        level, zone = payload.get("level"), payload.get("zone")
        matched = []
        for t, z, i in self.by_category.get(event.get("category"), ()):
            if level is not None and level >= t and zone == z:
                matched.append(i)
                if first_only:
                    break
        return matched


def test_hand_indexed_python_all_matches(benchmark) -> None:
    payloads, _ = events()
    matcher = HandIndexed()
    label(
        benchmark,
        ALL_MATCHES,
        "sanity",
        EVENT_COUNT,
        "pure Python, rules indexed by category by hand, orjson.loads per event",
    )
    result = benchmark(lambda: [matcher.match(p, False) for p in payloads])
    assert sum(map(len, result)) == expected_total(EVENT_COUNT)


def test_cityhub_first_match(benchmark) -> None:
    payloads, _ = events()
    rule_set = cityhub_rules()
    label(benchmark, FIRST_MATCH, "cityhub", EVENT_COUNT, "match_many(first_only=True) on JSON bytes, one batch")
    result = benchmark(rule_set.match_many, payloads, first_only=True)
    assert sum(map(len, result)) == sum(1 for e in events()[1] if reference_matches(e))


def test_durable_rules_first_match(benchmark) -> None:
    durable = pytest.importorskip("durable.lang")
    from durable.engine import MessageNotHandledException

    fired: list[int] = []

    def action(index: int):
        def fire(_context) -> None:
            fired.append(index)

        fire.__name__ = f"r{index}"
        return fire

    with durable.ruleset("cityhub_bench"):
        for i in range(RULE_COUNT):
            c, t, z = rule_parts(i)
            m = durable.m
            durable.when_all((m.category == c) & (m.level >= t) & (m.zone == z))(action(i))
    count = 1_000
    facts = [{"category": e["category"], **e["payload"]} for e in events()[1][:count]]
    serial = iter(range(10**9))

    def run() -> None:
        for fact in facts:
            try:
                durable.post("cityhub_bench", {"id": next(serial), **fact})
            except MessageNotHandledException:
                pass

    label(
        benchmark,
        FIRST_MATCH,
        "peer",
        count,
        "durable_rules 2.0 (Rete, C core): an event is consumed by one rule; events given parsed and flattened",
    )
    fired.clear()
    benchmark.pedantic(run, rounds=3, iterations=1)
    assert len(fired) == 3 * sum(1 for e in events()[1][:count] if reference_matches(e))


def test_hand_indexed_python_first_match(benchmark) -> None:
    payloads, _ = events()
    matcher = HandIndexed()
    label(benchmark, FIRST_MATCH, "sanity", EVENT_COUNT, "pure Python, hand-indexed by category")
    benchmark(lambda: [matcher.match(p, True) for p in payloads])


@pytest.mark.parametrize(("batch_size", "parallel"), [(1, False), (100, False), (10_000, False), (10_000, True)])
def test_cityhub_crossing_cost(benchmark, batch_size: int, parallel: bool) -> None:
    payloads, _ = events()
    rule_set = cityhub_rules()
    chunks = [payloads[i : i + batch_size] for i in range(0, EVENT_COUNT, batch_size)]
    notes = {
        (1, False): "match() per event",
        (100, False): "match_many, batches of 100",
        (10_000, False): "match_many, one batch",
        (10_000, True): "match_many(parallel=True), one batch split across cores (slower when cores are busy)",
    }
    label(benchmark, CROSSING, "cityhub", EVENT_COUNT, notes[batch_size, parallel])
    if batch_size == 1:
        benchmark(lambda: [rule_set.match(p) for p in payloads])
    else:
        benchmark(lambda: [rule_set.match_many(chunk, parallel=parallel) for chunk in chunks])
