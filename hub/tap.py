"""``cityhub tap`` and ``cityhub replay``: watch the unified stream live, or read it again from JetStream.

Both select with the subject contract's wildcards (``cityhub.events.<district>.<street>.<category>.<severity>``,
see :mod:`hub.topology`), so filtering happens in the server, and print one human-readable line per event
or, with ``--json``, the raw CloudEvent exactly as published.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, tzinfo

import orjson
from nats.aio.client import Client as NatsClient

from hub import topology, wire
from hub.config import parse_duration
from hub.errors import HubError
from hub.nats.follower import Follower, Start, next_sequence


def events_subject(
    district: str | None = None, street: str | None = None, category: str | None = None, severity: str | None = None
) -> str:
    """The wildcard subject for these filters; a filter left out matches every value of its token."""
    tokens = [topology.token(value) if value else "*" for value in (district, street, category, severity)]
    return f"{topology.PREFIX}.events.{'.'.join(tokens)}"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: a duration back from now (``90s``, ``15m``, ``2h``, ``1d``) or an ISO 8601 time with offset."""
    now = now or datetime.now(UTC)
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        try:
            back = parse_duration(text)
        except ValueError:
            raise HubError(
                f"--since {text!r}: give a duration such as 2h or a time such as 2026-05-01T08:00:00+08:00"
            ) from None
        return now - (back if isinstance(back, timedelta) else timedelta(seconds=float(back)))
    if start.tzinfo is None:
        raise HubError(f"--since {text!r}: add a timezone offset, e.g. {text}+08:00")
    return start


def _shorten(text: str, limit: int = 60) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _when(value: object, zone: tzinfo | None) -> str:
    """An ISO 8601 time as the city reads it: in ``zone`` when given (orders are stamped in UTC, events carry their
    sender's offset), else as written."""
    text = str(value or "")
    if zone is None or not text:
        return text
    try:
        return datetime.fromisoformat(text).astimezone(zone).isoformat(timespec="seconds")
    except ValueError:
        return text


def format_event(raw: bytes, zone: tzinfo | None = None) -> str:
    """One line per unified event: time (in ``zone`` when given), severity, category, grid path, source, address,
    incident, text."""
    try:
        envelope = orjson.loads(raw)
        data = envelope.get("data") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return f"(not a CloudEvent: {_shorten(raw.decode('utf-8', 'replace'))})"
    grid = "/".join(cell.get("name") or cell.get("id", "?") for cell in data.get("grid_path", [])) or "(no cell)"
    parts = [
        _when(data.get("time") or envelope.get("time"), zone),
        str(envelope.get("severity") or data.get("severity", "")).upper().ljust(8),
        str(envelope.get("category") or data.get("category", "")).ljust(16),
        grid,
        f"[{data.get('source', envelope.get('source', '?'))}]",
    ]
    if data.get("address"):
        parts.append(_shorten(data["address"], 40))
    if envelope.get("incidentid"):
        parts.append(f"incident={envelope['incidentid']}")
    if data.get("text"):
        parts.append(f'"{_shorten(data["text"])}"')
    return "  ".join(parts)


def format_dispatch(raw: bytes, zone: tzinfo | None = None) -> str:
    """One line per dispatch order (who must act, through which connector, on whose reports) or status update
    (which connector reported what about which order), its time in ``zone`` when given."""
    try:
        envelope = orjson.loads(raw)
        data = envelope.get("data") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return f"(not a CloudEvent: {_shorten(raw.decode('utf-8', 'replace'))})"
    if envelope.get("type") == wire.TYPE_DISPATCH_ORDER:
        reports = ",".join(sorted({report.get("source", "?") for report in data.get("reports", [])}))
        return (
            f"{_when(data.get('created_at'), zone)}  ORDER     {data.get('target', '?')}"
            f" via [{data.get('connector', '?')}]"
            f"  order={data.get('id', '?')}  reports from {reports or 'none'}"
        )
    reporter = str(envelope.get("source", "?")).rpartition("/")[2]
    parts = [
        _when(data.get("time"), zone),
        "UPDATE   ",
        str(data.get("status", "?")).ljust(16),
        f"[{reporter}]",
        f"order={data.get('order_id', '?')}",
    ]
    if data.get("actor"):
        parts.append(f"by {data['actor']}")
    return "  ".join(parts)


def formatter(as_json: bool) -> Callable[[bytes], str]:
    return (lambda raw: raw.decode("utf-8", "replace")) if as_json else format_event


async def tap(
    nc: NatsClient, subject: str, limit: int | None = None, on_ready: Callable[[], None] | None = None
) -> AsyncIterator[bytes]:
    """Messages stored on ``subject`` from now on, without a gap across NATS restarts (an ephemeral consumer,
    :mod:`hub.nats.follower`); ``on_ready`` is called once the start is fixed, so nothing stored after it is missed."""
    start = Start(seq=await next_sequence(nc, topology.EVENTS_STREAM))
    if on_ready is not None:
        on_ready()
    follower = Follower(nc, topology.EVENTS_STREAM, subject, start, name="tap")
    async with contextlib.aclosing(follower.messages()) as messages:
        seen = 0
        async for message in messages:
            yield message.data
            seen += 1
            if limit is not None and seen >= limit:
                return


async def replay(nc: NatsClient, subject: str, since: datetime, *, follow: bool = False) -> AsyncIterator[bytes]:
    """Stored messages on ``subject`` from ``since`` on; stops once caught up (or, with ``follow``, keeps going
    with new messages, without a gap across NATS restarts: :mod:`hub.nats.follower`)."""
    follower = Follower(nc, topology.EVENTS_STREAM, subject, Start(time=since), name="replay")
    async with contextlib.aclosing(follower.messages(until_caught_up=not follow)) as messages:
        async for message in messages:
            yield message.data
