"""A simulated city-level platform (城市大脑): an HTTP(S) server that takes the hub's signed incident reports
(signature and timestamp checked, ``Idempotency-Key`` honoured, every report kept in :attr:`reports`) with
switchable outages and slowness, and a client that pushes signed area warnings (GeoJSON polygons) to the hub.

TLS: pass an ``ssl.SSLContext`` holding a server certificate to serve HTTPS (the tests make one at run time
with ``trustme``); without it the simulator serves plain HTTP (the demo)."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hub.connector_kit import IDEMPOTENCY_HEADER, HttpServer, send_demo_traffic
from hub.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, signed_headers, verify
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.sim.citybrain")

INCIDENTS_PATH = "/api/v1/incidents"
# Areas the platform warns about, as (kind, title, WGS-84 centre): Chengdu places that flood or get storms.
SAMPLE_AREAS: tuple[tuple[str, str, float, float], ...] = (
    ("flood", "暴雨内涝预警", 104.0780, 30.6540),
    ("rainstorm", "暴雨预警", 104.0450, 30.6620),
    ("heat", "高温预警", 104.0630, 30.6590),
)
# The demo storyline's warning, the first of every run: a red rainstorm-flooding warning over about 2 km × 2 km of
# 锦江区 around 合江亭, several grids at once.
STORYLINE_FLOOD = ("flood", "暴雨内涝预警", "red", 104.0780, 30.6540, 0.010)


def square(lon: float, lat: float, half_side_deg: float) -> dict[str, Any]:
    """A GeoJSON Polygon: the square of ``2 * half_side_deg`` around a point (closed ring, counter-clockwise)."""
    ring = [
        [lon - half_side_deg, lat - half_side_deg],
        [lon + half_side_deg, lat - half_side_deg],
        [lon + half_side_deg, lat + half_side_deg],
        [lon - half_side_deg, lat + half_side_deg],
        [lon - half_side_deg, lat - half_side_deg],
    ]
    return {"type": "Polygon", "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]]}


class CityPlatformSimulator:
    """The city platform: incident intake server plus area-warning sender."""

    def __init__(
        self,
        *,
        report_secret: str,
        warning_url: str | None = None,
        warning_secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        seed: int = 5,
        warning_interval_s: float | None = None,
    ):
        self.report_secret = report_secret
        self.warning_url = warning_url
        self.warning_secret = warning_secret
        self.rng = random.Random(seed)
        self.warning_interval_s = warning_interval_s
        self.available = True
        self.delay_s = 0.0
        self.reports: list[dict[str, Any]] = []
        self.report_keys: set[str] = set()
        self.attempts = 0
        self.warnings_sent = 0
        self.server = HttpServer(self._app(), host, port, tls=tls)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> CityPlatformSimulator:
        await self.server.start()
        if self.warning_interval_s is not None and self.warning_url is not None:
            self._task = asyncio.create_task(self._warning_loop(self.warning_interval_s))
        log.info("city platform simulator: incident intake at %s", self.incidents_url)
        return self

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.server.stop()

    @property
    def incidents_url(self) -> str:
        return f"{self.server.url}{INCIDENTS_PATH}"

    def _app(self) -> FastAPI:
        app = FastAPI(title="City platform simulator", docs_url=None, redoc_url=None)

        @app.post(INCIDENTS_PATH)
        async def incidents(request: Request) -> Response:
            self.attempts += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if not self.available:
                return JSONResponse({"error": "platform under maintenance (simulated outage)"}, status_code=503)
            return self._record(await request.body(), request.headers)

        return app

    def _record(self, body: bytes, headers: Any) -> Response:
        try:
            verify(
                self.report_secret, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER), body, tolerance_s=300
            )
        except SignatureError as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        key = headers.get(IDEMPOTENCY_HEADER)
        if not key:
            return JSONResponse({"error": f"{IDEMPOTENCY_HEADER} header required"}, status_code=400)
        try:
            report = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return JSONResponse({"error": f"not JSON: {exc}"}, status_code=400)
        if not isinstance(report, dict) or not isinstance(report.get("incident"), dict):
            return JSONResponse({"error": "report must be an object with an incident"}, status_code=422)
        if key in self.report_keys:
            return JSONResponse({"accepted": True, "duplicate": True})
        self.report_keys.add(key)
        self.reports.append(report)
        return JSONResponse({"accepted": True, "duplicate": False}, status_code=201)

    def sample_warning(self, now: datetime | None = None) -> dict[str, Any]:
        """A seeded area warning: a square of 1–3 km around a Chengdu place."""
        kind, title, lon, lat = self.rng.choice(SAMPLE_AREAS)
        level = self.rng.choice(["blue", "yellow", "orange", "red"])
        return self._warning(kind, title, level, square(lon, lat, self.rng.uniform(0.005, 0.015)), now)

    def storyline_warning(self, now: datetime | None = None) -> dict[str, Any]:
        """The demo storyline's flood warning (:data:`STORYLINE_FLOOD`)."""
        kind, title, level, lon, lat, half_side = STORYLINE_FLOOD
        return self._warning(kind, title, level, square(lon, lat, half_side), now)

    def _warning(self, kind: str, title: str, level: str, area: dict[str, Any], now: datetime | None) -> dict[str, Any]:
        self.warnings_sent += 1
        issued = (now or datetime.now(UTC)).astimezone(timezone(timedelta(hours=8))).replace(microsecond=0)
        return {
            "warning_id": f"CB-{issued:%Y%m%d}-{self.warnings_sent:04d}",
            "title": title,
            "message": "请相关网格做好巡查和人员转移准备。",
            "level": level,
            "kind": kind,
            "area": area,
            "issued_at": issued.isoformat(),
            "expires_at": (issued + timedelta(hours=6)).isoformat(),
        }

    async def send_warning(
        self, warning: dict[str, Any] | bytes, *, secret: str | None = None, timestamp: float | None = None
    ) -> httpx.Response:
        """POST one signed warning (or raw bytes, for bad-input tests) to the hub."""
        if self.warning_url is None:
            raise RuntimeError("CityPlatformSimulator.warning_url is not set")
        body = warning if isinstance(warning, bytes) else orjson.dumps(warning)
        headers = {
            "Content-Type": "application/json",
            **signed_headers(secret or self.warning_secret or "", body, timestamp),
        }
        async with httpx.AsyncClient() as client:
            return await client.post(self.warning_url, content=body, headers=headers, timeout=30)

    async def _warning_loop(self, interval_s: float) -> None:
        """Demo traffic: one warning per interval, the storyline's flood warning first; one the hub did not take
        is sent again next time."""
        await send_demo_traffic(
            interval_s, self._next_demo_warning, self.send_warning, lambda response: response.status_code >= 500, log
        )

    def _next_demo_warning(self) -> dict[str, Any]:
        return self.storyline_warning() if self.warnings_sent == 0 else self.sample_warning()
