"""The Rust batch decoder (hub.pipeline.batch_decode) against the pydantic model it is compiled from: it
accepts only what the model accepts, with every field normalised the same way, and hostile input never
escapes it as anything but an undecided message that the model then rejects with its reason."""

from __future__ import annotations

import functools
import math
from datetime import datetime
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter, field_validator

from hub import wire
from hub.models import Category, Event, Severity
from hub.pipeline.batch_decode import BatchDecoder, refuse_uncovered_validators
from hub.pipeline.decode import IngestMessage, decode_events
from hub.pipeline.engines import EventTimeWindow
from hub.taxonomy import BUILTIN_TAXONOMY, CategoryInfo
from tests.event_documents import as_json, events, json_values, valid_events

RECEIVED = 1_777_593_600.0  # 2026-05-01T00:00:00Z
MAX_BYTES = 256 * 1024
WINDOW = EventTimeWindow()
DECODER = BatchDecoder()

def _as_cloudevent(event: dict[str, Any], type_: str) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "x", "source": "/test", "type": type_, "data": event}


ingest_payloads = st.one_of(
    valid_events.map(as_json),
    valid_events.map(lambda e: as_json(_as_cloudevent(e, wire.TYPE_EVENT))),
    events.map(as_json),
    events.map(lambda e: as_json(_as_cloudevent(e, wire.TYPE_EVENT))),
    events.map(lambda e: as_json({**_as_cloudevent(e, wire.TYPE_EVENT), "specversion": 1.0})),
    events.map(lambda e: as_json(_as_cloudevent(e, "cityhub.other"))),
    json_values.map(as_json),
    st.binary(max_size=40),
)


def _batch(payloads: list[bytes]) -> list[IngestMessage]:
    return [IngestMessage(seq, "cityhub.ingest.iot", data, RECEIVED) for seq, data in enumerate(payloads, start=1)]


def _model_value(event: Event, path: list[str]) -> Any:
    value: Any = event
    for name in path:
        if value is None:
            return None
        value = getattr(value, name)
    return value


def _expected_cell(event: Event, column: str) -> Any:
    """What a column should hold for ``event``, in the column's representation."""
    if column.endswith(".utcoffset"):
        value = _model_value(event, column.removesuffix(".utcoffset").split("."))
        return None if value is None else int(value.utcoffset().total_seconds())
    value = _model_value(event, column.split("."))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, BaseModel):
        return True
    if isinstance(value, (list, dict)):  # JSON text, as pydantic writes the field
        return _field_json(column).dump_json(value, exclude_none=True).decode()
    return value


@functools.cache
def _field_json(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(Event.model_fields[name].annotation)


def _strictly_equal(a: Any, b: Any) -> bool:
    """Equal with the same JSON types (1 and 1.0 differ), -0.0 and 0.0 told apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def _assert_conforms(payloads: list[bytes]) -> None:
    batch = _batch(payloads)
    columns, undecided = DECODER.decode(batch, MAX_BYTES, WINDOW)
    by_model = decode_events(batch, MAX_BYTES, WINDOW)
    accepted_by_model = {}
    events = iter(by_model.events)
    rejected_seqs = {rejection.seq for rejection in by_model.rejected}
    for message in batch:  # on an event source's subject every message is an event or a rejection
        if message.seq not in rejected_seqs:
            accepted_by_model[message.seq] = next(events)
    assert sorted([*columns.positions, *(batch.index(m) for m in undecided)]) == list(range(len(batch)))
    for row, position in enumerate(columns.positions):
        seq = batch[position].seq
        assert seq in accepted_by_model, f"the fast path accepted what the model rejects: {payloads[position]!r}"
        event = accepted_by_model[seq]
        for name, values in columns.columns.items():
            assert _strictly_equal(values[row], _expected_cell(event, name)), (name, values[row], _expected_cell(event, name))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(ingest_payloads, min_size=1, max_size=8))
def test_fast_path_accepts_only_what_the_model_accepts_with_the_same_values(payloads: list[bytes]) -> None:
    _assert_conforms(payloads)


def test_canonical_events_take_the_fast_path() -> None:
    """The fast path is worth having only if events as connectors write them take it."""
    canonical = Event(source="iot", source_event_id="r-1", category=Category.GAS_LEAK, severity=Severity.HIGH,
                      time=datetime.fromisoformat("2026-05-01T08:00:00.250+08:00"),
                      location={"lon": 104.07, "lat": 30.57, "crs": "gcj02"}, address="人民南路 1 号",
                      reporter={"name": "张三", "phone": "13800138000"}, payload={"ppm": 420, "ok": [1.5, None]})
    bare = canonical.model_dump_json(exclude_none=True).encode()
    envelope = wire.encode(type_=wire.TYPE_EVENT, id_="iot:r-1", source="/cityhub/iot", time=canonical.time,
                           data=canonical)
    columns, undecided = DECODER.decode(_batch([bare, envelope]), MAX_BYTES, WINDOW)
    assert (columns.positions, undecided) == ([0, 1], [])
    _assert_conforms([bare, envelope])
    assert columns.columns["location.lon"] == [104.07, 104.07]
    assert columns.columns["time.utcoffset"] == [28_800, 28_800]


_HEAD = b'{"source":"iot","category":"fire","time":"2026-05-01T08:00:00Z",'
HOSTILE = {  # name: (message, the model's verdict: the kind of its rejection, None when it accepts)
    "truncated UTF-8": (_HEAD + b'"text":"\xe5\xad"}', "not_json"),
    "10,000-deep nesting": (_HEAD + b'"payload":{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}}", "not_json"),
    "900 KB payload": (_HEAD + b'"text":"' + b"x" * 900_000 + b'"}', "oversized"),
    "NaN": (_HEAD + b'"location":{"lon":NaN,"lat":1}}', "not_json"),
    "number beyond f64": (_HEAD + b'"payload":{"a":1e400}}', "not_json"),
    "lone surrogate": (_HEAD + b'"text":"\\ud800"}', "not_json"),
    "duplicate keys": (_HEAD + b'"category":"lava"}', "unknown_category"),
    "number beyond i64": (_HEAD + b'"payload":{"a":99999999999999999999999}}', None),  # orjson: a float
}


@pytest.mark.parametrize(("raw", "verdict"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_is_left_to_the_model(raw: bytes, verdict: str | None) -> None:
    batch = _batch([raw])
    columns, undecided = DECODER.decode(batch, MAX_BYTES, WINDOW)
    assert (len(columns), undecided) == (0, batch)
    by_model = decode_events(batch, MAX_BYTES, WINDOW)
    assert [rejection.kind for rejection in by_model.rejected] == ([verdict] if verdict else [])
    assert all(rejection.reason for rejection in by_model.rejected)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
def test_arbitrary_bytes_never_escape_as_an_exception(raw: bytes) -> None:
    _assert_conforms([raw, b'{"source":"iot","category":"fire","time":"2026-05-01T08:00:00Z",' + raw + b"}"])


def test_a_validator_the_rust_check_does_not_apply_stops_the_decoder_from_being_built() -> None:
    class Stricter(Event):
        quiet: bool = Field(False)

        @field_validator("text")
        @classmethod
        def _no_shouting(cls, value: str | None) -> str | None:
            return value

    with pytest.raises(ValueError, match="Stricter._no_shouting is a validator the Rust event check"):
        refuse_uncovered_validators(Stricter)


def test_a_field_added_to_the_model_is_checked_and_becomes_a_column() -> None:
    class WithReceived(Event):
        priority: int = Field(0, ge=0, le=9)

    decoder = BatchDecoder(WithReceived)
    base = b'{"source":"iot","category":"fire","time":"2026-05-01T08:00:00Z"'
    columns, undecided = decoder.decode(_batch([base + b',"priority":3}', base + b',"priority":10}', base + b"}"]),
                                        MAX_BYTES, WINDOW)
    assert columns.positions == [0, 2] and [m.seq for m in undecided] == [2]
    assert columns.columns["priority"] == [3, 0]


def test_categories_and_default_severities_are_the_taxonomy_s() -> None:
    taxonomy = BUILTIN_TAXONOMY.extended([("test", {"bee_swarm": CategoryInfo(
        label_zh="蜂群", label_en="Bee swarm", default_severity=Severity.HIGH)})])
    decoder = BatchDecoder(taxonomy=taxonomy)
    head = b'{"source":"iot","time":"2026-05-01T08:00:00Z","category":'
    batch = _batch([head + b'"bee_swarm"}', head + b'"bee_swarm","severity":"low"}', head + b'"lava"}', head + b'"fire"}'])
    columns, undecided = decoder.decode(batch, MAX_BYTES, WINDOW)
    assert columns.positions == [0, 1, 3] and [m.seq for m in undecided] == [3]
    assert columns.columns["severity"] == ["high", "low", "medium"]
    by_model = decode_events(batch, MAX_BYTES, WINDOW, taxonomy)
    assert [e.severity.value for e in by_model.events] == columns.columns["severity"]
    [unknown] = by_model.rejected
    assert unknown.kind == "unknown_category" and "bee_swarm" in unknown.reason
