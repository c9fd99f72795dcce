"""The Rust encoder of unified events (hub.pipeline.batch_encode) writes exactly the bytes of
hub.pipeline.outputs.event_output for the same event, after the stages changed it (id, raised severity,
coordinates converted, grid path, redacted fields)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.models import CoordSystem, Event, GridCell, Severity
from hub.pipeline.batch_decode import BatchDecoder
from hub.pipeline.batch_encode import EventEncoder, grid_path_json
from hub.pipeline.decode import IngestMessage, decode_events
from hub.pipeline.engines import EventTimeWindow
from hub.pipeline.outputs import district_and_street, event_output
from tests.event_documents import as_json, valid_events

RECEIVED = 1_777_593_600.0
DECODER, ENCODER = BatchDecoder(), EventEncoder()

cells = st.builds(GridCell, layer=st.sampled_from(["admin", ""]), level=st.sampled_from(["district", "street", "grid"]),
                  id=st.text(max_size=6), name=st.text(max_size=6), distance_m=st.floats(0, 500))
stage_changes = st.fixed_dictionaries({
    "id": st.text(min_size=1, max_size=26),
    "incident": st.text(min_size=1, max_size=30),
    "severity": st.none() | st.sampled_from(list(Severity)),
    "grid_path": st.lists(cells, max_size=3),
    "wgs84": st.none() | st.tuples(st.floats(-180, 180), st.floats(-90, 90)),
    "text": st.none() | st.text(max_size=20),
})


def _change(event: Event, columns: dict, row: int, change: dict) -> None:
    """What the pipeline's stages do to an event, done to the model and to its columns alike."""
    event.id = columns["id"][row] = change["id"]
    if change["severity"] is not None:
        event.severity = change["severity"]
        columns["severity"][row] = change["severity"].value
    event.grid_path = change["grid_path"]
    columns["grid_path"][row] = grid_path_json(change["grid_path"])
    if change["wgs84"] is not None and event.location is not None:
        event.location.lon, event.location.lat, event.location.crs = *change["wgs84"], CoordSystem.WGS84
        columns["location.lon"][row], columns["location.lat"][row] = change["wgs84"]
        columns["location.crs"][row] = "wgs84"
    if change["text"] is not None:
        event.text = columns["text"][row] = change["text"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(valid_events, stage_changes), min_size=1, max_size=6))
def test_unified_events_are_byte_identical_to_the_python_encoder(batch: list) -> None:
    messages = [IngestMessage(seq, "cityhub.ingest.iot", as_json(event), RECEIVED) for seq, (event, _) in enumerate(batch)]
    columns, _ = DECODER.decode(messages, 256 * 1024, EventTimeWindow())
    events = decode_events([messages[position] for position in columns.positions], 256 * 1024, EventTimeWindow()).events
    expected, places = [], []
    for row, (position, event) in enumerate(zip(columns.positions, events, strict=True)):
        _change(event, columns.columns, row, batch[position][1])
        district, street = district_and_street(event.grid_path)
        cell = event.grid_path[0].id if event.grid_path else None
        places.append((batch[position][1]["incident"], district, street, cell))
        expected.append(event_output(event, batch[position][1]["incident"], district, street))
    incidents, districts, streets, grid_cells = (list(column) for column in zip(*places, strict=True)) if places else ([],) * 4
    encoded = ENCODER.encode(columns.columns, columns.columns["id"], incidents, districts, streets, grid_cells)
    assert [(m.subject, m.data, m.msg_id) for m in encoded] == [(m.subject, m.data, m.msg_id) for m in expected]


def test_a_column_that_is_not_there_is_named() -> None:
    with pytest.raises(ValueError, match="no column \"id\"; give every column the decoder returned"):
        ENCODER.encode({"category": ["fire"], "severity": ["low"]}, ["x"], ["i"], [None], [None], [None])


def test_the_encoded_event_is_a_cloudevent_of_the_event() -> None:
    raw = as_json({"source": "iot", "category": "fire", "time": "2026-05-01T08:00:00+08:00"})
    columns, _ = DECODER.decode([IngestMessage(1, "cityhub.ingest.iot", raw, RECEIVED)], 1024, EventTimeWindow())
    [message] = ENCODER.encode(columns.columns, ["E1"], ["inc-E1"], [None], [None], [None])
    envelope = orjson.loads(message.data)
    assert envelope["time"] == "2026-05-01T08:00:00+08:00" and envelope["incidentid"] == "inc-E1"
    assert Event.model_validate(envelope["data"]).category == "fire"
