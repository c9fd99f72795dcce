"""The pipeline's column path (no model per event) and its model path give the same outputs, byte for
byte, for the same input and state: with rules raising severity and dispatching, the geofence, merging and
the redaction plugin masking, hashing and dropping personal data."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.models import Category, Event, Severity
from hub.pipeline import BatchProcessor, EventTimeWindow, IngestMessage, PipelineOptions, PipelineState
from hub.pipeline.batch_decode import BatchDecoder
from hub.transforms import Stage
from cityhub_redaction.settings import RedactionSettings
from cityhub_redaction.transform import Redaction
from tests.event_documents import as_json
from tests.pipeline_support import INSIDE_GCJ02, T0, engines

POLICIES = {"reporter.name": "mask", "reporter.phone": "hash", "reporter.id_card": "drop", "text": "mask",
            "address": "mask", "payload.contact": "mask", "payload.secret": "drop"}
DECODER, MAX_BYTES = BatchDecoder(), PipelineOptions().max_message_bytes
RULES = [{"id": "gas", "when": 'category == "gas_leak"', "actions": {"severity": "critical", "route": ["gridworker"]}}]

texts = st.sampled_from(["call 13812345678 now", "身份证 510104199001011234", "nothing here", "座机 028-12345678"])
reports = st.fixed_dictionaries({
    "n": st.integers(0, 30),
    "category": st.sampled_from([Category.GAS_LEAK.value, Category.NOISE.value]),
    "seconds": st.integers(0, 600),
    "metres": st.floats(0, 300),
}, optional={
    "status": st.sampled_from(["open", "closed"]),
    "severity": st.sampled_from([s.value for s in Severity]),
    "text": texts,
    "address": st.text(max_size=12),
    "reporter": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["张三", "Jane Roe"]),
                                                    "phone": st.just("13812345678"),
                                                    "id_card": st.just("510104199001011234")}),
    "payload": st.fixed_dictionaries({}, optional={"contact": st.just("13812345678"), "secret": st.just("x"),
                                                   "ppm": st.integers(0, 900) | st.floats(0, 900)}),
    "located": st.booleans(),
})


def _message(seq: int, report: dict) -> IngestMessage:
    document = {"source": "iot", "source_event_id": f"e-{report['n']}", "category": report["category"],
                "time": (T0 + timedelta(seconds=report["seconds"])).isoformat().replace("+00:00", "Z")}
    if report.get("located", True):
        document["location"] = {"lon": INSIDE_GCJ02[0] + report["metres"] / 96_000, "lat": INSIDE_GCJ02[1], "crs": "gcj02"}
    document.update({k: v for k, v in report.items() if k in ("status", "severity", "text", "address", "reporter", "payload")})
    return IngestMessage(seq, "cityhub.ingest.iot", as_json(document), T0.timestamp() + 3600)


def _outputs(batches: list[list[IngestMessage]], columns: bool) -> list[tuple]:
    pipeline_engines = dataclasses.replace(
        engines(RULES), transforms=(("redaction", Redaction(POLICIES, RedactionSettings())),))
    processor = BatchProcessor(pipeline_engines, PipelineOptions())
    if not columns:
        processor._columns_apply = lambda evaluate: False  # type: ignore[method-assign]
    state = PipelineState.fresh(processor.engines)
    return [(m.subject, m.data, m.msg_id, m.headers) for batch in batches for m in processor.process(state, batch).outputs]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(reports, min_size=1, max_size=12), min_size=1, max_size=3))
def test_the_column_path_and_the_model_path_give_the_same_bytes(batches: list[list[dict]]) -> None:
    seq = iter(range(1, 1000))
    messages = [[_message(next(seq), report) for report in batch] for batch in batches]
    assert not any(DECODER.decode(batch, MAX_BYTES, EventTimeWindow())[1] for batch in messages)  # all on columns
    assert _outputs(messages, columns=True) == _outputs(messages, columns=False)


class _Tagging:
    """A third-party transform that knows only Event objects."""

    name, stage, order = "tagging", Stage.TRANSFORM, 0

    def __init__(self) -> None:
        self.seen: list[type] = []

    def apply(self, events: list[Event]) -> list[Event]:
        self.seen += [type(event) for event in events]
        for event in events:
            event.payload["tagged"] = True
        return events


def test_a_transform_that_wants_event_objects_gets_them_and_its_changes_are_published() -> None:
    tagging = _Tagging()
    processor = BatchProcessor(dataclasses.replace(engines(RULES), transforms=(("tagging", tagging),)), PipelineOptions())
    result = processor.process(PipelineState.fresh(processor.engines), [_message(1, {"n": 1, "category": "noise",
                                                                                     "seconds": 0, "metres": 0})])
    assert tagging.seen == [Event]
    [unified] = [m for m in result.outputs if m.subject.startswith("cityhub.events.")]
    assert orjson.loads(unified.data)["data"]["payload"] == {"tagged": True}
