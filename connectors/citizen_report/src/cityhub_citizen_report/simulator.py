"""A simulated phone mini-program: a real HTTP client posting one-tap reports the way ``wx.uploadFile`` does
(multipart/form-data with a ``photo`` file part) or as JSON with a base64 photo. Seeded: the same seed sends the
same reports, with real PNG photos drawn on the fly and GCJ-02 locations in Chengdu."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from hub.connector_kit import send_demo_traffic
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.sim.citizen_report")

# (report type, text, GCJ-02 lng, lat): Chengdu places citizens report from.
SAMPLE_REPORTS: tuple[tuple[str, str, float, float], ...] = (
    # First in every run: the demo's shared scenario, the gas leak at 红星路三段1号 (also a 12345 call and an
    # IoT gas alarm there), in GCJ-02 as the phone's map gives it.
    ("gas", "红星路三段1号楼下燃气味很重，像是漏气了", 104.08403, 30.65470),
    ("gas", "楼道里有很重的燃气味", 104.08116, 30.65716),
    ("garbage", "垃圾桶满了好几天没人清运", 104.04868, 30.64602),
    ("road", "人行道地砖松动，老人容易绊倒", 104.05614, 30.66962),
    ("light", "巷子里的路灯不亮了", 104.10458, 30.66971),
    ("parking", "电动车堵住了消防通道", 104.04491, 30.69534),
    ("flooding", "下雨后路口积水很深", 104.06873, 30.57966),
)


def png_photo(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG file of one colour (8-bit RGB, no interlace), the kind of bytes a phone camera upload carries."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


class CitizenAppSimulator:
    """Posts reports to the connector's intake; :meth:`start` with an interval sends one every few seconds."""

    def __init__(self, url: str, *, seed: int = 6, interval_s: float | None = None, reporters: int = 20):
        self.url = url
        self.rng = random.Random(seed)
        self.interval_s = interval_s
        self.reporters = [f"oWx{seed:02d}{index:04d}" for index in range(reporters)]
        self.sent = 0
        self.responses: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> CitizenAppSimulator:
        if self.interval_s is not None:
            self._task = asyncio.create_task(self._loop(self.interval_s))
        return self

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def sample_report(self, now: datetime | None = None) -> dict[str, Any]:
        """The fields of the next seeded report (photo bytes under ``photo``)."""
        self.sent += 1
        report_type, text, lng, lat = SAMPLE_REPORTS[0] if self.sent == 1 else self.rng.choice(SAMPLE_REPORTS[1:])
        reported_at = (now or datetime.now(UTC)).astimezone(timezone(timedelta(hours=8))).replace(microsecond=0)
        return {
            "report_id": f"r-{self.rng.getrandbits(64):016x}",
            "reporter": self.rng.choice(self.reporters),
            "type": report_type,
            "text": text,
            "lng": round(lng + self.rng.uniform(-2e-4, 2e-4), 6),
            "lat": round(lat + self.rng.uniform(-2e-4, 2e-4), 6),
            "reported_at": reported_at.isoformat(),
            "photo": png_photo(64, 48, (self.rng.randrange(256), self.rng.randrange(256), self.rng.randrange(256))),
        }

    async def send_multipart(
        self, report: dict[str, Any], *, photo_type: str = "image/png", filename: str = "photo.png"
    ) -> httpx.Response:
        """POST a report as multipart/form-data (fields + a ``photo`` file part), like wx.uploadFile."""
        fields = {key: str(value) for key, value in report.items() if key != "photo"}
        files = {"photo": (filename, report["photo"], photo_type)} if report.get("photo") is not None else None
        async with httpx.AsyncClient() as client:
            return await client.post(self.url, data=fields, files=files, timeout=10)

    async def send_json(self, report: dict[str, Any], *, photo_type: str = "image/png") -> httpx.Response:
        """POST a report as JSON with the photo base64-encoded and the location as {lng, lat}."""
        body: dict[str, Any] = {key: value for key, value in report.items() if key not in ("photo", "lng", "lat")}
        body["location"] = {"lng": report["lng"], "lat": report["lat"]}
        if report.get("photo") is not None:
            body["photo"] = {"media_type": photo_type, "data_base64": base64.b64encode(report["photo"]).decode()}
        async with httpx.AsyncClient() as client:
            return await client.post(self.url, json=body, timeout=10)

    async def _loop(self, interval_s: float) -> None:
        """Demo traffic; a report refused with 429 or 503 is kept and sent again on the next tick."""
        await send_demo_traffic(interval_s, self.sample_report, self.send_multipart, self._must_resend, log)

    def _must_resend(self, response: httpx.Response) -> bool:
        self.responses.append(response.status_code)
        return response.status_code in (429, 503)
