"""The AsyncAPI document: in sync with the committed copy, consistent in itself, and true to the subjects and
messages the hub actually publishes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from hub import topology, wire
from hub.asyncapi import asyncapi_document, asyncapi_json
from hub.models import Category, Event, IncidentChange, Severity

DOCS = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.json"


def test_committed_document_is_in_sync():
    assert DOCS.read_bytes() == asyncapi_json(), "regenerate with: python -m hub.asyncapi > docs/asyncapi.json"


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(document, ref):
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_reference_resolves_and_every_address_parameter_is_declared():
    document = asyncapi_document()
    for ref in _refs(document):
        assert _resolve(document, ref) is not None, ref
    for name, channel in document["channels"].items():
        assert set(re.findall(r"\{(\w+)\}", channel["address"])) == set(channel["parameters"]), name
    for operation in document["operations"].values():
        assert operation["action"] in ("send", "receive")


@pytest.mark.parametrize(
    ("channel", "subject"),
    [
        ("ingest", topology.ingest_subject("iot_mqtt")),
        ("events", topology.event_subject("510104", "510104001", "gas_leak", "critical")),
        ("incidents", topology.incident_subject("510104", "gas_leak", "opened")),
        ("dispatchOrders", topology.dispatch_order_subject("gridworker")),
        ("dispatchUpdates", topology.dispatch_update_subject("gridworker")),
        ("deadLetters", topology.dlq_subject("hotline_12345")),
    ],
)
def test_channel_addresses_match_the_subject_contract(channel, subject):
    address = asyncapi_document()["channels"][channel]["address"]
    pattern = re.escape(address).replace(r"\{", "{").replace(r"\}", "}")
    assert re.fullmatch(re.sub(r"\{\w+\}", r"[^.]+", pattern), subject)


def test_subject_parameters_list_the_taxonomy():
    channel = asyncapi_document()["channels"]["events"]
    assert channel["parameters"]["category"]["enum"] == [c.value for c in Category]
    assert channel["parameters"]["severity"]["enum"] == [s.value for s in Severity]
    changes = asyncapi_document()["channels"]["incidents"]["parameters"]["change"]["enum"]
    assert changes == [c.value for c in IncidentChange]


def test_envelope_schema_describes_what_the_wire_writes():
    event = Event(source="iot_mqtt", category=Category.GAS_LEAK, time=datetime(2026, 5, 1, tzinfo=UTC))
    envelope = orjson.loads(
        wire.encode(
            type_=wire.TYPE_EVENT,
            id_="e1",
            source="/cityhub/iot_mqtt",
            time=event.time,
            data=event,
            extensions={"category": "gas_leak", "severity": "medium", "incidentid": "INC1", "district": "510104"},
        )
    )
    schema = asyncapi_document()["components"]["schemas"]["EventCloudEvent"]
    assert set(envelope) <= set(schema["properties"])
    assert set(schema["required"]) <= set(envelope)
    assert schema["properties"]["type"]["const"] == envelope["type"]
    data_schema = _resolve(asyncapi_document(), schema["properties"]["data"]["$ref"])
    assert set(envelope["data"]) <= set(data_schema["properties"])
