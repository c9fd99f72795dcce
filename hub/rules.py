"""Rules: which events matter, how much, and who must act.

Ops write rules in config; each has an ``id``, a ``priority``, a condition (``when``, the expression
language, or ``jsonlogic``) and ``actions`` returned as data. :meth:`RuleSet.compile` validates and
compiles a whole set once (the Rust core indexes it by category); :meth:`RuleSet.match_many` then
matches batches of events in one call with the GIL released. See ``docs/rules.md`` for the language.

    >>> rules = [
    ...     Rule(
    ...         id="gas-night",
    ...         priority=10,
    ...         when='category == "gas_leak" && payload.ppm >= 5000 && hour(time) >= 22',
    ...         actions={"severity": "critical", "route": ["dept:fire", "five_way"]},
    ...     )
    ... ]
    >>> rule_set = RuleSet.compile(rules, timezone="Asia/Shanghai")
    >>> event = {"category": "gas_leak", "payload": {"ppm": 6200}, "time": "2026-05-01T23:10:00+08:00"}
    >>> [m.rule_id for m in rule_set.match(event)]
    ['gas-night']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, field_validator

from hub import _core
from hub.errors import RuleError, validation_problems
from hub.models import Severity

__all__ = [
    "FIVE_WAY_RESPONDERS",
    "GRID_LEVELS",
    "Actions",
    "MatchIndices",
    "Rule",
    "RuleMatch",
    "RuleSet",
    "jsonlogic_apply",
]

DEFAULT_TIMEZONE = "Asia/Shanghai"
GRID_LEVELS = ("district", "street", "community", "grid", "micro_grid")
FIVE_WAY_RESPONDERS = ("police", "fire", "medical", "street", "community")

EventInput = bytes | bytearray | str | Mapping[str, Any]
T = TypeVar("T")


def _check_route_target(target: str) -> str:
    kind, _, name = target.partition(":")
    if target in ("gridworker", "five_way"):
        return target
    if kind in ("dept", "connector") and name:
        return target
    if kind == "level" and name in GRID_LEVELS:
        return target
    if kind == "five_way" and name in FIVE_WAY_RESPONDERS:
        return target
    raise ValueError(
        f"unknown route target {target!r}: use 'gridworker', 'dept:<name>', 'connector:<name>', "
        f"'level:<{'|'.join(GRID_LEVELS)}>', "
        f"'five_way' (all five responders) or 'five_way:<{'|'.join(FIVE_WAY_RESPONDERS)}>'"
    )


class Actions(BaseModel):
    """The known action keys, checked when a rule set compiles. A match returns the rule's actions as
    the plain dict it was written as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: Severity | None = Field(None, description="Raise the event's severity to this level.")
    route: list[str] = Field(
        default_factory=list,
        description="Who must act: 'gridworker', 'dept:<name>', 'connector:<name>' (orders to that connector), "
        "'level:<grid level>', 'five_way' or 'five_way:<police|fire|medical|street|community>'.",
    )
    tags: list[str] = Field(default_factory=list, description="Labels added to the incident.")
    escalate_after_s: PositiveFloat | None = Field(None, description="Escalate when unresolved this long.")
    data: dict[str, Any] = Field(default_factory=dict, description="Free-form data for downstream plugins.")

    @field_validator("route")
    @classmethod
    def _known_targets(cls, route: list[str]) -> list[str]:
        return [_check_route_target(target) for target in route]

    @field_validator("tags")
    @classmethod
    def _non_empty_tags(cls, tags: list[str]) -> list[str]:
        if any(not tag for tag in tags):
            raise ValueError("tags must not be empty strings")
        return tags


class Rule(BaseModel):
    """One rule as written in config. Exactly one of ``when`` (expression language) and ``jsonlogic``
    (a JsonLogic value, or its JSON text) is required; this is checked by :meth:`RuleSet.compile` so
    that every problem of a rule set is reported at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    priority: int = Field(0, description="Higher first; equal priorities keep the order given.")
    when: str | None = Field(None, description='Expression, e.g. category == "fire" && in_grid("成华区/*").')
    jsonlogic: Any = Field(None, description="JsonLogic rule (dict) or its JSON text.")
    actions: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None

    def condition(self) -> tuple[Literal["expression", "jsonlogic"], str]:
        """The condition as the core takes it: its kind and its source text."""
        if self.when is not None:
            return "expression", self.when
        if isinstance(self.jsonlogic, str):
            return "jsonlogic", self.jsonlogic
        return "jsonlogic", orjson.dumps(self.jsonlogic).decode()


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that matched an event. ``actions`` is shared between matches: treat it as read-only."""

    rule_id: str
    priority: int
    actions: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MatchIndices:
    """The matches of a batch as two flat integer buffers, with no object per event or match: event
    ``i`` matched the rules ``rule_indices[offsets[i]:offsets[i + 1]]`` (positions in
    :attr:`RuleSet.rules`, highest priority first). Both are ``memoryview``s (``offsets`` of unsigned
    64-bit, ``rule_indices`` of unsigned 32-bit integers), so ``numpy.frombuffer`` reads them in place."""

    offsets: memoryview
    rule_indices: memoryview

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def event(self, index: int) -> memoryview:
        """The positions of the rules event ``index`` matched."""
        return self.rule_indices[self.offsets[index] : self.offsets[index + 1]]


def _shape_problems(rule: Rule) -> list[tuple[str, str, str]]:
    problems = []
    if (rule.when is None) == (rule.jsonlogic is None):
        problems.append((rule.id, "rule", "give exactly one of 'when' and 'jsonlogic'"))
    try:
        Actions.model_validate(rule.actions)
    except ValidationError as error:
        for where, message in validation_problems(error, ""):
            problems.append((rule.id, ".".join(filter(None, ["actions", where])), message))
    return problems


def _parse_rules(rules: Iterable[Rule | Mapping[str, Any]]) -> tuple[tuple[Rule, ...], list[tuple[str, str, str]]]:
    """Config mappings become :class:`Rule`; a mapping that is not a rule is reported by its id (or
    its position in the list) and left out."""
    parsed, problems = [], []
    for index, rule in enumerate(rules):
        if isinstance(rule, Rule):
            parsed.append(rule)
            continue
        try:
            parsed.append(Rule.model_validate(rule))
        except ValidationError as error:
            rule_id = str(rule.get("id") or f"#{index}") if isinstance(rule, Mapping) else f"#{index}"
            problems += [(rule_id, where, message) for where, message in validation_problems(error, "rule")]
    return tuple(parsed), problems


def _raise_problems(problems: list[tuple[str, str, str]], rules: tuple[Rule, ...]) -> NoReturn:
    order = {rule.id: index for index, rule in reversed(list(enumerate(rules)))}
    problems = sorted(problems, key=lambda problem: order.get(problem[0], -1))
    lines = [f"rule {rule_id!r} at {position}: {reason}" for rule_id, position, reason in problems]
    raise RuleError(f"{len(problems)} rule problem(s):\n  " + "\n  ".join(lines), problems) from None


def _as_bytes(event: EventInput) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, bytearray):
        return bytes(event)
    if isinstance(event, str):
        return event.encode()
    return orjson.dumps(event)


def _with_bytes(method: Callable[..., T], events: Sequence[EventInput], *args: bool) -> T:
    """Calls a batch ``method`` of the core with ``events`` as a list of bytes, converting only when
    they are not that already."""
    if isinstance(events, list):
        try:
            return method(events, *args)
        except TypeError:
            pass  # not all bytes: convert below
    return method([_as_bytes(event) for event in events], *args)


class RuleSet:
    """A compiled, indexed, immutable rule set. Build with :meth:`compile`; a running hub replaces its
    set between two batches (``Pipeline.swap_engines``). Events are the canonical event as JSON
    (``Event.model_dump(mode="json")``) plus ``grid`` and ``grid_ids`` (admin path names / ids joined by
    ``/``), as bytes, str or dict."""

    __slots__ = ("_compiled", "rules", "timezone")

    def __init__(self, compiled: _core.CompiledRules, rules: tuple[Rule, ...], timezone: str):
        self._compiled = compiled
        self.rules = rules
        self.timezone = timezone

    @classmethod
    def compile(cls, rules: Iterable[Rule | Mapping[str, Any]], timezone: str = DEFAULT_TIMEZONE) -> RuleSet:
        """Validates and compiles ``rules``. Raises :class:`hub.errors.RuleError` listing every problem
        (rule id, position, reason) when any rule is bad. ``timezone`` (IANA name) is where
        ``hour(time)`` and friends read the time of day."""
        parsed, problems = _parse_rules(rules)
        problems += [problem for rule in parsed for problem in _shape_problems(rule)]
        well_formed = [rule for rule in parsed if (rule.when is None) != (rule.jsonlogic is None)]
        results = [RuleMatch(rule.id, rule.priority, dict(rule.actions)) for rule in well_formed]
        specs = [(rule.id, rule.priority, *rule.condition()) for rule in well_formed]
        try:
            compiled = _core.CompiledRules(specs, timezone, results)
        except RuleError as error:
            _raise_problems(problems + error.problems, parsed)
        if problems:
            _raise_problems(problems, parsed)
        return cls(compiled, parsed, timezone)

    def match(self, event: EventInput, first_only: bool = False) -> list[RuleMatch]:
        """The rules ``event`` matches, highest priority first (only the first with ``first_only``).
        Raises :class:`hub.errors.InvalidEventError` when the bytes are not JSON."""
        return self._compiled.match_one(_as_bytes(event), first_only)

    def match_many(
        self, events: Sequence[EventInput], first_only: bool = False, *, parallel: bool = False
    ) -> list[list[RuleMatch]]:
        """:meth:`match` for a batch, in one call into the core with the GIL released. ``parallel``
        splits a batch of 4,096 events or more across the machine's cores: faster only when the cores
        are otherwise idle (see ``docs/rules.md``)."""
        return _with_bytes(self._compiled.match_many, events, first_only, parallel)

    def match_indices(
        self, events: Sequence[EventInput], first_only: bool = False, *, parallel: bool = False
    ) -> MatchIndices:
        """:meth:`match_many` answered as flat buffers of rule positions (:class:`MatchIndices`)
        instead of a list of :class:`RuleMatch` lists per event: for batches where most events match
        nothing, or when the caller aggregates, it saves building a Python list per event."""
        offsets, rule_indices = _with_bytes(self._compiled.match_indices, events, first_only, parallel)
        return MatchIndices(memoryview(offsets).cast("Q"), memoryview(rule_indices).cast("I"))

    @property
    def stats(self) -> dict[str, Any]:
        """``{"events": n, "rules": {rule_id: {"matches": n, "missing": n}}}`` since compilation;
        ``missing`` counts events whose outcome a missing field left undecided (so no match)."""
        events, per_rule = self._compiled.stats()
        ids = [rule.id for rule in self.rules]
        return {
            "events": events,
            "rules": {rule_id: {"matches": m, "missing": k} for rule_id, (m, k) in zip(ids, per_rule, strict=True)},
        }

    def __len__(self) -> int:
        return len(self.rules)


def jsonlogic_apply(logic: Any, data: Any = None, timezone: str = DEFAULT_TIMEZONE) -> Any:
    """Evaluates a JsonLogic rule on ``data`` with plain JsonLogic semantics (a missing field reads
    as null), as json-logic-js's ``apply`` does: handy for trying a rule out."""
    result = _core.jsonlogic_apply(orjson.dumps(logic).decode(), orjson.dumps(data).decode(), timezone)
    return orjson.loads(result)
