"""Open311 GeoReport v2: the HTTP client, the incremental cursor and the mapping of a service request to a
canonical event. Reference: https://wiki.open311.org/GeoReport_v2 (``services.json``, ``requests.json``) plus the
widely implemented ``updated_after`` / ``page`` / ``page_size`` extensions for incremental polling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from cityhub_hotline12345.settings import Open311Settings
from hub.connector_kit import describe, event_from
from hub.errors import InvalidEventError
from hub.models import Attachment, Event, Location

SOURCE = "hotline12345"

# Event fields in the Open311 GeoReport v2 names a rejection reason speaks of.
OPEN311_FIELDS = {
    "source_event_id": "service_request_id",
    "time": "requested_datetime",
    "location": "lat/long",
    "text": "description",
    "attachments": "media_url",
}


class Open311Client:
    """Reads ``services.json`` and ``requests.json`` from one GeoReport v2 endpoint."""

    def __init__(self, settings: Open311Settings, http: httpx.AsyncClient):
        self.settings = settings
        self.http = http

    def _params(self, **extra: str | int) -> dict[str, str | int]:
        params: dict[str, str | int] = dict(extra)
        if self.settings.jurisdiction_id:
            params["jurisdiction_id"] = self.settings.jurisdiction_id
        if self.settings.api_key is not None:
            params["api_key"] = self.settings.api_key.get_secret_value()
        return params

    async def _get_list(self, resource: str, params: dict[str, str | int]) -> list[Any]:
        url = f"{self.settings.base_url.rstrip('/')}/{resource}"
        response = await self.http.get(url, params=params, timeout=self.settings.timeout_s)
        response.raise_for_status()
        body = orjson.loads(response.content)
        if not isinstance(body, list):
            raise httpx.DecodingError(f"{url}: expected a JSON array, got {type(body).__name__}")
        return body

    async def services(self) -> list[dict[str, Any]]:
        """GET services.json: the service list (service_code, service_name, group, ...)."""
        return [item for item in await self._get_list("services.json", self._params()) if isinstance(item, dict)]

    async def requests_updated_after(self, after: datetime, page: int, page_size: int) -> list[Any]:
        """GET requests.json for requests updated after ``after``, oldest update first."""
        params = self._params(page=page, page_size=page_size)
        params[self.settings.updated_after_param] = after.isoformat()
        return await self._get_list("requests.json", params)


@dataclass
class Cursor:
    """How far the poller has read: the newest ``updated_datetime`` seen, plus the requests updated within
    ``overlap`` before it, so a re-read of that overlap (needed when several requests share one second, or a
    server commits late) publishes nothing twice. While a poll pages past page 1, ``pinned`` holds the query start
    of that poll (see :func:`pages_from`), so a restart in the middle reads from there again. Stored in the
    connector's state as JSON."""

    updated: datetime
    recent: dict[str, str] = field(default_factory=dict)
    pinned: datetime | None = None
    taken: int = field(default=0, compare=False)

    @classmethod
    def load(cls, raw: bytes | None, start: datetime) -> Cursor:
        if raw is None:
            return cls(updated=start)
        stored = orjson.loads(raw)
        pinned = stored.get("pinned")
        return cls(
            updated=datetime.fromisoformat(stored["updated"]),
            recent=dict(stored["recent"]),
            pinned=datetime.fromisoformat(pinned) if pinned else None,
        )

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "updated": self.updated.isoformat(),
                "recent": self.recent,
                "pinned": self.pinned.isoformat() if self.pinned else None,
            }
        )

    def query_from(self, overlap: timedelta) -> datetime:
        return self.pinned or self.updated - overlap

    def is_new(self, request_id: str, updated: datetime) -> bool:
        return updated > self.updated or self.recent.get(request_id) != updated.isoformat()

    def advance(self, request_id: str, updated: datetime) -> None:
        self.taken += 1
        self.updated = max(self.updated, updated)
        self.recent[request_id] = updated.isoformat()

    def settle(self, overlap: timedelta) -> None:
        """End of a poll: unpin, and forget the requests taken before the overlap window."""
        self.pinned = None
        horizon = self.updated - overlap
        self.recent = {rid: ts for rid, ts in self.recent.items() if datetime.fromisoformat(ts) >= horizon}


async def pages_from(
    fetch: Callable[[datetime, int, int], Awaitable[list[Any]]],
    cursor: Cursor,
    overlap: timedelta,
    page_size: int,
    max_page_size: int,
) -> AsyncIterator[list[Any]]:
    """Pages of requests updated after the cursor, read as the caller takes them and advances the cursor.
    ``fetch(updated_after, page, page_size)`` is one requests.json query.

    Keyset pagination: after a page that brought something new the query starts again from the moved cursor and
    reads page 1, a consistent prefix of the server's order, so a request updated while we page (it moves to the
    end) cannot slip between two pages. A full page with nothing new (more requests inside the overlap window
    than fit a page) is asked again with a doubled page size; only at ``max_page_size`` are page numbers used.
    Then a request that moves to the end while we page shifts the others back by one, and one of them can cross
    to a page already read: so the query start stays pinned and the pages are read again from page 1 until a
    whole pass brings nothing new. Ends after a short page of a quiet pass."""
    size, page, start = page_size, 1, cursor.query_from(overlap)
    taken_in_pass = False
    while True:
        taken_before = cursor.taken
        records = await fetch(start, page, size)
        yield records
        took = cursor.taken != taken_before
        taken_in_pass |= took
        if len(records) < size:
            if not (cursor.pinned and taken_in_pass):
                cursor.settle(overlap)
                return
            size, page, taken_in_pass = page_size, 1, False
        elif took and not cursor.pinned:
            size, start, taken_in_pass = page_size, cursor.query_from(overlap), False
        elif page == 1 and size < max_page_size:
            size = min(2 * size, max_page_size)
        else:
            page, cursor.pinned = page + 1, start


def parse_time(record: dict[str, Any], name: str) -> datetime:
    """A GeoReport v2 datetime (ISO 8601 with offset); a missing offset is an error, not a guess."""
    value = record.get(name)
    if not isinstance(value, str):
        raise InvalidEventError(f"{name} missing or not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEventError(f"{name} is not ISO 8601: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise InvalidEventError(f"{name} has no UTC offset: {value[:40]!r}")
    return parsed


def request_id(record: Any) -> str:
    if not isinstance(record, dict):
        raise InvalidEventError(f"a service request must be a JSON object, got {type(record).__name__}")
    value = record.get("service_request_id")
    if value is None or value == "":
        raise InvalidEventError("service_request_id missing")
    return str(value)


def _location(record: dict[str, Any], settings: Open311Settings) -> Location | None:
    lat, lon = record.get("lat"), record.get("long")
    if lat is None or lon is None:
        return None
    try:
        return Location(lon=float(lon), lat=float(lat), crs=settings.crs)
    except ValidationError as exc:
        raise InvalidEventError(f"lat/long out of range: {describe(exc)}") from None
    except (TypeError, ValueError):
        raise InvalidEventError(f"lat/long are not numbers: {lat!r}, {lon!r}") from None


def _attachments(media: Any) -> list[Attachment]:
    """``media_url`` is one URL in the spec; some servers (Boston) send a list of {url, ...}."""
    urls: list[str] = []
    if isinstance(media, str) and media.strip():
        urls.append(media.strip())
    elif isinstance(media, list):
        urls.extend(item["url"] for item in media if isinstance(item, dict) and isinstance(item.get("url"), str))
    return [Attachment(url=url, media_type="image/*") for url in urls]


_PAYLOAD_FIELDS = ("service_code", "service_name", "status_notes", "agency_responsible", "service_notice", "zipcode")


def request_to_event(record: Any, settings: Open311Settings) -> Event:
    """Map one GeoReport v2 service request to a canonical event; raise InvalidEventError saying why not.

    Every version of a request has ``source_event_id = "open311:<service_request_id>"`` and ``status`` set to
    the request's status, so a status change is the same report in a new state (see docs/connectors/hotline12345.md).
    """
    rid = request_id(record)
    code = record.get("service_code")
    category = settings.service_categories.get(str(code)) if code is not None else None
    if category is None:
        raise InvalidEventError(
            f"service_code {code!r} of request {rid} has no category mapping in open311.service_categories"
        )
    status = record.get("status")
    if not isinstance(status, str) or not status:
        raise InvalidEventError(f"status of request {rid} missing")
    payload = {name: record[name] for name in _PAYLOAD_FIELDS if record.get(name) not in (None, "")}
    payload["channel"] = "open311"
    payload["updated_datetime"] = parse_time(record, "updated_datetime").isoformat()
    if record.get("expected_datetime"):
        payload["expected_datetime"] = parse_time(record, "expected_datetime").isoformat()
    description = record.get("description")
    return event_from(
        OPEN311_FIELDS,
        what=f"request {rid}",
        source=SOURCE,
        source_event_id=f"open311:{rid}",
        category=category,
        severity=settings.service_severities.get(str(code), settings.severity),
        time=parse_time(record, "requested_datetime"),
        location=_location(record, settings),
        address=record.get("address") or None,
        text=description if isinstance(description, str) and description else None,
        attachments=_attachments(record.get("media_url")),
        payload=payload,
        status=status.lower(),
    )
