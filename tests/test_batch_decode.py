"""The Rust batch decoder (hub.pipeline.batch_decode) against the pydantic model it is compiled from: it
accepts only what the model accepts, with every field normalised the same way; what it leaves undecided the
model decides, with the same DLQ kinds and reasons as ever; and hostile input never escapes it as anything but
an undecided message that the model then rejects with its reason."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, field_validator

from hub import wire
from hub.models import Category, Event, Severity
from hub.pipeline.batch_decode import BatchDecoder
from hub.pipeline.columns import EventColumns, layout, refuse_uncovered_validators
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


_CLOSE = {"incident_id": "inc-01M83RDEXVGSK35WXJH6BQ1DDC", "reason": "done", "time": "2026-05-01T08:00:00Z"}
ingest_payloads = st.one_of(
    valid_events.map(as_json),
    valid_events.map(lambda e: as_json(_as_cloudevent(e, wire.TYPE_EVENT))),
    events.map(as_json),
    events.map(lambda e: as_json(_as_cloudevent(e, wire.TYPE_EVENT))),
    events.map(lambda e: as_json({**_as_cloudevent(e, wire.TYPE_EVENT), "specversion": 1.0})),
    events.map(lambda e: as_json(_as_cloudevent(e, "cityhub.other"))),
    st.just(as_json(_as_cloudevent(_CLOSE, wire.TYPE_CLOSE_REQUEST))),
    json_values.map(as_json),
    st.binary(max_size=40),
)


def _batch(payloads: list[bytes], subject: str = "cityhub.ingest.iot") -> list[IngestMessage]:
    return [IngestMessage(seq, subject, data, RECEIVED) for seq, data in enumerate(payloads, start=1)]


def _strictly_equal(a: Any, b: Any) -> bool:
    """Equal with the same types (1 and 1.0 differ), -0.0 and 0.0 told apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def _assert_same_columns(got: EventColumns, expected: EventColumns) -> None:
    assert got.values.keys() == expected.values.keys()
    for name, values in got.values.items():
        for row, (value, wanted) in enumerate(zip(values, expected.values[name], strict=True)):
            assert _strictly_equal(value, wanted), (name, row, value, wanted)


def _assert_conforms(payloads: list[bytes], subject: str = "cityhub.ingest.iot") -> None:
    """The fast path's events are the model's, field by field; the whole batch decodes as the model decodes
    it: the same events in the same order, close requests in the same places, the same rejections."""
    batch = _batch(payloads, subject)
    accepted, undecided, fast = DECODER.fast_path(batch, MAX_BYTES, WINDOW)
    by_model = decode_events(batch, MAX_BYTES, WINDOW)
    assert sorted([*accepted, *undecided]) == list(range(len(batch)))
    model_seqs = [message.seq for message in by_model.messages]
    for position in accepted:
        assert batch[position].seq in model_seqs, (
            f"the fast path accepted what the model rejects: {payloads[position]!r}"
        )
    fast_events = [by_model.events[model_seqs.index(batch[position].seq)] for position in accepted]
    _assert_same_columns(fast, EventColumns.from_events(fast_events, layout()))

    decoded = DECODER.decode(batch, MAX_BYTES, WINDOW)
    _assert_same_columns(decoded.events, EventColumns.from_events(by_model.events, layout()))
    assert decoded.messages == by_model.messages
    assert decoded.closes == by_model.closes
    assert decoded.rejected == by_model.rejected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(ingest_payloads, min_size=1, max_size=8))
def test_fast_path_accepts_only_what_the_model_accepts_with_the_same_values(payloads: list[bytes]) -> None:
    _assert_conforms(payloads)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.just(as_json(_as_cloudevent(_CLOSE, wire.TYPE_CLOSE_REQUEST)))
        | valid_events.map(lambda e: as_json({**e, "source": "ops"})),
        min_size=1,
        max_size=6,
    )
)
def test_close_requests_keep_their_place_among_the_events(payloads: list[bytes]) -> None:
    _assert_conforms(payloads, subject="cityhub.ingest.ops")


def test_canonical_events_take_the_fast_path() -> None:
    """The fast path is worth having only if events as connectors write them take it."""
    canonical = Event(
        source="iot",
        source_event_id="r-1",
        category=Category.GAS_LEAK,
        severity=Severity.HIGH,
        time=datetime.fromisoformat("2026-05-01T08:00:00.250+08:00"),
        location={"lon": 104.07, "lat": 30.57, "crs": "gcj02"},
        address="人民南路 1 号",
        reporter={"name": "张三", "phone": "13800138000"},
        payload={"ppm": 420, "ok": [1.5, None]},
    )
    bare = canonical.model_dump_json(exclude_none=True).encode()
    envelope = wire.encode(
        type_=wire.TYPE_EVENT, id_="iot:r-1", source="/cityhub/iot", time=canonical.time, data=canonical
    )
    accepted, undecided, fast = DECODER.fast_path(_batch([bare, envelope]), MAX_BYTES, WINDOW)
    assert (accepted, undecided) == ([0, 1], [])
    _assert_conforms([bare, envelope])
    assert fast["location.lon"] == [104.07, 104.07]
    assert fast["time"] == [1_777_593_600_250_000] * 2 and fast["time.utcoffset"] == [28_800, 28_800]
    assert fast["payload"] == ['{"ppm":420,"ok":[1.5,null]}'] * 2


_HEAD = b'{"source":"iot","category":"fire","time":"2026-05-01T08:00:00Z",'
HOSTILE = {  # name: (message, the model's verdict: the kind of its rejection, None when it accepts)
    "truncated UTF-8": (_HEAD + b'"text":"\xe5\xad"}', "not_json"),
    "truncated message": (_HEAD + b'"text":"\xe5\xad', "not_json"),
    "10,000-deep nesting": (_HEAD + b'"payload":{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}}", "not_json"),
    "900 KB payload": (_HEAD + b'"text":"' + b"x" * 900_000 + b'"}', "oversized"),
    "NaN": (_HEAD + b'"location":{"lon":NaN,"lat":1}}', "not_json"),
    "Infinity": (_HEAD + b'"location":{"lon":Infinity,"lat":1}}', "not_json"),
    "number beyond f64": (_HEAD + b'"payload":{"a":1e400}}', "not_json"),
    "lone surrogate": (_HEAD + b'"text":"\\ud800"}', "not_json"),
    "duplicate keys": (_HEAD + b'"category":"lava"}', "unknown_category"),
    "number beyond i64": (_HEAD + b'"payload":{"a":99999999999999999999999}}', None),  # orjson: a float
    "coordinate beyond f64 range": (_HEAD + b'"location":{"lon":1e309,"lat":1}}', "not_json"),
    "coordinate out of range": (_HEAD + b'"location":{"lon":181,"lat":1}}', "coordinates"),
}


@pytest.mark.parametrize(("raw", "verdict"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_is_left_to_the_model_which_gives_its_reason(raw: bytes, verdict: str | None) -> None:
    batch = _batch([raw])
    accepted, undecided, _ = DECODER.fast_path(batch, MAX_BYTES, WINDOW)
    assert (accepted, undecided) == ([], [0])
    decoded = DECODER.decode(batch, MAX_BYTES, WINDOW)
    assert [rejection.kind for rejection in decoded.rejected] == ([verdict] if verdict else [])
    assert all(rejection.reason and rejection.raw == raw for rejection in decoded.rejected)
    assert len(decoded.events) == (0 if verdict else 1)


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


def test_categories_and_default_severities_are_the_taxonomy_s() -> None:
    taxonomy = BUILTIN_TAXONOMY.extended(
        [("test", {"bee_swarm": CategoryInfo(label_zh="蜂群", label_en="Bee swarm", default_severity=Severity.HIGH)})]
    )
    decoder = BatchDecoder(taxonomy=taxonomy)
    head = b'{"source":"iot","time":"2026-05-01T08:00:00Z","category":'
    batch = _batch(
        [head + b'"bee_swarm"}', head + b'"bee_swarm","severity":"low"}', head + b'"lava"}', head + b'"fire"}']
    )
    accepted, undecided, fast = decoder.fast_path(batch, MAX_BYTES, WINDOW)
    assert accepted == [0, 1, 3] and undecided == [2]
    assert fast["severity"] == ["high", "low", "medium"]
    by_model = decode_events(batch, MAX_BYTES, WINDOW, taxonomy)
    assert [e.severity.value for e in by_model.events] == fast["severity"]
    [unknown] = decoder.decode(batch, MAX_BYTES, WINDOW).rejected
    assert unknown.kind == "unknown_category" and "bee_swarm" in unknown.reason


def test_columns_read_back_as_the_events_they_hold() -> None:
    """The adapter for transforms that want models: columns → Event objects → columns, unchanged."""
    payloads = [
        as_json(document)
        for document in (
            {
                "source": "iot",
                "category": "fire",
                "time": "2026-05-01T08:00:00.5+08:00",
                "location": {"lon": 104, "lat": 30.5},
                "reporter": {"name": "张三"},
                "payload": {"a": [1, 2.5, None]},
                "area": {
                    "id": "w",
                    "geometry": {"type": "Point", "coordinates": [104.0, 30.0]},
                    "expires_at": "2026-05-02T00:00:00Z",
                },
            },
            {
                "source": "iot",
                "category": "noise",
                "time": "2026-05-01T00:00:00Z",
                "received_at": "2026-05-01T00:00:01Z",
            },
        )
    ]
    decoded = DECODER.decode(_batch(payloads), MAX_BYTES, WINDOW)
    events = decoded.events.events()
    assert events == decode_events(_batch(payloads), MAX_BYTES, WINDOW).events
    _assert_same_columns(EventColumns.from_events(events, layout()), decoded.events)
    assert orjson.loads(events[0].model_dump_json())["payload"] == {"a": [1, 2.5, None]}


def test_rules_see_each_event_as_it_arrived_whichever_decoder_took_it() -> None:
    """A rule document is the ingest document with the pipeline's fields set: written by the core for what it
    accepted, by orjson for what the model decided (here a repeated name, whose last value orjson keeps)."""
    from hub.pipeline import BatchProcessor, PipelineOptions, PipelineState  # noqa: PLC0415
    from tests.pipeline_support import engines  # noqa: PLC0415

    rule = {"id": "deep", "when": "payload.level >= 3 && grid_ids != ''", "actions": {"severity": "critical"}}
    pipeline_engines = engines([rule])
    head = b'{"source":"iot","category":"fire","time":"2026-05-01T08:00:00Z","location":{"lon":104.0756,"lat":30.5717,"crs":"gcj02"},'
    batch = _batch(
        [
            head + b'"source_event_id":"a","payload":{"level":5}}',
            head + b'"source_event_id":"b","payload":{"level":5,"level":1}}',
            head + b'"source_event_id":"c","payload":{"level":1,"level":5}}',
        ]
    )
    assert DECODER.fast_path(batch, MAX_BYTES, WINDOW)[:2] == ([0], [1, 2])
    result = BatchProcessor(pipeline_engines, PipelineOptions()).process(PipelineState.fresh(pipeline_engines), batch)
    unified = [
        orjson.loads(output.data)["data"] for output in result.outputs if output.subject.startswith("cityhub.events.")
    ]
    assert [(data["source_event_id"], data["severity"]) for data in unified] == [
        ("a", "critical"),
        ("b", "medium"),
        ("c", "critical"),
    ]
