"""The AsyncAPI 3.0 document of CityHub's NATS subjects, generated from the pydantic models in
:mod:`hub.models`, the subject contract in :mod:`hub.topology` and the wire format in :mod:`hub.wire`.

The committed copy is ``docs/asyncapi.json`` (a test keeps it equal to this module's output); the dashboard
serves it at ``/asyncapi.json``. Regenerate with ``python -m hub.asyncapi > docs/asyncapi.json``.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

import orjson
from pydantic.json_schema import models_json_schema

from hub import topology, wire
from hub.models import CloseRequest, DispatchOrder, DispatchUpdate, Event, Incident, IncidentChange, Severity
from hub.taxonomy import BUILTIN_TAXONOMY, Taxonomy

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_REF = "#/components/schemas/{model}"

_EXTENSION_DOCS = {
    "category": "Canonical category (same as data.category).",
    "severity": "Canonical severity (same as data.severity).",
    "incidentid": "Id of the incident the event belongs to (set by the pipeline).",
    "district": "District cell id of the location; absent when it resolved to no district.",
    "street": "Street cell id of the location; absent when it resolved to no street.",
    "gridcell": "Most specific admin cell id of the location.",
    "trimmed": "Data fields left out so the message fits the server's max_payload, with their sizes; "
    "absent when nothing was left out.",
    "late": "true on an event received longer than [pipeline.event_time] late_after after its own time, and on the "
    "incident it opened; absent otherwise.",
    "triage": "no_cell on an event that resolved to no grid cell and on its incident's updates: its orders go to "
    "[geo] unplaced_route, not to a grid worker; absent otherwise.",
}
_EXTENSION_TYPES = {"late": "boolean"}


def _parameter(description: str, enum: list[str] | None = None) -> dict[str, Any]:
    parameter: dict[str, Any] = {"description": description}
    if enum:
        parameter["enum"] = enum
    return parameter


def _parameters(taxonomy: Taxonomy) -> dict[str, dict[str, Any]]:
    return {
        "source": _parameter("Source (connector) name: lower-case letters, digits and underscores."),
        "district": _parameter(f"District cell id, or `{topology.NO_CELL}` when the location is in no district."),
        "street": _parameter(f"Street cell id, or `{topology.NO_CELL}` when the location is in no street."),
        "category": _parameter("Canonical category (the hub's taxonomy, hub.taxonomy).", list(taxonomy)),
        "severity": _parameter("Canonical severity, least to most urgent.", [s.value for s in Severity]),
        "change": _parameter("What happened to the incident.", [c.value for c in IncidentChange]),
        "connector": _parameter("Connector that delivers the order to its external system."),
        "rest": _parameter("The rest of the subject: the MQTT topic below the raw prefix, `/` turned into `.`."),
    }


def _envelope(title: str, type_schema: dict[str, Any], data_model: str, extensions: tuple[str, ...]) -> dict[str, Any]:
    """The structured-mode CloudEvent around one model (what a consumer reads off the wire)."""
    properties: dict[str, Any] = {
        "specversion": {"const": wire.SPEC_VERSION},
        "id": {"type": "string", "description": "Unique per message; also the Nats-Msg-Id header."},
        "source": {
            "type": "string",
            "description": (
                f"The system the message came from: {wire.SOURCES_PATH}<source> for what a source system sent (e.g. "
                f"{wire.source_uri('hotline12345')}), {wire.HUB_SOURCE} for what the hub makes (incident changes, "
                "dispatch orders)."
            ),
        },
        "type": type_schema,
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
        "subject": {"type": "string"},
    }
    for name in extensions:
        properties[name] = {"type": _EXTENSION_TYPES.get(name, "string"), "description": _EXTENSION_DOCS[name]}
    properties["data"] = {"$ref": SCHEMA_REF.format(model=data_model)}
    return {
        "title": title,
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": properties,
    }


def _message(
    name: str, title: str, summary: str, payload: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": wire.CONTENT_TYPE,
        "payload": {"$ref": SCHEMA_REF.format(model=payload)},
    }
    if headers:
        message["headers"] = headers
    return message


_MSG_ID_HEADERS = {
    "type": "object",
    "properties": {
        topology.HEADER_MSG_ID: {
            "type": "string",
            "description": "JetStream de-duplication id (drops re-publications).",
        }
    },
}


_DEAD_LETTER_CLOUDEVENT_HEADERS = {
    "ce-specversion": {"const": wire.SPEC_VERSION},
    "ce-id": {"type": "string", "description": "The dead letter's id (dlq:<ingest sequence> from the pipeline)."},
    "ce-source": {"type": "string", "description": "The system whose input was refused: /cityhub/sources/<source>."},
    "ce-type": {"const": wire.TYPE_DEAD_LETTER},
    "content-type": {"const": "application/octet-stream"},
}


def _messages() -> dict[str, Any]:
    dead_letter = _message(
        "deadLetter",
        "Rejected input",
        "The original bytes, unchanged, as a binary-mode CloudEvent (attributes in "
        "ce- headers); why and where in the other headers.",
        "DeadLetter",
        {
            "type": "object",
            "required": ["ce-specversion", "ce-id", "ce-source", "ce-type", topology.HEADER_REASON],
            "properties": {
                **_DEAD_LETTER_CLOUDEVENT_HEADERS,
                topology.HEADER_REASON: {"type": "string", "description": "Why the message was rejected."},
                topology.HEADER_ORIGINAL_SUBJECT: {"type": "string", "description": "Where it was received."},
                topology.HEADER_ORIGINAL_OBJECT: {
                    "type": "string",
                    "description": "<bucket>/<name> of the object store entry holding the original "
                    "bytes when they would not fit with the headers (empty payload).",
                },
                topology.HEADER_ORIGINAL_SIZE: {"type": "string", "description": "Size of that original, in bytes."},
            },
        },
    )
    dead_letter["contentType"] = "application/octet-stream"
    return {
        "ingestEvent": _message(
            "ingestEvent",
            "Canonical event in",
            "An event as a connector publishes it.",
            "IngestCloudEvent",
            _MSG_ID_HEADERS,
        ),
        "unifiedEvent": _message(
            "unifiedEvent",
            "Enriched event",
            "An event with grid path, incident and rules.",
            "EventCloudEvent",
            _MSG_ID_HEADERS,
        ),
        "incident": _message(
            "incident",
            "Incident change",
            "The incident's full state after the change.",
            "IncidentCloudEvent",
            _MSG_ID_HEADERS,
        ),
        "closeRequest": _message(
            "closeRequest",
            "Close an incident",
            "Sent by the hub when an order is resolved, or by ops; a repeated request is dropped.",
            "CloseRequestCloudEvent",
            _MSG_ID_HEADERS,
        ),
        "dispatchOrder": _message(
            "dispatchOrder",
            "Dispatch order",
            "An order to a responsible party.",
            "DispatchOrderCloudEvent",
            _MSG_ID_HEADERS,
        ),
        "dispatchUpdate": _message(
            "dispatchUpdate",
            "Dispatch status update",
            "Reported back by a connector.",
            "DispatchUpdateCloudEvent",
            _MSG_ID_HEADERS,
        ),
        "deadLetter": dead_letter,
        "rawDeviceMessage": {
            "name": "rawDeviceMessage",
            "title": "Raw device message",
            "summary": "What a device published over MQTT, unchanged: not a CloudEvent. The iot_mqtt connector turns "
            "it into events on ingest.",
            "contentType": "application/octet-stream",
            "payload": {"$ref": SCHEMA_REF.format(model="RawDeviceMessage")},
        },
    }


def _channel(
    address: str, description: str, messages: list[str], parameters: list[str], every: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": {message: {"$ref": f"#/components/messages/{message}"} for message in messages},
        "parameters": {name: every[name] for name in parameters},
    }


def _channels(taxonomy: Taxonomy) -> dict[str, Any]:
    p = topology.PREFIX
    every = _parameters(taxonomy)
    return {
        "ingest": _channel(
            f"{p}.ingest.{{source}}",
            "Canonical events in, from connectors or any program, and requests to "
            "close an incident (applied in order with the reports).",
            ["ingestEvent", "closeRequest"],
            ["source"],
            every,
        ),
        "events": _channel(
            f"{p}.events.{{district}}.{{street}}.{{category}}.{{severity}}",
            "The unified stream of enriched events. Subscribe by district, street, category and severity with "
            f"NATS wildcards, e.g. `{p}.events.510108.*.*.critical` or `{p}.events.*.*.gas_leak.>`.",
            ["unifiedEvent"],
            ["district", "street", "category", "severity"],
            every,
        ),
        "incidents": _channel(
            f"{p}.incidents.{{district}}.{{category}}.{{change}}",
            "Incidents opened, merged, updated, escalated and closed.",
            ["incident"],
            ["district", "category", "change"],
            every,
        ),
        "dispatchOrders": _channel(
            f"{p}.dispatch.orders.{{connector}}",
            "Dispatch orders, for the connector that delivers them.",
            ["dispatchOrder"],
            ["connector"],
            every,
        ),
        "dispatchUpdates": _channel(
            f"{p}.dispatch.updates.{{source}}",
            "Dispatch status changes reported back.",
            ["dispatchUpdate"],
            ["source"],
            every,
        ),
        "deadLetters": _channel(
            f"{p}.dlq.{{source}}", "Rejected input with the reason in headers.", ["deadLetter"], ["source"], every
        ),
        "raw": _channel(
            f"{topology.RAW_PREFIX}.{{rest}}",
            f"The one prefix for raw traffic inside `{p}.>`: everything "
            f"else there is a CloudEvent. The embedded server's MQTT maps topic `{topology.RAW_TOPIC_PREFIX}"
            f"/iot/<device>/data` onto `{topology.RAW_PREFIX}.iot.<device>.data`.",
            ["rawDeviceMessage"],
            ["rest"],
            every,
        ),
    }


def _operation(action: str, channel: str, summary: str) -> dict[str, Any]:
    return {"action": action, "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary}


def _operations() -> dict[str, Any]:
    return {
        "receiveIngest": _operation("receive", "ingest", "The pipeline reads canonical events from every source."),
        "sendEvents": _operation("send", "events", "The pipeline publishes each enriched event once."),
        "sendIncidents": _operation("send", "incidents", "The pipeline publishes every incident change."),
        "sendDispatchOrders": _operation("send", "dispatchOrders", "Rules and escalations create dispatch orders."),
        "receiveDispatchUpdates": _operation("receive", "dispatchUpdates", "Connectors report order status back."),
        "sendDeadLetters": _operation("send", "deadLetters", "Input that cannot become an event, with the reason."),
    }


def _schemas(taxonomy: Taxonomy) -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "serialization") for model in (Event, Incident, DispatchOrder, DispatchUpdate, CloseRequest)],
        ref_template=SCHEMA_REF,
    )
    schemas: dict[str, Any] = dict(top["$defs"])
    schemas["Category"] = {
        "title": "Category",
        "type": "string",
        "enum": list(taxonomy),
        "description": "The hub's taxonomy (hub.taxonomy): the built-in categories, those plugins register and "
        "[categories.<name>] of the config; an event of another category goes to the DLQ.",
    }
    for model in ("Event", "Incident", "DispatchOrder"):
        schemas[model]["properties"]["category"] = {"$ref": SCHEMA_REF.format(model="Category")}
    every_extension = wire.EXTENSIONS
    schemas["IngestCloudEvent"] = _envelope(
        "Ingest CloudEvent", {"const": wire.TYPE_EVENT}, "Event", ("category", "severity")
    )
    schemas["EventCloudEvent"] = _envelope("Event CloudEvent", {"const": wire.TYPE_EVENT}, "Event", every_extension)
    schemas["IncidentCloudEvent"] = _envelope(
        "Incident CloudEvent",
        {"enum": [wire.TYPE_INCIDENT_PREFIX + c.value for c in IncidentChange]},
        "Incident",
        every_extension,
    )
    schemas["DispatchOrderCloudEvent"] = _envelope(
        "Dispatch order CloudEvent", {"const": wire.TYPE_DISPATCH_ORDER}, "DispatchOrder", every_extension
    )
    schemas["DispatchUpdateCloudEvent"] = _envelope(
        "Dispatch update CloudEvent", {"const": wire.TYPE_DISPATCH_UPDATE}, "DispatchUpdate", ("incidentid",)
    )
    schemas["CloseRequestCloudEvent"] = _envelope(
        "Close request CloudEvent", {"const": wire.TYPE_CLOSE_REQUEST}, "CloseRequest", ("incidentid",)
    )
    schemas["DeadLetter"] = {"title": "Dead letter", "description": "The rejected message's original bytes."}
    schemas["RawDeviceMessage"] = {"title": "Raw device message", "description": "A device's own bytes."}
    return schemas


@cache
def asyncapi_document(taxonomy: Taxonomy = BUILTIN_TAXONOMY) -> dict[str, Any]:
    """The whole AsyncAPI 3.0 document as a JSON-ready dict; the category enum is ``taxonomy``'s (the running
    hub's at ``/asyncapi.json``, the built-in one in the committed ``docs/asyncapi.json``)."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "CityHub unified stream",
            "version": "0.1.0",
            "description": (
                "Every message is a CloudEvents 1.0 event: in structured JSON mode, except dead letters (binary "
                "mode: the refused bytes with ce- headers) and the raw traffic under "
                f"`{topology.RAW_PREFIX}.>`, which is not CloudEvents. `source` names the system a message came "
                f"from: `{wire.SOURCES_PATH}<source>` for what a source system sent, `{wire.HUB_SOURCE}` for what "
                "the hub makes. CityHub attributes are CloudEvents extension attributes, so consumers filter "
                f"without parsing `data`. Subjects carry cell ids as tokens; `{topology.NO_CELL}` marks a level the "
                "location resolved to no cell on."
            ),
        },
        "defaultContentType": wire.CONTENT_TYPE,
        "servers": {
            "embedded": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The hub's nats-server with JetStream (`cityhub demo` prints the real port).",
            }
        },
        "channels": _channels(taxonomy),
        "operations": _operations(),
        "components": {"messages": _messages(), "schemas": _schemas(taxonomy)},
    }


def asyncapi_json() -> bytes:
    """The document as the committed ``docs/asyncapi.json`` holds it."""
    return orjson.dumps(asyncapi_document(), option=orjson.OPT_INDENT_2) + b"\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(asyncapi_json())
