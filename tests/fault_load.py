"""What the outside world sends in the fault test (tests/test_fault_injection.py): a valid load over a few
sources with adversarial inputs interleaved, each adversarial input with the DLQ kind it must get.

Every message carries a marker of its own (in ``source_event_id``, or in the text of what is not JSON), so
each copy in the unified stream or the DLQ names the input it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from hub import topology
from tests.pipeline_support import INSIDE_GCJ02

SOURCES = ("fault_a", "fault_b", "fault_c")
CATEGORIES = ("gas_leak", "water_leak", "noise", "fire")  # the place decides the category: its reports merge
PLACES_PER_ROW, ROWS = 15, 10  # 150 places 300 m apart, so a few reports per incident in every batch
PLACES = PLACES_PER_ROW * ROWS
PLACE_SPACING_DEG = 0.003
LOAD_SPAN = timedelta(minutes=10)  # valid events happened over the ten minutes before the test


@dataclass(frozen=True)
class Sent:
    """One ingest message as the outside world sends it, with the ``marker`` in its bytes that names it.
    ``msg_id`` None: sent without headers."""

    label: str
    subject: str
    data: bytes
    msg_id: str | None
    marker: str


@dataclass(frozen=True)
class ValidInput(Sent):
    """A valid event: it must be in the unified stream exactly once, under ``key`` (source, source_event_id)."""

    key: tuple[str, str]


@dataclass(frozen=True)
class BadInput(Sent):
    """Adversarial input: it must be in the DLQ exactly once, with one of ``kinds`` and, for ``missing_field``,
    a reason that names ``names_field``."""

    kinds: frozenset[str]
    names_field: str | None = None


@dataclass(frozen=True)
class Shadow(Sent):
    """Other content under the ``key`` of an earlier valid event: with its ``msg_id`` (JetStream must drop it
    as a duplicate) or with a new one (the pipeline's dedup must drop it). The first content must stay."""

    key: tuple[str, str]
    same_msg_id: bool


class Raw:
    """A JSON token written as is (``NaN``, ``Infinity``, bytes that are not UTF-8) where a value goes."""

    def __init__(self, token: bytes):
        self.token = token


@dataclass
class Writer:
    """Writes one event document near ``now`` for ``source``, marked with ``marker``; ``changes`` replace
    fields (None drops one), :class:`Raw` values go in unchanged."""

    marker: str
    source: str
    now: datetime
    place: int = 0

    def fields(self, **changes: Any) -> dict[str, Any]:
        document = event_fields(self.source, self.marker, self.place, self.now)
        document.update(changes)
        return {name: value for name, value in document.items() if value is not None}

    def event(self, **changes: Any) -> bytes:
        raws: list[bytes] = []

        def placeholder(value: Any) -> str:
            if not isinstance(value, Raw):
                raise TypeError(f"cannot write {value!r}")
            raws.append(value.token)
            return f"@raw{len(raws) - 1}@"

        written = orjson.dumps(self.fields(**changes), default=placeholder)
        for index, token in enumerate(raws):
            written = written.replace(f'"@raw{index}@"'.encode(), token)
        return written

    def location(self, **changes: Any) -> dict[str, Any]:
        return {**self.fields()["location"], **changes}


def place_location(place: int) -> dict[str, Any]:
    lon, lat = INSIDE_GCJ02
    column, row = place % PLACES_PER_ROW, place // PLACES_PER_ROW
    return {"lon": lon + column * PLACE_SPACING_DEG, "lat": lat + row * PLACE_SPACING_DEG, "crs": "gcj02"}


def event_fields(source: str, source_event_id: str, place: int, at: datetime) -> dict[str, Any]:
    """A valid event document (source_event_id first, so a cut copy still names it)."""
    return {
        "source_event_id": source_event_id,
        "source": source,
        "category": CATEGORIES[place % len(CATEGORIES)],
        "severity": "medium",
        "time": at.isoformat(),
        "location": place_location(place),
        "payload": {"variant": "original"},
    }


def nested(depth: int) -> Raw:
    return Raw(b"[" * depth + b"]" * depth)


@dataclass(frozen=True)
class Adversary:
    """One kind of adversarial input: the DLQ kinds it must get and how it is written."""

    label: str
    kinds: frozenset[str]
    write: Callable[[Writer], bytes]
    names_field: str | None = None
    copies: int = 3
    headers: bool = True  # sent with a Nats-Msg-Id


NOT_JSON = frozenset({"not_json"})
INVALID = frozenset({"invalid"})
MISSING = frozenset({"missing_field"})
COORDINATES = frozenset({"coordinates"})
UNKNOWN_CATEGORY = frozenset({"unknown_category"})
TIME_OUT_OF_RANGE = frozenset({"time_out_of_range"})
OVERSIZED = frozenset({"oversized"})


def adversaries(max_message_bytes: int, max_payload: int) -> list[Adversary]:
    """Every adversarial input the fault test sends, with the DLQ kind each one must get."""
    return [
        # not JSON (RFC 8259): garbage, a cut document, bytes that are not UTF-8, a BOM, raw control characters,
        # the non-standard NaN / Infinity tokens, a number beyond double range, nesting beyond the parser's limit
        Adversary("not_json", NOT_JSON, lambda w: f"this is not JSON: {w.marker} {{".encode()),
        Adversary("truncated_json", NOT_JSON, lambda w: w.event()[:-25]),
        Adversary("invalid_utf8", NOT_JSON, lambda w: w.event(text=Raw(b'"caf\xe9 \xff\xfe"'))),
        Adversary("utf8_bom", NOT_JSON, lambda w: b"\xef\xbb\xbf" + w.event()),
        Adversary("raw_control_characters", NOT_JSON, lambda w: w.event(text=Raw(b'"bell\x07 escape\x1b[31m"'))),
        Adversary("nan_token", NOT_JSON, lambda w: w.event(location=w.location(lon=Raw(b"NaN")))),
        Adversary("infinity_token", NOT_JSON, lambda w: w.event(location=w.location(lat=Raw(b"Infinity")))),
        Adversary(
            "minus_infinity_token", NOT_JSON, lambda w: w.event(location=w.location(accuracy_m=Raw(b"-Infinity")))
        ),
        Adversary("number_beyond_double", NOT_JSON, lambda w: w.event(location=w.location(lon=Raw(b"1e400")))),
        Adversary("nested_10000_arrays", NOT_JSON, lambda w: w.event(payload={"deep": nested(10_000)})),
        # JSON, but not an event object, or fields of the wrong type
        Adversary("json_array", INVALID, lambda w: b"[" + w.event() + b"]"),
        Adversary("json_string", INVALID, lambda w: orjson.dumps(w.marker)),
        Adversary("severity_number", INVALID, lambda w: w.event(severity=3)),
        Adversary("severity_null", INVALID, lambda w: w.event(severity=Raw(b"null"))),
        Adversary("text_number", INVALID, lambda w: w.event(text=42)),
        Adversary("payload_list", INVALID, lambda w: w.event(payload=[1, 2])),
        Adversary("time_word", INVALID, lambda w: w.event(time="yesterday")),
        Adversary("naive_time", INVALID, lambda w: w.event(time=w.now.replace(tzinfo=None).isoformat())),
        Adversary("unknown_field", INVALID, lambda w: w.event(colour="red")),
        Adversary("source_control_characters", INVALID, lambda w: w.event(source=w.source + "\r\n")),
        Adversary("source_event_id_too_long", INVALID, lambda w: w.event(source_event_id=w.marker + "x" * 300)),
        Adversary(
            "cloudevent_of_another_type",
            INVALID,
            lambda w: orjson.dumps(
                {
                    "specversion": "1.0",
                    "type": "com.example.other",
                    "source": "/outside",
                    "id": w.marker,
                    "data": w.fields(),
                }
            ),
        ),
        # a number where a time goes: epoch seconds, 1970 (old beyond any window, or refused as the wrong type)
        Adversary("time_epoch_number", frozenset({"time_out_of_range", "invalid"}), lambda w: w.event(time=12345)),
        Adversary("missing_category", MISSING, lambda w: w.event(category=None), names_field="category"),
        Adversary("missing_time", MISSING, lambda w: w.event(time=None), names_field="time"),
        Adversary("missing_source", MISSING, lambda w: w.event(source=None), names_field="source"),
        Adversary("lat_95", COORDINATES, lambda w: w.event(location=w.location(lat=95.0))),
        Adversary("lon_minus_181", COORDINATES, lambda w: w.event(location=w.location(lon=-181.0))),
        Adversary("lon_nan_string", COORDINATES, lambda w: w.event(location=w.location(lon="NaN"))),
        Adversary("location_list", COORDINATES, lambda w: w.event(location=[104.07, 30.57])),
        Adversary("unknown_category", UNKNOWN_CATEGORY, lambda w: w.event(category="ufo_sighting")),
        Adversary("category_control_characters", UNKNOWN_CATEGORY, lambda w: w.event(category="fire\n\x00")),
        Adversary(
            "source_mismatch",
            frozenset({"source_mismatch"}),
            lambda w: w.event(source=SOURCES[(SOURCES.index(w.source) + 1) % len(SOURCES)]),
        ),
        # times an outside clock can send: far future and far past in several offsets, a day or more off
        Adversary("time_9999_minus_8h", TIME_OUT_OF_RANGE, lambda w: w.event(time="9999-12-31T23:59:59.999-08:00")),
        Adversary("time_9999_utc", TIME_OUT_OF_RANGE, lambda w: w.event(time="9999-12-31T23:59:59Z")),
        Adversary("time_9999_plus_14h", TIME_OUT_OF_RANGE, lambda w: w.event(time="9999-12-31T23:59:59+14:00")),
        Adversary("time_0001_plus_1h", TIME_OUT_OF_RANGE, lambda w: w.event(time="0001-01-01T00:00:00+01:00")),
        Adversary("time_0001_utc", TIME_OUT_OF_RANGE, lambda w: w.event(time="0001-01-01T00:00:00Z")),
        Adversary("time_1900_plus_8h", TIME_OUT_OF_RANGE, lambda w: w.event(time="1900-01-01T00:00:00+08:00")),
        Adversary(
            "time_two_days_ahead", TIME_OUT_OF_RANGE, lambda w: w.event(time=(w.now + timedelta(days=2)).isoformat())
        ),
        Adversary(
            "time_400_days_old", TIME_OUT_OF_RANGE, lambda w: w.event(time=(w.now - timedelta(days=400)).isoformat())
        ),
        # JSON the parser takes but that is too deep to encode again: poison for whatever re-encodes the event
        # (internal_error, the contract's kind for an input that raises), unless validation bounds the depth
        Adversary(
            "nested_300_arrays",
            frozenset({"internal_error", "invalid"}),
            lambda w: w.event(payload={"deep": nested(300)}),
        ),
        Adversary("over_message_limit", OVERSIZED, lambda w: padded(w, max_message_bytes + 1000), copies=2),
        # fits the server's limit (sent without headers, which count too); the DLQ copy with its headers cannot
        Adversary("near_max_payload", OVERSIZED, lambda w: padded(w, max_payload - 4), copies=1, headers=False),
    ]


def padded(writer: Writer, size: int) -> bytes:
    """An event document of exactly ``size`` bytes (a long payload string)."""
    bare = writer.event(payload={"pad": ""})
    return writer.event(payload={"pad": "x" * (size - len(bare))})


def valid_specials(writer_for: Callable[[str], Writer], now: datetime) -> list[tuple[str, Writer, dict[str, Any]]]:
    """Valid events at the edges: control characters in strings (JSON-escaped), times near now in the
    extreme offsets, nesting the whole pipeline can take, the longest text."""
    specials: list[tuple[str, Writer, dict[str, Any]]] = []
    for copy in range(2):
        specials += [
            (
                "control_characters",
                writer_for(f"ok-ctl-{copy}\r\n\x00\x1b[2J"),
                {"text": "line\r\n2026-12-06 ERROR forged log line\x1b[31m\x00\u2028", "address": "tab\there\x7f"},
            ),
            ("offset_plus_14h", writer_for(f"ok-plus14-{copy}"), {"time": in_offset(now, hours=14)}),
            ("offset_minus_12h", writer_for(f"ok-minus12-{copy}"), {"time": in_offset(now, hours=-12)}),
            (
                "nested_100_arrays",
                writer_for(f"ok-nested-{copy}"),
                {"payload": {"variant": "original", "deep": nested(100)}},
            ),
            ("longest_text", writer_for(f"ok-text-{copy}"), {"text": "界" * 8192}),
        ]
    return specials


def in_offset(moment: datetime, hours: int) -> str:
    return moment.astimezone(timezone(timedelta(hours=hours))).isoformat()


@dataclass
class FaultLoad:
    """The valid events (the load and its edge cases), the adversarial inputs and the shadows, and the order
    they are sent in."""

    valid: list[ValidInput] = field(default_factory=list)
    bad: list[BadInput] = field(default_factory=list)
    shadows: list[Shadow] = field(default_factory=list)
    order: list[Sent] = field(default_factory=list)

    @classmethod
    def build(cls, now: datetime, count: int, max_payload: int, max_message_bytes: int) -> FaultLoad:
        """``count`` valid events that happened over :data:`LOAD_SPAN` before ``now``, with the valid edge
        cases, the adversarial inputs (first copies of every kind, then the second copies, ...) and a shadow
        after every 500th valid event spread evenly among them."""
        load = cls()
        start = now - LOAD_SPAN
        for n in range(count):
            writer = Writer(f"ok-{n}", SOURCES[n % len(SOURCES)], start + LOAD_SPAN * n / count, n % PLACES)
            load.valid.append(valid_input("valid", writer))
        edges = [
            valid_input(label, writer, **changes)
            for label, writer, changes in valid_specials(lambda marker: Writer(marker, SOURCES[0], now, place=7), now)
        ]
        kinds = adversaries(max_message_bytes, max_payload)
        for copy in range(max(adversary.copies for adversary in kinds)):
            for adversary in kinds:
                if copy < adversary.copies:
                    source = SOURCES[copy % len(SOURCES)]
                    load.bad.append(bad_input(adversary, Writer(f"bad-{adversary.label}-{copy}", source, now)))
        load.shadows = [shadow for original in load.valid[::500] for shadow in shadows_of(original, now)]
        load.order = interleaved(load.valid, [*edges, *load.bad, *load.shadows])
        load.valid += edges
        return load

    def early(self, count: int) -> list[ValidInput]:
        """The first ``count`` valid events sent."""
        return [sent for sent in self.order if isinstance(sent, ValidInput)][:count]


def valid_input(label: str, writer: Writer, **changes: Any) -> ValidInput:
    data = writer.event(**changes)
    safe_id = writer.marker.encode("unicode_escape").decode()  # a header value holds no CR/LF
    return ValidInput(
        label,
        topology.ingest_subject(writer.source),
        data,
        f"{writer.source}:{safe_id}",
        writer.marker,
        (writer.source, writer.marker),
    )


def bad_input(adversary: Adversary, writer: Writer) -> BadInput:
    msg_id = f"{writer.source}:{writer.marker}" if adversary.headers else None
    return BadInput(
        adversary.label,
        topology.ingest_subject(writer.source),
        adversary.write(writer),
        msg_id,
        writer.marker,
        adversary.kinds,
        adversary.names_field,
    )


def shadows_of(original: ValidInput, now: datetime) -> list[Shadow]:
    """Other content under ``original``'s key: once with its Nats-Msg-Id, once with a new one."""
    source, source_event_id = original.key
    other = Writer(source_event_id, source, now, place=3).event(payload={"variant": "other"})
    return [
        Shadow(
            "same_msg_id_other_content", original.subject, other, original.msg_id, source_event_id, original.key, True
        ),
        Shadow(
            "same_source_event_id_other_content",
            original.subject,
            other,
            f"{original.msg_id}:again",
            source_event_id,
            original.key,
            False,
        ),
    ]


def interleaved(valid: list[ValidInput], others: list[Sent]) -> list[Sent]:
    """``others`` spread evenly among ``valid``; a shadow right after the input it shadows."""
    shadows_after: dict[tuple[str, str], list[Sent]] = {}
    spread: list[Sent] = []
    for sent in others:
        if isinstance(sent, Shadow):
            shadows_after.setdefault(sent.key, []).append(sent)
        else:
            spread.append(sent)
    step = len(valid) / max(1, len(spread))
    spread_at: dict[int, list[Sent]] = {}
    for index, sent in enumerate(spread):
        spread_at.setdefault(int(index * step), []).append(sent)
    order: list[Sent] = []
    for index, sent in enumerate(valid):
        order += spread_at.get(index, [])
        order.append(sent)
        order += shadows_after.get(sent.key, [])
    return order


def probe(now: datetime) -> ValidInput:
    """A valid event at a place no other event is near: it opens a new incident at the end of the test."""
    return valid_input(
        "dashboard_probe",
        Writer("ok-probe", SOURCES[1], now, place=0),
        location=place_location(0) | {"lon": place_location(0)["lon"] + 0.06, "lat": place_location(0)["lat"] + 0.04},
    )
