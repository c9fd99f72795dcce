"""Property tests: the indexed Rust matcher against a naive evaluate-every-rule Python reference, the
expression language against Python's own evaluation, and fuzzing of both rule parsers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from hub.errors import InvalidEventError, RuleError
from hub.rules import RuleSet, jsonlogic_apply

TIMEZONE = "Asia/Shanghai"
CATEGORIES = ["gas_leak", "fire", "noise", "flooding"]
NUMERIC_FIELDS = ["ppm", "level"]
KINDS = ["a", "b", "c"]
GRID_NAMES = ["成都市/成华区/府青路街道/社区A/网格3", "成都市/成华区/猛追湾街道/社区B/网格1", "成都市/金牛区/x/y/z"]
GRID_PATTERNS = ["成华区/*", "成华区", "社区?", "*街道/社区A", "网格*", "金牛区/x/y", "成都市/*/x"]
UNKNOWN = "unknown"  # the reference's third truth value
COMPARISONS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
JSONLOGIC_COMPARISONS = {"==": "===", "!=": "!=="}

settings.register_profile("rules", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rules")

# --- a small condition language with a Python reference evaluator ------------------------------------


@dataclass(frozen=True)
class Condition:
    """A generated condition: its expression text, its JsonLogic and a reference evaluator."""

    text: str
    logic: Any
    kind: str
    parts: tuple[Any, ...]

    def evaluate(self, event: dict[str, Any]) -> bool | str:
        return _evaluate(self, event)


def _field(event: dict[str, Any], path: list[str]) -> Any:
    value: Any = event
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return UNKNOWN
        value = value[key]
    return value


def _in_grid(pattern: str, path: str) -> bool:
    wanted, segments = pattern.split("/"), path.split("/")
    return any(
        all(fnmatchcase(segments[start + k], wanted[k]) for k in range(len(wanted)))
        for start in range(len(segments) - len(wanted) + 1)
    )


def _evaluate(condition: Condition, event: dict[str, Any]) -> bool | str:
    kind, parts = condition.kind, condition.parts
    if kind == "category":
        category = _field(event, ["category"])
        return UNKNOWN if category is UNKNOWN else category == parts[0]
    if kind == "compare":
        field, op, number = parts
        value = _field(event, ["payload", field])
        return UNKNOWN if value is UNKNOWN else COMPARISONS[op](value, number)
    if kind == "kind":
        value = _field(event, ["payload", "kind"])
        return UNKNOWN if value is UNKNOWN else value in parts[0]
    if kind == "has":
        return _field(event, ["payload", parts[0]]) is not UNKNOWN
    if kind == "in_grid":
        paths = [event[key] for key in ("grid", "grid_ids") if key in event]
        return UNKNOWN if not paths else any(_in_grid(parts[0], path) for path in paths)
    if kind == "hour":
        op, hour = parts
        if "time" not in event:
            return UNKNOWN
        local_hour = datetime.fromisoformat(event["time"]).astimezone(ZoneInfo(TIMEZONE)).hour
        return COMPARISONS[op](local_hour, hour)
    if kind == "not":
        inner = parts[0].evaluate(event)
        return inner if inner is UNKNOWN else not inner
    values = [part.evaluate(event) for part in parts]
    decisive = kind == "or"
    if decisive in values:
        return decisive
    return UNKNOWN if UNKNOWN in values else not decisive


def _leaf(kind: str, parts: tuple[Any, ...]) -> Condition:
    if kind == "category":
        return Condition(f'category == "{parts[0]}"', {"===": [{"var": "category"}, parts[0]]}, kind, parts)
    if kind == "compare":
        field, op, number = parts
        logic_op = JSONLOGIC_COMPARISONS.get(op, op)
        return Condition(
            f"payload.{field} {op} {number}", {logic_op: [{"var": f"payload.{field}"}, number]}, kind, parts
        )
    if kind == "kind":
        kinds = parts[0]
        if len(kinds) == 1:
            return Condition(f'payload.kind == "{kinds[0]}"', {"===": [{"var": "payload.kind"}, kinds[0]]}, kind, parts)
        listed = ", ".join(f'"{k}"' for k in kinds)
        return Condition(f"payload.kind in [{listed}]", {"in": [{"var": "payload.kind"}, list(kinds)]}, kind, parts)
    if kind == "has":
        return Condition(f"has(payload.{parts[0]})", {"has": f"payload.{parts[0]}"}, kind, parts)
    if kind == "in_grid":
        return Condition(f'in_grid("{parts[0]}")', {"in_grid": parts[0]}, kind, parts)
    op, hour = parts
    return Condition(
        f"hour(time) {op} {hour}", {JSONLOGIC_COMPARISONS.get(op, op): [{"hour": {"var": "time"}}, hour]}, kind, parts
    )


leaves = st.one_of(
    st.sampled_from(CATEGORIES).map(lambda c: _leaf("category", (c,))),
    st.tuples(st.sampled_from(NUMERIC_FIELDS), st.sampled_from(list(COMPARISONS)), st.integers(-5, 105)).map(
        lambda p: _leaf("compare", p)
    ),
    st.sampled_from(NUMERIC_FIELDS).map(lambda f: _leaf("has", (f,))),
    st.lists(st.sampled_from(KINDS), min_size=1, max_size=2, unique=True).map(lambda k: _leaf("kind", (tuple(k),))),
    st.sampled_from(GRID_PATTERNS).map(lambda p: _leaf("in_grid", (p,))),
    st.tuples(st.sampled_from(list(COMPARISONS)), st.integers(0, 23)).map(lambda p: _leaf("hour", p)),
)


def _combine(children: st.SearchStrategy[Condition]) -> st.SearchStrategy[Condition]:
    def joined(kind: str, parts: list[Condition]) -> Condition:
        symbol = " && " if kind == "and" else " || "
        text = symbol.join(f"({part.text})" for part in parts)
        return Condition(text, {kind: [part.logic for part in parts]}, kind, tuple(parts))

    return st.one_of(
        children.map(lambda c: Condition(f"!({c.text})", {"!": [c.logic]}, "not", (c,))),
        st.tuples(st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=3)).map(lambda p: joined(*p)),
    )


conditions = st.recursive(leaves, _combine, max_leaves=6)
# Rules usually require a category (and often a payload.kind), as real rules do, so both index levels
# have work to do.
rule_conditions = st.one_of(
    conditions,
    st.tuples(st.sampled_from(CATEGORIES), st.sampled_from(KINDS), conditions).map(
        lambda p: Condition(
            f'category == "{p[0]}" && payload.kind == "{p[1]}" && ({p[2].text})',
            {"and": [{"===": [{"var": "category"}, p[0]]}, {"===": [{"var": "payload.kind"}, p[1]]}, p[2].logic]},
            "and",
            (_leaf("category", (p[0],)), _leaf("kind", ((p[1],),)), p[2]),
        )
    ),
    st.tuples(st.sampled_from(CATEGORIES), conditions).map(
        lambda p: Condition(
            f'category == "{p[0]}" && ({p[1].text})',
            {"and": [{"===": [{"var": "category"}, p[0]]}, p[1].logic]},
            "and",
            (_leaf("category", (p[0],)), p[1]),
        )
    ),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        event["category"] = draw(st.sampled_from(CATEGORIES))
    if draw(st.booleans()):
        fields = draw(st.lists(st.sampled_from(NUMERIC_FIELDS), unique=True))
        event["payload"] = {f: draw(st.one_of(st.integers(-10, 110), st.floats(-10, 110))) for f in fields}
        if draw(st.booleans()):
            event["payload"]["kind"] = draw(st.sampled_from([*KINDS, 1]))
    if draw(st.booleans()):
        event["grid"] = draw(st.sampled_from(GRID_NAMES))
    if draw(st.booleans()):
        moment = draw(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)))
        offset = draw(st.sampled_from(["+08:00", "Z", "-05:00"]))
        event["time"] = moment.replace(microsecond=0).isoformat() + offset
    return event


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    conditions_drawn = draw(st.lists(rule_conditions, min_size=1, max_size=12))
    rules = []
    for index, condition in enumerate(conditions_drawn):
        as_jsonlogic = draw(st.booleans())
        source = {"jsonlogic": condition.logic} if as_jsonlogic else {"when": condition.text}
        rules.append({"id": f"r{index}", "priority": draw(st.integers(0, 3)), **source, "_condition": condition})
    return rules


def _reference(rules: list[dict[str, Any]], batch: list[dict[str, Any]], first_only: bool):
    ordered = sorted(enumerate(rules), key=lambda pair: (-pair[1]["priority"], pair[0]))
    counts = {rule["id"]: {"matches": 0, "missing": 0} for rule in rules}
    results = []
    for event in batch:
        matched = []
        for _, rule in ordered:
            outcome = rule["_condition"].evaluate(event)
            if outcome is UNKNOWN:
                counts[rule["id"]]["missing"] += 1
            elif outcome:
                counts[rule["id"]]["matches"] += 1
                matched.append(rule["id"])
                if first_only:
                    break
        results.append(matched)
    return results, counts


@given(rules=rule_sets(), batch=st.lists(events(), max_size=25), first_only=st.booleans())
@settings(max_examples=300)
def test_indexed_matcher_agrees_with_naive_reference(rules, batch, first_only) -> None:
    rule_set = RuleSet.compile([{k: v for k, v in rule.items() if k != "_condition"} for rule in rules], TIMEZONE)
    got = rule_set.match_many([orjson.dumps(event) for event in batch], first_only=first_only)
    expected, counts = _reference(rules, batch, first_only)
    assert [[m.rule_id for m in matches] for matches in got] == expected
    assert rule_set.stats == {"events": len(batch), "rules": counts}


# --- the expression language against Python -----------------------------------------------------------

numbers = st.integers(-50, 50)
arithmetic = st.recursive(
    st.one_of(numbers.map(str), st.sampled_from(["payload.a", "payload.b"])),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        inner.map(lambda e: f"-{e}"),
    ),
    max_leaves=8,
)
predicates = st.recursive(
    st.tuples(arithmetic, st.sampled_from(list(COMPARISONS)), arithmetic).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        inner.map(lambda e: f"!{e}"),
    ),
    max_leaves=6,
)


def _as_python(expression: str, payload: dict[str, int]) -> bool:
    python = expression.replace("&&", " and ").replace("||", " or ").replace("!", " not ").replace(" not =", "!=")
    python = python.replace("payload.a", str(payload["a"])).replace("payload.b", str(payload["b"]))
    return bool(eval(python, {"__builtins__": {}}))  # generated above from a fixed grammar


@given(expression=predicates, a=numbers, b=numbers)
@settings(max_examples=400)
def test_expressions_evaluate_like_python(expression: str, a: int, b: int) -> None:
    rule_set = RuleSet.compile([{"id": "e", "when": expression}])
    matched = bool(rule_set.match({"payload": {"a": a, "b": b}}))
    assert matched == _as_python(expression, {"a": a, "b": b})


@given(expression=arithmetic, a=numbers, b=numbers)
@settings(max_examples=200)
def test_arithmetic_values_equal_python(expression: str, a: int, b: int) -> None:
    value = eval(expression.replace("payload.a", str(a)).replace("payload.b", str(b)), {"__builtins__": {}})
    rule_set = RuleSet.compile([{"id": "e", "when": f"({expression}) == {value}"}])
    assert rule_set.match({"payload": {"a": a, "b": b}})


# --- fuzzing: the parsers never crash, every failure is a RuleError ----------------------------------

TOKENS = [
    '"x"',
    "'y'",
    "1",
    "2.5",
    "-",
    "+",
    "*",
    "/",
    "%",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "==",
    "!=",
    "<",
    ">=",
    "&&",
    "||",
    "!",
    "not",
    "in",
    "and",
    "or",
    "payload",
    "category",
    "hour",
    "in_grid",
    "has",
    "matches",
    "time_between",
    "true",
    "null",
    "成华区",
    "\\",
    '"',
    "1e999",
    "9" * 30,
    " ",
    "\n",
]


@given(source=st.one_of(st.text(max_size=80), st.lists(st.sampled_from(TOKENS), max_size=25).map("".join)))
@settings(max_examples=1500)
def test_expression_parser_never_crashes(source: str) -> None:
    try:
        rule_set = RuleSet.compile([{"id": "fuzz", "when": source}])
    except RuleError as error:
        assert error.problems and error.problems[0][0] == "fuzz"
        return
    rule_set.match({"category": "fire", "payload": {"x": 1}, "time": "2026-05-01T08:00:00+08:00"})


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["a", "a.b", "", "x", "0", "成华区/*", "22:00", "payload.ppm"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "var",
                    "and",
                    "or",
                    "!",
                    "if",
                    "==",
                    "<",
                    "+",
                    "*",
                    "map",
                    "reduce",
                    "filter",
                    "all",
                    "merge",
                    "in",
                    "cat",
                    "substr",
                    "missing",
                    "missing_some",
                    "in_grid",
                    "hour",
                    "has",
                    "matches",
                    "max",
                    "min",
                    "-",
                    "/",
                    "%",
                    "nope",
                    "time_between",
                    "len",
                    "some",
                    "none",
                ]
            ),
            inner,
            min_size=1,
            max_size=1,
        ),
    ),
    max_leaves=12,
)


@given(logic=json_values, data=json_values)
@settings(max_examples=1500)
def test_jsonlogic_compiler_never_crashes(logic: Any, data: Any) -> None:
    try:
        jsonlogic_apply(logic, data)
        rule_set = RuleSet.compile([{"id": "fuzz", "jsonlogic": json.dumps(logic)}])
    except RuleError:
        return
    assert len(rule_set.match(data if isinstance(data, dict) else {"value": data})) <= 1  # one rule compiled


@pytest.mark.parametrize("depth", [60, 5000])
def test_deep_nesting_is_a_rule_error_or_fine(depth: int) -> None:
    source = "(" * depth + "1" + ")" * depth + " == 1"
    try:
        assert RuleSet.compile([{"id": "deep", "when": source}]).match({})
    except RuleError as error:
        assert "nested deeper" in str(error)


FUZZ_RULES = [
    {"id": "text", "when": 'category == "fire" && payload.level >= 3 && hour(time) < 22 && in_grid("成华区/*")'},
    {"id": "logic", "jsonlogic": {"some": [{"var": "attachments"}, {"in": ["image", {"var": "media_type"}]}]}},
    {"id": "strings", "when": 'starts_with(lower(text), "gas") || matches(address, "府青路") || len(payload) > 2'},
]


@given(event=json_values, raw=st.binary(max_size=60))
@settings(max_examples=800)
def test_events_of_any_shape_never_crash(event: Any, raw: bytes) -> None:
    rule_set = RuleSet.compile(FUZZ_RULES)
    rule_set.match(orjson.dumps(event))
    try:
        rule_set.match(raw)
    except InvalidEventError as error:
        assert "event 0 is not valid JSON" in str(error)
