"""A simulated community eldercare platform, on the real protocol in both directions.

* As a client it POSTs signed alerts (SOS, fall, vitals, no activity, gas) to the hub's ``/alerts`` webhook and
  retries with backoff while the hub answers 5xx or cannot be reached, as a platform must not lose an alert.
* As a server (FastAPI on uvicorn) it takes signed visit orders on ``POST /visit-orders`` and, after seeded
  delays, reports their progress (accepted, on site, resolved) to the hub's ``/visit-outcomes``.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cityhub_eldercare.connector import Elder
from cityhub_eldercare.settings import EldercareSettings
from hub.connector_kit import WebhookRejected, load_records, post_signed, serve, signed_body
from hub.tasks import cancel_and_wait

CHINA_TIME = timezone(timedelta(hours=8))
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# The demo storyline's SOS, the first alert of every run: 李建国 (E0002, lives alone) presses his watch's button.
STORYLINE_SOS: tuple[str, str, dict[str, Any]] = ("E0002", "sos", {"device_id": "WATCH-E0002"})


class EldercarePlatformSimulator:
    """Sends alerts to the hub and serves the visit-order API."""

    def __init__(self, settings: EldercareSettings):
        self.settings = settings
        self.secret = settings.secret.get_secret_value()
        self.elders: dict[str, Elder] = load_records(settings.elders_path, Elder, "elder_id")
        self.rng = random.Random(settings.simulator.seed)
        self.hub_url = f"http://{settings.listen_host}:{settings.listen_port}"
        self.visit_orders: list[dict[str, Any]] = []
        self.alerts_sent: dict[str, str] = {}  # alert id → elder id, how the platform finds whom to visit
        self._server: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sequence = 0

    # --- server side ----------------------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI(title="Eldercare platform (simulated)", docs_url=None, redoc_url=None)

        @app.post("/visit-orders")
        async def take_visit_order(request: Request) -> JSONResponse:
            try:
                body = await signed_body(
                    request, secret=self.secret, tolerance_s=self.settings.signature_tolerance_s, max_bytes=65_536
                )
            except WebhookRejected as rejection:
                return JSONResponse({"error": rejection.reason}, status_code=rejection.status)
            order = orjson.loads(body)
            if any(seen["id"] == order["id"] for seen in self.visit_orders):
                return JSONResponse({"visit_id": f"V-{order['id']}", "duplicate": True}, status_code=200)
            alerts = order.get("alert_ids", [])
            order["elder_ids"] = [self.alerts_sent[alert] for alert in alerts if alert in self.alerts_sent]
            self.visit_orders.append(order)
            self._spawn(self._report_progress(order))
            return JSONResponse({"visit_id": f"V-{order['id']}"}, status_code=201)

        return app

    async def start_server(self) -> None:
        """Serve the visit-order API (stop_server() simulates the platform going down)."""
        self._server = asyncio.create_task(serve(self.app(), "127.0.0.1", self.settings.simulator.listen_port))
        await self._wait_listening()

    async def stop_server(self) -> None:
        await cancel_and_wait(self._server)
        self._server = None

    async def _wait_listening(self) -> None:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.settings.simulator.listen_port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return
        raise RuntimeError(f"platform simulator did not listen on {self.settings.simulator.listen_port}")

    async def _report_progress(self, order: dict[str, Any]) -> None:
        low, high = self.settings.simulator.outcome_delay_s
        for status, note in (("accepted", None), ("on_site", None), ("resolved", "elder safe; family informed")):
            await asyncio.sleep(self.rng.uniform(low, high))
            outcome = {
                "order_id": order["id"],
                "incident_id": order["incident_id"],
                "status": status,
                "time": datetime.now(CHINA_TIME).isoformat(),
                "caregiver": "CG-017",
                "note": note,
            }
            await self.post("/visit-outcomes", {key: value for key, value in outcome.items() if value is not None})

    # --- client side ----------------------------------------------------------------------------

    async def post(self, path: str, message: dict[str, Any]) -> httpx.Response:
        """POST a signed JSON message to the hub, retrying with backoff until the hub takes it (or refuses it
        with a 4xx, which retrying cannot fix)."""
        body = orjson.dumps(message)
        backoff = self.settings.backoff.make(random.Random(self.settings.simulator.seed))
        async with httpx.AsyncClient(timeout=self.settings.request_timeout_s) as client:
            while True:
                try:
                    response = await post_signed(client, self.hub_url + path, body, self.secret)
                except httpx.TransportError:
                    await backoff.wait()
                    continue
                if response.status_code not in RETRY_STATUSES:
                    return response
                await backoff.wait()

    async def send_alert(self, elder_id: str, alert_type: str, **fields: Any) -> httpx.Response:
        self._sequence += 1
        alert = {
            "alert_id": f"EC-{self.settings.simulator.seed}-{self._sequence:05d}",
            "type": alert_type,
            "elder_id": elder_id,
            "time": datetime.now(CHINA_TIME).isoformat(),
            **fields,
        }
        self.alerts_sent[alert["alert_id"]] = elder_id
        return await self.post("/alerts", alert)

    def next_alert(self) -> tuple[str, str, dict[str, Any]]:
        """A seeded alert: (elder id, type, type-specific fields)."""
        elder_id = self.rng.choice(sorted(self.elders))
        alert_type = self.rng.choice(["sos", "fall", "vitals", "no_activity", "gas"])
        fields: dict[str, Any] = {"device_id": f"WATCH-{elder_id}"}
        if alert_type == "vitals":
            fields["vitals"] = {
                "heart_rate_bpm": self.rng.choice([38, 72, 142]),
                "spo2_pct": self.rng.choice([84, 88, 97]),
            }
        elif alert_type == "no_activity":
            fields["inactive_hours"] = round(self.rng.uniform(8, 20), 1)
        elif alert_type == "gas":
            fields["gas_lel_pct"] = round(self.rng.uniform(20, 45), 1)
        return elder_id, alert_type, fields

    async def start(self) -> None:
        """Serve visit orders and send an alert every ``interval_s`` (``cityhub demo``): the storyline's SOS
        first, then seeded ones."""
        await self.start_server()
        self._spawn(self._demo_loop())

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        await self.stop_server()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _demo_loop(self) -> None:
        """One alert per interval, the demo storyline's SOS first."""
        elder_id, alert_type, fields = STORYLINE_SOS
        while True:
            await asyncio.sleep(self.settings.simulator.interval_s)
            await self.send_alert(elder_id, alert_type, **fields)
            elder_id, alert_type, fields = self.next_alert()
