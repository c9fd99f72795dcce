"""The wire format: every message CityHub publishes is a CloudEvents 1.0 event in structured JSON mode
(``application/cloudevents+json``), encoded with orjson. CityHub attributes are CloudEvents extension
attributes (lower-case alphanumerics, as the spec requires) so consumers filter without parsing ``data``:

=============  ===========================================================
``category``   canonical category (one of the hub's taxonomy, hub.taxonomy)
``severity``   canonical severity (hub.models.Severity)
``incidentid`` id of the incident the event belongs to
``district``   district cell id of the location (absent when outside)
``street``     street cell id
``gridcell``   most specific admin cell id
``trimmed``    data fields left out to fit the server's max_payload, and their
               sizes (:mod:`hub.trimming`); absent when nothing was left out
``late``       true on an event received long after its own time, and on the
               incident it opened (``[pipeline.event_time] late_after``);
               absent otherwise
``triage``     ``no_cell`` on an event that resolved to no grid cell, and on
               its incident's updates (``[geo] unplaced_route``)
=============  ===========================================================

``type`` says what ``data`` holds: ``cityhub.event`` (hub.models.Event), ``cityhub.incident.<change>``
(hub.models.Incident), ``cityhub.dispatch.order``, ``cityhub.dispatch.update`` and, on ingest,
``cityhub.close_request`` (hub.models.CloseRequest).

``source`` names the system a message came from: ``/cityhub/sources/<source>`` for what a source system sent
(its events in and on the unified stream, its dispatch updates, its dead letters), ``/cityhub/pipeline`` for what
the hub itself makes (incident changes, dispatch orders).

Dead letters keep the rejected bytes unchanged as their payload, so they are CloudEvents in *binary* mode (the
NATS protocol binding): the attributes are ``ce-``-prefixed headers (:func:`dead_letter_headers`), type
``cityhub.dead_letter``. So are the active hub's fence marks (``cityhub.fence.<stream>``, type
``cityhub.fence_mark``, the payload the holder's name; :mod:`hub.availability.fence`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel

from hub.errors import InvalidEventError

CONTENT_TYPE = "application/cloudevents+json"
SPEC_VERSION = "1.0"

TYPE_EVENT = "cityhub.event"
TYPE_INCIDENT_PREFIX = "cityhub.incident."
TYPE_DISPATCH_ORDER = "cityhub.dispatch.order"
TYPE_DISPATCH_UPDATE = "cityhub.dispatch.update"
TYPE_CLOSE_REQUEST = "cityhub.close_request"
TYPE_DEAD_LETTER = "cityhub.dead_letter"
TYPE_FENCE_MARK = "cityhub.fence_mark"
TYPE_LINK = "cityhub.link"  # a cross-scope incident (hub.federation.linking)

HUB_SOURCE = "/cityhub/pipeline"  # the source of what the hub itself makes: incident changes, dispatch orders
SOURCES_PATH = "/cityhub/sources/"

EXTENSIONS = ("category", "severity", "incidentid", "district", "street", "gridcell", "trimmed", "late", "triage")
_EXTENSION_NAMES = frozenset(EXTENSIONS)
_REQUIRED = ("specversion", "id", "source", "type")


def source_uri(source: str) -> str:
    """The CloudEvents ``source`` of what the source system ``source`` sent: ``/cityhub/sources/<source>``."""
    return f"{SOURCES_PATH}{source}"


def binary_mode_headers(id_: str, source: str, type_: str, content_type: str) -> dict[str, str]:
    """The CloudEvents attributes of a message whose payload is not a CloudEvents envelope (binary mode of the
    NATS protocol binding), as NATS headers."""
    return {
        "ce-specversion": SPEC_VERSION,
        "ce-id": id_,
        "ce-source": source,
        "ce-type": type_,
        "content-type": content_type,
    }


def dead_letter_headers(id_: str, source: str) -> dict[str, str]:
    """The binary-mode CloudEvents attributes of a dead letter, as NATS headers; ``source`` is the URI of the
    system whose input was refused (:func:`source_uri`, or :data:`HUB_SOURCE` for the hub's own outputs)."""
    return binary_mode_headers(id_, source, TYPE_DEAD_LETTER, "application/octet-stream")


def encode(
    *,
    type_: str,
    id_: str,
    source: str,
    time: datetime,
    data: BaseModel | dict[str, Any] | bytes,
    subject: str | None = None,
    extensions: dict[str, str | bool | None] | None = None,
) -> bytes:
    """One structured-mode CloudEvent as JSON bytes. Extensions whose value is None are left out; ``data``
    given as bytes must already be JSON."""
    envelope: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": id_,
        "source": source,
        "type": type_,
        "time": time,  # orjson writes RFC 3339, as datetime.isoformat() does, in a third of the time
        "datacontenttype": "application/json",
    }
    if subject:
        envelope["subject"] = subject
    if extensions:
        if not _EXTENSION_NAMES.issuperset(extensions):
            unknown = sorted(set(extensions) - _EXTENSION_NAMES)[0]
            raise ValueError(f"unknown CloudEvents extension {unknown!r}; known: {', '.join(EXTENSIONS)}")
        for name, value in extensions.items():
            if value is not None:
                envelope[name] = value
    envelope["data"] = data if isinstance(data, dict) else orjson.Fragment(_data_json(data))
    return orjson.dumps(envelope)


def _data_json(data: BaseModel | bytes) -> bytes:
    """``data`` as JSON: models through pydantic's own serializer (no intermediate dict), bytes as given."""
    if isinstance(data, BaseModel):
        return data.__pydantic_serializer__.to_json(data, exclude_none=True)
    return data


def decode(raw: bytes) -> dict[str, Any]:
    """Parse a structured-mode CloudEvent; raise InvalidEventError saying what is wrong."""
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise InvalidEventError(f"a CloudEvent must be a JSON object, got {type(envelope).__name__}")
    check_envelope(envelope)
    return envelope


def check_envelope(envelope: dict[str, Any]) -> None:
    """Raise InvalidEventError unless a parsed JSON object has the required CloudEvents attributes."""
    missing = [name for name in _REQUIRED if name not in envelope]
    if missing:
        raise InvalidEventError(f"not a CloudEvent: missing {', '.join(missing)}")
    if envelope["specversion"] != SPEC_VERSION:
        raise InvalidEventError(f"unsupported CloudEvents specversion {envelope['specversion']!r}")
