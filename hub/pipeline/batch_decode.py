"""Ingest messages decided a batch at a time in the Rust core, without a pydantic model per event.

The core is handed the :class:`~hub.models.Event` model's own JSON Schema at start-up, with the categories of
the runtime's taxonomy (:mod:`hub.taxonomy`; a field added to the model is checked and becomes a column without
a change here), parses
every message of a batch with serde_json and *accepts* an event only when it is already in canonical form and
meets every constraint of the schema, on its own source's subject and inside the event-time window. It
returns the accepted events as columns. Every other message is *undecided* and goes through the model
(:mod:`hub.pipeline.decode`), which accepts what lax validation allows and gives each rejection its kind and
reason, exactly as before. So the fast path cannot accept what the model refuses, by construction; the
conformance test (tests/test_batch_decode.py) checks that it also normalises every field as the model does.

Columns are named by property: ``source``, ``time`` (epoch seconds, with ``time.utcoffset`` in seconds),
``location`` (True when present) with ``location.lon`` and the rest of an object's properties beside it, and
arrays and free objects (``grid_path``, ``payload``) as JSON text with the model's defaults filled in.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter

from hub import _core, wire
from hub.models import Event
from hub.pipeline.decode import IngestMessage
from hub.pipeline.engines import EventTimeWindow
from hub.taxonomy import BUILTIN_TAXONOMY, Taxonomy

_CATEGORY, _SEVERITY = "category", "severity"  # the fields the taxonomy decides beyond the model

# Validators written in Python that the schema does not show, each with how the Rust check covers it. A
# validator not listed here stops the checker from being built: teach the Rust side its rule first.
COVERED_VALIDATORS = {
    "Event._must_be_aware": "the fast path accepts only date-times written with an offset (or Z)",
}


@dataclass
class EventColumns:
    """The events the fast path accepted: ``positions`` in the batch, ``columns`` in that order."""

    positions: list[int]
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.positions)


class BatchDecoder:
    """Decides batches of ingest messages against ``model`` (the canonical :class:`Event` unless told) and
    ``taxonomy``, as :func:`hub.pipeline.decode.decode_events` does: an event's category must be one of the
    taxonomy's, and an event without a severity gets its category's default severity."""

    def __init__(self, model: type[BaseModel] = Event, taxonomy: Taxonomy = BUILTIN_TAXONOMY,
                 source_field: str = "source", time_field: str = "time"):
        refuse_uncovered_validators(model)
        self.model, self.taxonomy = model, taxonomy
        schema = checker_schema(model)
        schema["properties"][_CATEGORY]["enum"] = sorted(taxonomy)
        del schema["properties"][_SEVERITY]["default"]  # the taxonomy's, filled in by decode()
        self._checker = _core.EventChecker(orjson.dumps(schema).decode(), source_field, time_field, wire.TYPE_EVENT)

    def decode(
        self, batch: Sequence[IngestMessage], max_bytes: int, window: EventTimeWindow
    ) -> tuple[EventColumns, list[IngestMessage]]:
        """The accepted events as columns, and the messages left to the model, in stream order."""
        accepted, undecided, columns = self._checker.decode(
            [message.data for message in batch], [message.subject for message in batch],
            [message.received for message in batch], max_bytes, window.max_ahead_s, window.max_age_s,
            window.accept_out_of_range,
        )
        severities = columns[_SEVERITY]
        for row, (category, severity) in enumerate(zip(columns[_CATEGORY], severities, strict=True)):
            if severity is None:
                severities[row] = self.taxonomy.default_severity(category).value
        return EventColumns(accepted, columns), [batch[position] for position in undecided]


def checker_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of ``model`` with the defaults pydantic leaves out (those of ``default_factory``
    fields, such as ``payload`` or ``grid_path``) written in, so columns hold what the model would."""
    schema = model.model_json_schema()
    for each in _models_in(model):
        target = schema if each is model else schema.get("$defs", {}).get(each.__name__)
        if target is None:
            raise ValueError(f"{model.__name__}'s JSON Schema has no $defs entry for {each.__name__}; "
                             f"give the nested model a unique name")
        for name, field in each.model_fields.items():
            prop = target["properties"][field.alias or name]
            if field.default_factory is not None and "default" not in prop:
                default = field.get_default(call_default_factory=True)
                prop["default"] = orjson.loads(TypeAdapter(field.annotation).dump_json(default))
    return schema


def refuse_uncovered_validators(model: type[BaseModel]) -> None:
    """Raise ValueError naming a validator of ``model`` (or a nested model) the Rust check does not cover."""
    for each in _models_in(model):
        decorators = each.__pydantic_decorators__
        found = [decorator.func for decorator in [*decorators.field_validators.values(),
                                                  *decorators.model_validators.values()]]
        found += [meta.func for field in each.model_fields.values() for meta in field.metadata if hasattr(meta, "func")]
        for validator in found:
            name = getattr(validator, "__qualname__", repr(validator))
            if name not in COVERED_VALIDATORS:
                raise ValueError(
                    f"{name} is a validator the Rust event check (core_rs/src/ingest) does not apply; implement "
                    f"its rule there and list it in hub.pipeline.batch_decode.COVERED_VALIDATORS"
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
