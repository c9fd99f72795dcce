"""hub.rules: the Python API over the compiled rule set — actions as data, priorities, first-match,
missing fields, local time, grid globs, bad rules, wrong-shape events and atomic swapping."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from hub.errors import InvalidEventError, RuleError
from hub.models import Category, Event, Location
from hub.rules import Rule, RuleMatch, RuleSet, jsonlogic_apply

GAS_NIGHT = Rule(
    id="gas-night",
    priority=10,
    when='category == "gas_leak" && payload.ppm >= 5000 && hour(time) >= 22',
    actions={
        "severity": "critical",
        "route": ["dept:fire", "level:grid", "five_way"],
        "tags": ["gas"],
        "escalate_after_s": 600,
    },
)
GAS_ANY = Rule(
    id="gas-any",
    priority=5,
    jsonlogic={"==": [{"var": "category"}, "gas_leak"]},
    actions={"severity": "high", "route": ["gridworker"]},
)
CHENGHUA = Rule(id="chenghua", priority=1, when='in_grid("成华区/*")', actions={"tags": ["chenghua"]})


def pipeline_event(**changes) -> dict:
    """A canonical event as the pipeline hands it to the rules: model_dump(mode="json") plus grid paths."""
    event = Event(
        source="iot_gas",
        source_event_id="a-1",
        category=Category.GAS_LEAK,
        time=datetime(2026, 5, 1, 23, 10, tzinfo=ZoneInfo("Asia/Shanghai")),
        location=Location(lon=104.1, lat=30.67),
        payload={"ppm": 6200},
    ).model_dump(mode="json")
    event.update(grid="成都市/成华区/府青路街道/社区A/网格3", grid_ids="510100/510108/51010801/5101080101/g3")
    event.update(changes)
    return event


@pytest.fixture
def rule_set() -> RuleSet:
    return RuleSet.compile([CHENGHUA, GAS_ANY, GAS_NIGHT], timezone="Asia/Shanghai")


def ids(matches: list[RuleMatch]) -> list[str]:
    return [m.rule_id for m in matches]


def test_all_matches_in_priority_order_with_actions_as_data(rule_set: RuleSet) -> None:
    matches = rule_set.match(pipeline_event())
    assert ids(matches) == ["gas-night", "gas-any", "chenghua"]
    assert matches[0] == RuleMatch("gas-night", 10, GAS_NIGHT.actions)
    assert matches[0].actions["route"] == ["dept:fire", "level:grid", "five_way"]


def test_first_only_returns_the_highest_priority_match(rule_set: RuleSet) -> None:
    assert ids(rule_set.match(pipeline_event(), first_only=True)) == ["gas-night"]


def test_time_of_day_is_read_in_the_configured_timezone() -> None:
    night = [Rule(id="night", when="hour(time) >= 22 || hour(time) < 6")]
    event = pipeline_event(time="2026-05-01T15:30:00Z")  # 23:30 in Shanghai, 15:30 in London (BST 16:30)
    assert ids(RuleSet.compile(night, timezone="Asia/Shanghai").match(event)) == ["night"]
    assert RuleSet.compile(night, timezone="Europe/London").match(event) == []
    window = [Rule(id="w", when='time_between(time, "22:00", "06:00") && weekday(time) == 6')]
    assert ids(RuleSet.compile(window).match(pipeline_event(time="2026-05-02T01:00:00+08:00"))) == ["w"]


def test_in_grid_matches_names_or_ids(rule_set: RuleSet) -> None:
    by_id = RuleSet.compile([Rule(id="g3", when='in_grid("510108/*/*/g3")')])
    assert ids(by_id.match(pipeline_event())) == ["g3"]
    assert "chenghua" not in ids(rule_set.match(pipeline_event(grid="成都市/金牛区/x", grid_ids="1/2/3")))


def test_missing_field_does_not_match_and_is_counted(rule_set: RuleSet) -> None:
    assert ids(rule_set.match(pipeline_event(payload={}))) == ["gas-any", "chenghua"]
    without_grid = {k: v for k, v in pipeline_event().items() if k not in ("grid", "grid_ids")}
    assert ids(rule_set.match(without_grid)) == ["gas-night", "gas-any"]
    stats = rule_set.stats
    assert stats["events"] == 2
    assert stats["rules"]["gas-night"] == {"matches": 1, "missing": 1}
    assert stats["rules"]["chenghua"] == {"matches": 1, "missing": 1}


def test_kleene_logic_lets_a_present_field_decide() -> None:
    rules = RuleSet.compile(
        [
            Rule(id="either", when='payload.ppm > 100 || payload.alarm == "high"'),
            Rule(id="negated", when="!(payload.ppm > 100)"),
            Rule(id="guarded", when="!has(payload.ppm) || payload.ppm < 10"),
        ]
    )
    assert ids(rules.match({"payload": {"alarm": "high"}})) == ["either", "guarded"]
    assert rules.stats["rules"]["negated"] == {"matches": 0, "missing": 1}


def test_match_many_equals_match_per_event(rule_set: RuleSet) -> None:
    batch = [pipeline_event(), pipeline_event(category="fire"), pipeline_event(time="2026-05-01T12:00:00+08:00")]
    as_bytes = [orjson.dumps(e) for e in batch]
    assert rule_set.match_many(as_bytes) == [rule_set.match(e) for e in batch]
    assert rule_set.match_many([]) == []


@pytest.mark.parametrize("first_only", [False, True])
def test_parallel_and_columnar_batches_agree_with_match_many(rule_set: RuleSet, first_only: bool) -> None:
    shapes = [pipeline_event(), pipeline_event(category="fire"), pipeline_event(time="2026-05-01T12:00:00+08:00"), {}]
    batch = [orjson.dumps(shapes[i % len(shapes)]) for i in range(9_000)]
    expected = rule_set.match_many(batch, first_only)
    assert rule_set.match_many(batch, first_only, parallel=True) == expected
    found = rule_set.match_indices(batch, first_only, parallel=True)
    positions = [[rule_set.rules[p].id for p in found.event(i)] for i in range(len(found))]
    assert positions == [ids(matches) for matches in expected]
    assert len(rule_set.match_indices([])) == 0


def test_parallel_batches_name_the_first_event_that_is_not_json(rule_set: RuleSet) -> None:
    batch = [b"{}"] * 9_000
    batch[7_000], batch[8_000] = b"{", b"["
    with pytest.raises(InvalidEventError, match="event 7000 is not valid JSON"):
        rule_set.match_many(batch, parallel=True)
    with pytest.raises(InvalidEventError, match="event 7000 is not valid JSON"):
        rule_set.match_indices(batch)


def test_every_bad_rule_is_reported_with_id_position_and_reason() -> None:
    bad = [
        GAS_NIGHT,
        Rule(id="syntax", when='category == "fire" &&\n  payload.ppm >'),
        Rule(id="unknown-fn", when="frobnicate(time) > 1"),
        Rule(id="jsonlogic-op", jsonlogic={"and": [{"==": [1, 1]}, {"frob": [1]}]}),
        Rule(id="jsonlogic-text", jsonlogic='{"==": [1, }'),
        Rule(
            id="actions",
            when="true",
            actions={"severity": "apocalyptic", "route": ["dept:fire", "level:moon"], "colour": "red"},
        ),
        Rule(id="both", when="true", jsonlogic=True),
        Rule(id="syntax", when="true"),
    ]
    with pytest.raises(RuleError) as caught:
        RuleSet.compile(bad)
    problems = caught.value.problems
    where = {(rule_id, position) for rule_id, position, _ in problems}
    assert ("syntax", "line 2, column 16") in where
    assert ("unknown-fn", "line 1, column 1") in where
    assert ("jsonlogic-op", "JsonLogic /and/1/frob") in where
    assert ("jsonlogic-text", "line 1, column 12") in where
    assert {p for r, p, _ in problems if r == "actions"} == {"actions.severity", "actions.route", "actions.colour"}
    assert ("both", "rule") in where
    assert any(reason == "duplicate rule id" for _, _, reason in problems)
    assert "gas-night" not in {rule_id for rule_id, _, _ in problems}
    assert "frobnicate" in str(caught.value) and isinstance(caught.value, ValueError)


def test_config_entries_that_are_not_rules_are_reported_with_the_rest() -> None:
    config = [
        {"id": "typo", "whn": "true"},
        {"priority": 1, "when": "true"},
        {"id": "ok", "when": "true"},
        {"id": "bad", "when": "(("},
    ]
    with pytest.raises(RuleError) as caught:
        RuleSet.compile(config)
    where = {(rule_id, position) for rule_id, position, _ in caught.value.problems}
    assert {("typo", "whn"), ("#1", "id"), ("bad", "line 1, column 3")} <= where
    assert "ok" not in {rule_id for rule_id, _, _ in caught.value.problems}


def test_events_may_be_bytes_bytearray_str_or_dict(rule_set: RuleSet) -> None:
    event = pipeline_event()
    forms = [orjson.dumps(event), bytearray(orjson.dumps(event)), orjson.dumps(event).decode(), event]
    assert all(ids(rule_set.match(form)) == ["gas-night", "gas-any", "chenghua"] for form in forms)
    assert len({tuple(ids(m)) for m in rule_set.match_many(forms)}) == 1


def test_unknown_timezone_is_a_rule_error() -> None:
    with pytest.raises(RuleError, match="Mars/Olympus"):
        RuleSet.compile([GAS_ANY], timezone="Mars/Olympus")


@pytest.mark.parametrize(
    "event",
    [
        b"[]",
        b"42",
        b'"text"',
        b"null",
        b'{"category": 7, "payload": "flat"}',
        b'{"payload": {"ppm": "lots"}, "time": "yesterday"}',
    ],
)
def test_events_of_the_wrong_shape_match_nothing(rule_set: RuleSet, event: bytes) -> None:
    assert rule_set.match(event) == []


@pytest.mark.parametrize("event", [b"", b"{", b'{"category": "fire"} trailing', b"\xff\xfe"])
def test_bytes_that_are_not_json_raise_invalid_event_naming_the_batch_index(rule_set: RuleSet, event: bytes) -> None:
    with pytest.raises(InvalidEventError, match="event 1 is not valid JSON"):
        rule_set.match_many([b"{}", event])


def test_rules_load_from_config_dicts() -> None:
    config = [
        {
            "id": "flood",
            "priority": 3,
            "when": 'category == "flooding"',
            "actions": {"severity": "high", "route": ["five_way:police", "five_way:street"]},
        }
    ]
    assert ids(RuleSet.compile(config).match({"category": "flooding"})) == ["flood"]


def test_jsonlogic_apply_is_plain_jsonlogic() -> None:
    assert jsonlogic_apply({"missing": ["a", "b"]}, {"a": 1}) == ["b"]
    assert jsonlogic_apply({"in_grid": "成华区"}, {"grid": "成都市/成华区/x"}) is True
