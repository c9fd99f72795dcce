"""The citizen-report connector: the mini-program's one-tap report (text, photo, GCJ-02 location) over HTTP."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import time
from collections import deque
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cityhub_citizen_report.settings import CitizenReportSettings
from hub.connector_kit import (
    Connector,
    ConnectorContext,
    HttpServer,
    ServiceArea,
    WebhookRejected,
    describe,
    oversize_summary,
    read_body,
    refuse,
    unavailable,
)
from hub.models import Attachment, Category, CoordSystem, Event, Location, Reporter

PHOTO_PATH = "/photos"
_PHOTO_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp)$")
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
_MEDIA_TYPES = {extension: media for media, extension in _EXTENSIONS.items()}
# Base64 makes a photo a third larger; the rest of a report fits easily in 64 KiB.
_BASE64_GROWTH = 4 / 3
_FIELDS_ALLOWANCE = 64 * 1024


def sniff_media_type(data: bytes) -> str | None:
    """The image type the bytes really are (magic numbers), whatever the sender declared."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class ReportFields(BaseModel):
    """The non-photo fields of a report, whichever encoding carried them."""

    model_config = ConfigDict(extra="ignore")

    reporter: str = Field(min_length=1, max_length=128, description="The reporter's account (mini-program open id).")
    lng: float = Field(ge=-180, le=180, description="GCJ-02 longitude from the phone's map.")
    lat: float = Field(ge=-90, le=90, description="GCJ-02 latitude.")
    report_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: str | None = Field(None, max_length=32)
    text: str | None = None
    reported_at: AwareDatetime | None = None


class Photo(BaseModel):
    data: bytes
    declared_type: str


class RateLimiter:
    """A sliding window per reporter, in memory (a restart forgives everyone). Reporters quiet for a whole
    window are forgotten every ``sweep_every`` calls, so memory follows the active reporters only."""

    def __init__(self, reports: int, window_s: float, sweep_every: int = 1024):
        self.reports = reports
        self.window_s = window_s
        self.sweep_every = sweep_every
        self._sent: dict[str, deque[float]] = {}
        self._calls = 0

    def __len__(self) -> int:
        return len(self._sent)

    def retry_after(self, reporter: str, now: float | None = None) -> float:
        """0 and the report is counted, or the seconds until this reporter may send again."""
        now = time.monotonic() if now is None else now
        self._calls += 1
        if self._calls % self.sweep_every == 0:
            self._sweep(now)
        sent = self._sent.setdefault(reporter, deque())
        while sent and sent[0] <= now - self.window_s:
            sent.popleft()
        if len(sent) >= self.reports:
            return sent[0] + self.window_s - now
        sent.append(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        horizon = now - self.window_s
        self._sent = {reporter: sent for reporter, sent in self._sent.items() if sent and sent[-1] > horizon}


class PhotoStore:
    """Photos kept by content (``<sha256>.<ext>`` in one folder) and served back by the connector."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path_of(self, name: str) -> Path | None:
        return self.folder / name if _PHOTO_NAME.match(name) else None

    async def save(self, data: bytes, media_type: str, base_url: str) -> Attachment:
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest}.{_EXTENSIONS[media_type]}"
        target = self.folder / name
        if not target.exists():
            await asyncio.to_thread(self._write, target, data)
        return Attachment(
            url=f"{base_url}{PHOTO_PATH}/{name}", media_type=media_type, size_bytes=len(data), sha256=digest
        )

    def _write(self, target: Path, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)


async def _replay(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


class CitizenReportConnector(Connector):
    """Takes one-tap reports, stores their photos by reference and publishes them as canonical events."""

    source = "citizen_report"
    settings: CitizenReportSettings

    def __init__(self, settings: CitizenReportSettings, area: ServiceArea | None = None):
        super().__init__(settings)
        self.area = area  # reports outside it are refused (422); None: every location is taken
        self.server: HttpServer | None = None
        self.photos = PhotoStore(settings.photo_dir)
        self.limiter = RateLimiter(settings.rate_limit.reports, settings.rate_limit.window_s)

    @property
    def max_body_bytes(self) -> int:
        return int(self.settings.max_photo_bytes * _BASE64_GROWTH) + _FIELDS_ALLOWANCE

    @property
    def base_url(self) -> str:
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/")
        if self.server is None:
            raise RuntimeError("the report intake is not running")
        return self.server.url

    async def run(self, ctx: ConnectorContext) -> None:
        if self.area is not None:
            await asyncio.to_thread(self.area.load)
        listen = self.settings.listen
        self.server = await HttpServer(self._app(ctx), listen.host, listen.port).start()
        ctx.log.info("citizen reports on %s%s", self.server.url, self.settings.path)
        try:
            await asyncio.Event().wait()
        finally:
            await self.server.stop()

    def _app(self, ctx: ConnectorContext) -> FastAPI:
        app = FastAPI(title="CityHub citizen report intake", docs_url=None, redoc_url=None)

        @app.post(self.settings.path)
        async def receive_report(request: Request) -> Response:
            return await self.receive(ctx, request)

        @app.get(f"{PHOTO_PATH}/{{name}}")
        async def photo(name: str) -> Response:
            path = self.photos.path_of(name)
            if path is None or not path.exists():
                return JSONResponse({"error": f"no photo {name}"}, status_code=404)
            return FileResponse(path, media_type=_MEDIA_TYPES[name.rsplit(".", 1)[1]])

        return app

    async def receive(self, ctx: ConnectorContext, request: Request) -> Response:
        """One report: 201 once its event is stored in JetStream; 4xx (and a DLQ entry) when refused;
        429 past the reporter's rate limit; 503 when the hub cannot store it (the phone retries)."""
        ctx.count("received")
        raw = b""
        try:
            raw = await read_body(request, self.max_body_bytes)
            fields, photo = await self._parse(request.headers, raw)
            photo_type = self._check_photo(photo)
            event_fields = self._check_fields(fields)
            if self.area is not None:
                self.area.check(_location(fields))
        except WebhookRejected as rejection:
            return await refuse(
                ctx, request, rejection, self.settings.dlq_max_bytes, body=self._dlq_bytes(request, raw)
            )
        wait_s = self.limiter.retry_after(fields.reporter)
        if wait_s > 0:
            ctx.count("rate_limited")
            retry = str(max(1, round(wait_s)))
            return JSONResponse(
                {"error": f"too many reports, retry in {retry}s"}, status_code=429, headers={"Retry-After": retry}
            )
        try:
            attachments = [] if photo is None else [await self.photos.save(photo.data, photo_type, self.base_url)]
            event = self._event(fields, event_fields, attachments)
            await ctx.publish(event)
        except Exception as exc:  # disk full, NATS down: the phone keeps the report and retries
            return unavailable(ctx, exc)
        ctx.count("photos" if attachments else "text_only")
        return JSONResponse(
            {"report_id": event.source_event_id, "photos": [a.url for a in attachments]}, status_code=201
        )

    async def _parse(self, headers: Headers, raw: bytes) -> tuple[ReportFields, Photo | None]:
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            return await self._parse_multipart(headers, raw)
        if content_type.startswith("application/json"):
            return self._parse_json(raw)
        raise WebhookRejected(
            415, f"send multipart/form-data or application/json, not {content_type or 'no content type'}"
        )

    async def _parse_multipart(self, headers: Headers, raw: bytes) -> tuple[ReportFields, Photo | None]:
        parser = MultiPartParser(headers, _replay(raw), max_files=1, max_fields=16, max_part_size=_FIELDS_ALLOWANCE)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise WebhookRejected(400, f"malformed multipart body: {exc.message}") from None
        upload = form.get("photo")
        photo = None
        if isinstance(upload, UploadFile):
            photo = Photo(data=await upload.read(), declared_type=upload.content_type or "")
        values = {key: value for key, value in form.items() if isinstance(value, str)}
        return self._fields(values), photo

    def _parse_json(self, raw: bytes) -> tuple[ReportFields, Photo | None]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise WebhookRejected(400, f"body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise WebhookRejected(422, "body must be a JSON object")
        location = body.pop("location", None)
        if isinstance(location, dict):
            body.update({key: location.get(key) for key in ("lng", "lat")})
        photo = None
        encoded = body.pop("photo", None)
        if encoded is not None:
            photo = self._decode_photo(encoded)
        return self._fields(body), photo

    @staticmethod
    def _decode_photo(encoded: Any) -> Photo:
        if not isinstance(encoded, dict) or not isinstance(encoded.get("data_base64"), str):
            raise WebhookRejected(422, "photo must be {media_type, data_base64}")
        try:
            data = base64.b64decode(encoded["data_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected(422, "photo.data_base64 is not valid base64") from None
        return Photo(data=data, declared_type=str(encoded.get("media_type", "")))

    @staticmethod
    def _fields(values: dict[str, Any]) -> ReportFields:
        try:
            return ReportFields.model_validate(values)
        except ValidationError as exc:
            raise WebhookRejected(422, describe(exc)) from None

    def _check_photo(self, photo: Photo | None) -> str:
        """The photo's real media type after the size and type limits (413, 415)."""
        if photo is None:
            return ""
        if len(photo.data) > self.settings.max_photo_bytes:
            raise WebhookRejected(
                413, f"photo of {len(photo.data)} bytes exceeds the limit of {self.settings.max_photo_bytes}"
            )
        sniffed = sniff_media_type(photo.data)
        if sniffed is None or sniffed not in self.settings.photo_types:
            allowed = ", ".join(self.settings.photo_types)
            raise WebhookRejected(415, f"photo is {sniffed or 'not a recognised image'}; accepted: {allowed}")
        if photo.declared_type and photo.declared_type != sniffed:
            raise WebhookRejected(415, f"photo declared as {photo.declared_type} but its bytes are {sniffed}")
        return sniffed

    def _check_fields(self, fields: ReportFields) -> tuple[str, Category]:
        """The report type and its category; 422 for an unknown type or an over-long text."""
        if fields.text is not None and len(fields.text) > self.settings.max_text_chars:
            raise WebhookRejected(
                422, f"text has {len(fields.text)} characters, at most {self.settings.max_text_chars}"
            )
        report_type = fields.type or self.settings.default_type
        category = self.settings.categories.get(report_type)
        if category is None:
            known = ", ".join(sorted(self.settings.categories))
            raise WebhookRejected(422, f"unknown report type {report_type!r}; known: {known}")
        return report_type, category

    def _event(self, fields: ReportFields, typed: tuple[str, Category], attachments: list[Attachment]) -> Event:
        report_type, category = typed
        reported_at = fields.reported_at or datetime.now(UTC)
        return Event(
            source=self.source,
            source_event_id=fields.report_id or _content_id(fields, reported_at, attachments),
            category=category,
            severity=self.settings.severity,
            time=reported_at,
            location=_location(fields),
            reporter=Reporter(account=fields.reporter),
            attachments=attachments,
            text=fields.text or None,
            payload={"channel": "miniprogram", "type": report_type},
        )

    def _dlq_bytes(self, request: Request, raw: bytes) -> bytes:
        """The refused body verbatim when small enough, else a summary (the oversized photo is what was refused)."""
        if 0 < len(raw) <= self.settings.dlq_max_bytes:
            return raw
        return oversize_summary(request, read=len(raw))


def _location(fields: ReportFields) -> Location:
    return Location(lon=fields.lng, lat=fields.lat, crs=CoordSystem.GCJ02)


def _content_id(fields: ReportFields, reported_at: datetime, attachments: list[Attachment]) -> str:
    """An id from the content when the phone sent none, so a resent report is still one report."""
    parts = [fields.reporter, reported_at.isoformat(), f"{fields.lng:.6f},{fields.lat:.6f}", fields.text or ""]
    parts += [a.sha256 or "" for a in attachments]
    return "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
