"""A batch of events as columns: what the pipeline works on from decoding to encoding, without a model object
per event.

The columns follow the :class:`~hub.models.Event` model's JSON Schema (so a field added to the model becomes a
column without a change here), one per property, in the model's order; the Rust core decodes into them
(:mod:`hub.pipeline.batch_decode`) and encodes from them (:mod:`hub.pipeline.batch_encode`). Each column has a
kind:

- ``value``: strings, numbers and booleans, as the model holds them (enums as their string value);
- ``object``: a property holding a nested model (``location``, ``reporter``, ``area``): True where it is
  present, None where not; its properties have their own columns, ``location.lon``, ``reporter.phone``;
- ``json``: arrays and free objects (``grid_path``, ``attachments``, ``payload``, ``area.geometry``) as JSON
  text, written as pydantic writes the model's value;
- ``time``: microseconds since the epoch (exact), with the offset the time was written with, in seconds, in
  the column ``<name>.utcoffset``. A stage that stamps a time may put epoch seconds (a float) instead:
  they are written as ``datetime.fromtimestamp`` would make them.

:meth:`EventColumns.events` and :meth:`EventColumns.from_events` convert to and from :class:`Event`
objects, for a transform that wants them (its cost is in docs/plugin_hooks.md) and for the rare event the
model decided (lax input, :mod:`hub.pipeline.decode`).
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import orjson
import pydantic_core
from pydantic import BaseModel, TypeAdapter

from hub import _core, wire
from hub.models import Event

Layout = tuple[tuple[str, str], ...]  # (column name, kind), in the model's order
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Validators written in Python that the schema does not show, each with how the Rust check covers it. A
# validator not listed here stops the checker from being built: teach the Rust side its rule first.
COVERED_VALIDATORS = {
    "Event._must_be_aware": "the fast path accepts only date-times written with an offset (or Z)",
}


class EventColumns:
    """Events as columns: ``columns[name]`` is the list of that column's values, one per event."""

    def __init__(self, layout: Layout, values: dict[str, list[Any]], rows: int):
        self.layout = layout
        self.values = values
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, name: str) -> list[Any]:
        return self.values[name]

    def __setitem__(self, name: str, values: list[Any]) -> None:
        if name not in self.values:
            raise KeyError(f"{name!r} is not a column of the event model")
        if len(values) != self.rows:
            raise ValueError(f"column {name!r} given {len(values)} values for {self.rows} events")
        self.values[name] = values

    def take(self, rows: Sequence[int]) -> EventColumns:
        """The events at ``rows``, in that order."""
        if len(rows) == 1:
            return EventColumns(self.layout, {name: [values[rows[0]]] for name, values in self.values.items()}, 1)
        pick = operator.itemgetter(*rows) if rows else (lambda values: ())
        return EventColumns(self.layout, {name: list(pick(values)) for name, values in self.values.items()}, len(rows))

    @classmethod
    def interleaved(cls, layout: Layout, parts: Sequence[tuple[Sequence[int], EventColumns]]) -> EventColumns:
        """One batch from parts whose events sit at the given positions of a sequence (the whole batch, in
        the positions' order)."""
        order = sorted(
            (position, part, row) for part, (positions, _) in enumerate(parts) for row, position in enumerate(positions)
        )
        values = {name: [parts[part][1].values[name][row] for _, part, row in order] for name in parts[0][1].values}
        return cls(layout, values, len(order))

    def events(self) -> list[Event]:
        """Each event as an :class:`Event`, read from the JSON the encoder writes of it."""
        return [Event.model_validate_json(data) for data in _codec().encoder.encode_data(self.values, self.rows)]

    @classmethod
    def from_events(cls, events: Sequence[Event], layout: Layout) -> EventColumns:
        """Columns holding ``events``, each value as the decoder would give it."""
        values: dict[str, list[Any]] = {}
        for name, kind in layout:
            path = name.split(".")
            cells = [_attribute(event, path) for event in events]
            if kind == "time":
                values[name] = [None if value is None else (value - _EPOCH) // _MICROSECOND for value in cells]
                values[f"{name}.utcoffset"] = [
                    None if value is None else int(value.utcoffset().total_seconds()) for value in cells
                ]
            else:
                values[name] = [_cell(value, kind) for value in cells]
        return cls(layout, values, len(events))

    def set_events(self, events: Sequence[Event]) -> None:
        """Replace every event with ``events`` (as many)."""
        if len(events) != self.rows:
            raise ValueError(
                f"{len(events)} events given back for {self.rows}: a transform may change events, "
                "not add or remove them"
            )
        self.values = EventColumns.from_events(events, self.layout).values


def _attribute(event: Event, path: list[str]) -> Any:
    value: Any = event
    for name in path:
        if value is None:
            return None
        value = getattr(value, name)
    return value


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "object":
        return True
    if kind == "json":
        return pydantic_core.to_json(value, exclude_none=True).decode()
    return value.value if isinstance(value, Enum) else value


class _Codec:
    """The Rust checker's layout and the encoder, both compiled from the event model's JSON Schema."""

    def __init__(self) -> None:
        schema = orjson.dumps(checker_schema(Event)).decode()
        self.layout: Layout = tuple(_core.EventChecker(schema, "source", "time", wire.TYPE_EVENT).columns())
        self.encoder = _core.EventEncoder(schema, "time", "source", wire.SOURCES_PATH, wire.TYPE_EVENT)


@functools.cache
def _codec() -> _Codec:
    refuse_uncovered_validators(Event)
    return _Codec()


def layout() -> Layout:
    """The columns of the event model."""
    return _codec().layout


def encoder() -> _core.EventEncoder:
    """The Rust encoder of unified events and incident changes."""
    return _codec().encoder


def checker_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of ``model`` with the defaults pydantic leaves out (those of ``default_factory``
    fields, such as ``payload`` or ``grid_path``) written in, so columns hold what the model would."""
    schema = model.model_json_schema()
    for each in _models_in(model):
        target = schema if each is model else schema.get("$defs", {}).get(each.__name__)
        if target is None:
            raise ValueError(
                f"{model.__name__}'s JSON Schema has no $defs entry for {each.__name__}; "
                f"give the nested model a unique name"
            )
        for name, field in each.model_fields.items():
            prop = target["properties"][field.alias or name]
            if field.default_factory is not None and "default" not in prop:
                default = field.get_default(call_default_factory=True)
                assert field.annotation is not None  # a field with a default factory is annotated
                prop["default"] = orjson.loads(TypeAdapter(field.annotation).dump_json(default))
    return schema


def refuse_uncovered_validators(model: type[BaseModel]) -> None:
    """Raise ValueError naming a validator of ``model`` (or a nested model) the Rust check does not cover."""
    for each in _models_in(model):
        decorators = each.__pydantic_decorators__
        found = [decorator.func for decorator in decorators.field_validators.values()]
        found += [decorator.func for decorator in decorators.model_validators.values()]
        found += [meta.func for field in each.model_fields.values() for meta in field.metadata if hasattr(meta, "func")]
        for validator in found:
            name = getattr(validator, "__qualname__", repr(validator))
            if name not in COVERED_VALIDATORS:
                raise ValueError(
                    f"{name} is a validator the Rust event check (core_rs/src/ingest) does not apply; implement "
                    f"its rule there and list it in hub.pipeline.columns.COVERED_VALIDATORS"
                )


def _models_in(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """``model`` and every model its fields hold, each once."""
    seen: list[type[BaseModel]] = []
    pending = [model]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.append(current)
        for field in current.model_fields.values():
            pending.extend(_nested_models(field.annotation))
    yield from seen


def _nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    elif isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for argument in typing.get_args(annotation):
            yield from _nested_models(argument)
