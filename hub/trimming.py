"""Trimming an output CloudEvent that would not fit the server's max_payload.

A unified event grows in the pipeline (grid path, rule results, enrichment plugins writing into its
``payload``) and may end above the limit although its input fitted. Rather than losing it, the hub leaves out
its largest optional data fields, one at a time, until it fits, and names each with its size in the
``trimmed`` extension attribute (``payload.responsible (70321 bytes); text (8190 bytes)``). Only fields whose
absence the models allow are left out, so a consumer still validates ``data`` against them; the same input
always trims to the same output, so a re-published output is still a duplicate of the first.
"""

from __future__ import annotations

from typing import Any

import orjson

from hub import wire

EXTENSION = "trimmed"
_EACH_PAYLOAD_KEY = "payload.*"
# Per CloudEvents type: the data fields that may be left out, largest first ("payload.*": each payload entry).
TRIMMABLE: dict[str, tuple[str, ...]] = {
    wire.TYPE_EVENT: (_EACH_PAYLOAD_KEY, "text", "attachments", "reporter", "address", "device_id", "status"),
    wire.TYPE_INCIDENT_PREFIX: ("address", "event_ids"),
    wire.TYPE_DISPATCH_ORDER: ("reports",),
}


def trimmed(raw: bytes, budget: int) -> bytes | None:
    """``raw`` (a structured-mode CloudEvent) in at most ``budget`` bytes: its largest trimmable data fields
    left out and named in the ``trimmed`` extension. None when leaving all of them out is not enough, or when
    ``raw`` is no CloudEvent with a JSON object as data."""
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict):
        return None
    left_out = []
    for path, size in _largest_first(_trimmable(envelope.get("type"), data)):
        _leave_out(data, path)
        left_out.append(f"{path} ({size} bytes)")
        envelope[EXTENSION] = "; ".join(left_out)
        encoded = orjson.dumps(envelope)
        if len(encoded) <= budget:
            return encoded
    return None


def _trimmable(type_: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Each field of ``data`` that may be left out, by its path (``payload.<key>`` for payload entries)."""
    kind = (
        wire.TYPE_INCIDENT_PREFIX if isinstance(type_, str) and type_.startswith(wire.TYPE_INCIDENT_PREFIX) else type_
    )
    fields: dict[str, Any] = {}
    for name in TRIMMABLE.get(kind, ()):
        if name == _EACH_PAYLOAD_KEY:
            payload = data.get("payload")
            if isinstance(payload, dict):
                fields.update((f"payload.{key}", value) for key, value in payload.items())
        elif name in data:
            fields[name] = data[name]
    return fields


def _largest_first(fields: dict[str, Any]) -> list[tuple[str, int]]:
    sizes = [(path, len(orjson.dumps(value))) for path, value in fields.items()]
    return sorted(sizes, key=lambda item: (-item[1], item[0]))


def _leave_out(data: dict[str, Any], path: str) -> None:
    if path.startswith("payload."):
        del data["payload"][path.removeprefix("payload.")]
    else:
        del data[path]
