"""The Rust encoders (hub.pipeline.batch_encode) write exactly the bytes the Python encoders wrote
(tests/reference_outputs.py: an Event model through pydantic and hub.wire, an incident change as a dict through
orjson), for events the model accepts, with what the pipeline stamps on them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.models import GridCell, IncidentChange, Severity, Triage
from hub.pipeline import processor
from hub.pipeline.batch_decode import BatchDecoder
from hub.pipeline.batch_encode import Extension, event_messages, incident_messages
from hub.pipeline.decode import IngestMessage, decode_events
from hub.pipeline.engines import EventTimeWindow
from hub.pipeline.outputs import district_and_street, event_subject, utc
from hub.pipeline.state import IncidentRecord
from tests.event_documents import as_json, events, valid_events
from tests.reference_outputs import closed_output, event_output, incident_update_output

DECODER = BatchDecoder()
WINDOW = EventTimeWindow(accept_out_of_range=True)
RECEIVED = 1_777_593_600.0

cells = st.builds(
    GridCell,
    layer=st.sampled_from(["admin", "overlay"]),
    level=st.sampled_from(["district", "street", "grid"]),
    id=st.text(min_size=1, max_size=6),
    name=st.text(max_size=6),
    distance_m=st.floats(0, 1e4),
)
stamps = st.fixed_dictionaries(
    {
        "id": st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26),
        "received": st.floats(1e9, 2e9),
        "late": st.booleans(),
        "triage": st.booleans(),
        "grid_path": st.lists(cells, max_size=3),
        "incident_id": st.text(min_size=1, max_size=12),
    }
)
records = st.builds(
    IncidentRecord,
    category=st.sampled_from(["gas_leak", "fire"]),
    opened_at=st.floats(0, 2e9),
    severity=st.integers(0, len(Severity) - 1),
    sources=st.lists(st.text(max_size=5), max_size=3),
    dispatched=st.just([]),
    matched_rules=st.lists(st.text(max_size=5), max_size=3),
    reports=st.just([]),
    district=st.none() | st.text(min_size=1, max_size=6),
    report_count=st.integers(0, 9),
    received_at=st.none() | st.floats(0, 2e9),
    late=st.booleans(),
)


def _decoded(documents: list[bytes]):  # noqa: ANN202
    batch = [IngestMessage(n, "cityhub.ingest.iot", raw, RECEIVED) for n, raw in enumerate(documents, 1)]
    return DECODER.decode(batch, 1 << 20, WINDOW).events, decode_events(batch, 1 << 20, WINDOW).events


def _stamped(columns, models, stamp_list) -> None:  # noqa: ANN001 - the pipeline's stages, on both forms
    columns["id"] = [stamp["id"] for stamp in stamp_list]
    columns["received_at"] = [stamp["received"] for stamp in stamp_list]
    columns["received_at.utcoffset"] = [0] * len(stamp_list)
    columns["late"] = [stamp["late"] for stamp in stamp_list]
    columns["triage"] = [Triage.NO_CELL.value if stamp["triage"] else None for stamp in stamp_list]
    columns["grid_path"] = [
        processor._GRID_PATH.dump_json(stamp["grid_path"], exclude_none=True).decode() for stamp in stamp_list
    ]
    for event, stamp in zip(models, stamp_list, strict=True):
        event.id, event.received_at, event.late = stamp["id"], utc(stamp["received"]), stamp["late"]
        event.triage = Triage.NO_CELL if stamp["triage"] else None
        event.grid_path = stamp["grid_path"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(valid_events.map(as_json) | events.map(as_json), min_size=1, max_size=6), st.data())
def test_unified_events_are_byte_identical(documents, data):
    columns, models = _decoded(documents)
    stamp_list = data.draw(st.lists(stamps, min_size=len(models), max_size=len(models)))
    _stamped(columns, models, stamp_list)
    places = [district_and_street(stamp["grid_path"]) for stamp in stamp_list]
    subjects = [event_subject(d, s, e.category, e.severity) for (d, s), e in zip(places, models, strict=True)]
    incident_ids = [stamp["incident_id"] for stamp in stamp_list]
    extensions = [
        Extension("category", columns["category"]),
        Extension("severity", columns["severity"]),
        Extension("incidentid", incident_ids),
        Extension("district", [d for d, _ in places]),
        Extension("street", [s for _, s in places]),
        Extension("gridcell", [stamp["grid_path"][0].id if stamp["grid_path"] else None for stamp in stamp_list]),
        Extension("late", [late or None for late in columns["late"]]),
        Extension("triage", columns["triage"]),
    ]
    encoded = event_messages(columns, subjects, extensions)
    expected = [
        event_output(event, incident_id, d, s)
        for event, incident_id, (d, s) in zip(models, incident_ids, places, strict=True)
    ]
    assert [(m.subject, m.data, m.msg_id) for m in encoded] == [(m.subject, m.data, m.msg_id) for m in expected]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(valid_events.map(as_json) | events.map(as_json), min_size=1, max_size=4), st.data())
def test_incident_changes_are_byte_identical(documents, data):
    columns, models = _decoded(documents)
    stamp_list = data.draw(st.lists(stamps, min_size=len(models), max_size=len(models)))
    _stamped(columns, models, stamp_list)
    changes, expected = [], []
    for row, (event, stamp) in enumerate(zip(models, stamp_list, strict=True)):
        record, count, clock = data.draw(records), data.draw(st.integers(1, 99)), data.draw(st.floats(0, 2e9))
        change = data.draw(st.sampled_from([IncidentChange.OPENED, IncidentChange.MERGED]))
        changes.append(processor._update(record, stamp["incident_id"], change, count, clock, row))
        expected.append(incident_update_output(record, stamp["incident_id"], event, change, count, utc(clock)))
        reason = data.draw(st.text(max_size=20))
        changes.append(processor._closed(record, stamp["incident_id"], clock, reason))
        expected.append(closed_output(record, stamp["incident_id"], utc(clock), reason))
    encoded = incident_messages(changes, columns)
    assert [(m.subject, m.data, m.msg_id) for m in encoded] == [(m.subject, m.data, m.msg_id) for m in expected]


def test_times_the_hub_stamps_round_to_microseconds_as_python_does():
    seconds = [1_777_593_600.1234565, 1_777_593_600.9999995, -0.0000005, 1e-7]
    columns, models = _decoded([as_json({"source": "iot", "category": "fire", "time": "2026-05-01T08:00:00Z"})] * 4)
    columns["received_at"], columns["received_at.utcoffset"] = seconds, [0] * 4
    columns["id"] = ["E"] * 4
    data = [message.data for message in event_messages(columns, ["s"] * 4, [])]
    for raw, at in zip(data, seconds, strict=True):
        assert f'"received_at":"{utc(at).isoformat().replace("+00:00", "Z")}"'.encode() in raw


def test_a_time_no_datetime_can_hold_is_an_error_not_a_panic():
    """A column transform that writes nonsense into a time: the batch raises a ValueError (the pipeline then
    isolates it), never a panic."""
    for received in (1e300, float("nan"), -1e13):
        columns, _ = _decoded([as_json({"source": "iot", "category": "fire", "time": "2026-05-01T08:00:00Z"})])
        columns["received_at"], columns["received_at.utcoffset"], columns["id"] = [received], [0], ["E"]
        with pytest.raises(ValueError, match="received_at"):
            event_messages(columns, ["s"], [])
