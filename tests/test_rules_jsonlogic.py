"""The official JsonLogic test suite (jsonlogic.com/tests.json) and the json-logic-engine project's
`compatible.json`, both run through hub.rules.jsonlogic_apply. Every operator of the suites is
supported, so nothing is skipped; see docs/rules.md for the list."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from hub.rules import RuleSet, jsonlogic_apply

DATA = Path(__file__).parent / "data" / "jsonlogic"


def _official_cases() -> list[Any]:
    entries = json.loads((DATA / "tests.json").read_text(encoding="utf-8"))
    cases, section = [], ""
    for entry in entries:
        if isinstance(entry, str):
            section = entry.strip("# ").strip()
            continue
        rule, data, expected = entry
        cases.append(pytest.param(rule, data, expected, id=f"{section}:{json.dumps(rule, ensure_ascii=False)[:60]}"))
    return cases


def _engine_cases() -> list[Any]:
    entries = json.loads((DATA / "engine-compatible.json").read_text(encoding="utf-8"))
    return [
        pytest.param(case["rule"], case.get("data"), case["result"], id=case["description"][:70])
        for case in entries
        if isinstance(case, dict)
    ]


def _same(got: Any, expected: Any) -> bool:
    """JSON equality with numbers compared by value (JavaScript has one number type)."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, expected)
    if isinstance(expected, list) and isinstance(got, list):
        return len(got) == len(expected) and all(_same(g, e) for g, e in zip(got, expected, strict=True))
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(_same(got[k], expected[k]) for k in expected)
    return type(got) is type(expected) and got == expected


def test_official_suite_has_all_277_cases() -> None:
    assert len(_official_cases()) == 277


@pytest.mark.parametrize(("rule", "data", "expected"), _official_cases())
def test_official_jsonlogic_suite(rule: Any, data: Any, expected: Any) -> None:
    assert _same(jsonlogic_apply(rule, data), expected)


@pytest.mark.parametrize(("rule", "data", "expected"), _engine_cases())
def test_json_logic_engine_compatible_suite(rule: Any, data: Any, expected: Any) -> None:
    assert _same(jsonlogic_apply(rule, data), expected)


def _cases_on_objects() -> list[Any]:
    """Suite cases whose data is a JSON object (an event can only be one) and whose rule is not null
    (a null ``jsonlogic`` means no condition was given)."""
    return [case for case in _official_cases() if isinstance(case.values[1], dict) and case.values[0] is not None]


@pytest.mark.parametrize(("rule", "data", "expected"), _cases_on_objects())
def test_official_cases_as_rules_match_by_truthiness(rule: Any, data: Any, expected: Any) -> None:
    """Compiled into a rule set, each suite rule matches exactly when json-logic-js's result is truthy,
    on events where every field the rule reads is present (missing fields are the one difference)."""
    rule_set = RuleSet.compile([{"id": "r", "jsonlogic": json.dumps(rule)}])
    truthy = expected not in (None, False, 0, "", [])
    matched = bool(rule_set.match(data))
    missing = rule_set.stats["rules"]["r"]["missing"]
    assert matched == truthy or (not matched and missing == 1)
