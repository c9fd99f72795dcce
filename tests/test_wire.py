from datetime import UTC, datetime

import pytest
from cloudevents.core.formats.json import JSONFormat

from hub import wire
from hub.errors import InvalidEventError
from hub.models import Category, Event, Location


def _event() -> Event:
    return Event(
        source="iot_mqtt",
        source_event_id="dev-1:42",
        category=Category.GAS_LEAK,
        time=datetime(2026, 5, 1, 22, 30, tzinfo=UTC),
        location=Location(lon=104.1, lat=30.67),
        payload={"lel_percent": 27.5},
    )


def test_encoded_event_parses_with_official_sdk():
    raw = wire.encode(
        type_=wire.TYPE_EVENT,
        id_="e1",
        source="/cityhub/iot_mqtt",
        time=_event().time,
        data=_event(),
        extensions={"category": "gas_leak", "severity": "high", "district": "510108", "street": None},
    )
    parsed = JSONFormat().read(None, raw)
    assert parsed.get_type() == "cityhub.event"
    assert parsed.get_extension("district") == "510108"
    assert "street" not in parsed.get_attributes()
    assert parsed.get_data()["payload"] == {"lel_percent": 27.5}
    assert wire.decode(raw)["category"] == "gas_leak"


def test_unknown_extension_is_refused():
    with pytest.raises(ValueError, match="unknown CloudEvents extension"):
        wire.encode(type_=wire.TYPE_EVENT, id_="e1", source="/x", time=_event().time, data={}, extensions={"Bad": "1"})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"\xff\x00", "not JSON"), (b"[1]", "JSON object"), (b'{"id": "1"}', "missing specversion")],
)
def test_decode_names_what_is_wrong(raw, reason):
    with pytest.raises(InvalidEventError, match=reason):
        wire.decode(raw)
