"""Simulated grid-worker phone apps: one real WebSocket client per worker.

Each app says hello with its token, reports its location (GCJ-02, as Chinese map SDKs on phones give it)
every few seconds, and works the orders pushed to it: after seeded delays it reports accepted, on site and
resolved with a photo reference. Workers listed as unresponsive keep their app on but never accept, which
lets the hub's escalation to the backup worker and the grid leader be seen. Apps reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from cityhub_gridworker.connector import CellRoster, worker_token
from cityhub_gridworker.settings import GridworkerSettings
from hub.backoff import Backoff
from hub.connector_kit import load_records
from hub.tasks import cancel_and_wait

CHINA_TIME = timezone(timedelta(hours=8))
CHENGDU_CENTRE = (104.0665, 30.6595)


class GridWorkerAppSimulator:
    """Runs every simulated worker's app against the connector's WebSocket endpoint."""

    def __init__(self, settings: GridworkerSettings):
        self.settings = settings
        roster = load_records(settings.roster_path, CellRoster, "cell_id")
        everyone = sorted({worker for cell in roster.values() for worker in cell.chain})
        self.workers = settings.simulator.workers or everyone
        self.rng = random.Random(settings.simulator.seed)
        self.url = f"ws://{settings.listen_host}:{settings.listen_port}/"
        self.orders: dict[str, list[dict[str, Any]]] = {worker: [] for worker in self.workers}
        self.connections: dict[str, ClientConnection] = {}
        self.position = {
            w: (CHENGDU_CENTRE[0] + self.rng.uniform(-0.02, 0.02), CHENGDU_CENTRE[1] + self.rng.uniform(-0.02, 0.02))
            for w in self.workers
        }
        self._apps: list[asyncio.Task[None]] = []
        self._work: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def start(self) -> None:
        self._apps = [asyncio.create_task(self._app(worker)) for worker in self.workers]

    async def stop(self) -> None:
        await cancel_and_wait(*self._apps, *self._work.values())
        self._apps.clear()
        self._work.clear()

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until every app has been welcomed by the hub."""
        async with asyncio.timeout(timeout):
            while len(self.connections) < len(self.workers):
                await asyncio.sleep(0.02)

    async def send_raw(self, worker_id: str, message: bytes | str) -> None:
        """Send anything on a worker's live connection (tests of bad input)."""
        await self.connections[worker_id].send(message)

    async def _app(self, worker_id: str) -> None:
        backoff = Backoff(initial_s=0.2, max_s=5.0, rng=random.Random(worker_id))
        while True:
            try:
                async with connect(self.url) as connection:
                    await self._session(worker_id, connection)
            except (OSError, ConnectionClosed, InvalidHandshake):
                self.connections.pop(worker_id, None)
                await backoff.wait()

    async def _session(self, worker_id: str, connection: ClientConnection) -> None:
        token = worker_token(self.settings.secret.get_secret_value(), worker_id)
        await connection.send(orjson.dumps({"type": "hello", "worker_id": worker_id, "token": token}).decode())
        welcome = orjson.loads(await connection.recv())
        if welcome.get("type") != "welcome":
            raise ConnectionClosed(None, None)
        self.connections[worker_id] = connection
        reporter = asyncio.create_task(self._report_location(worker_id, connection))
        try:
            async for raw in connection:
                self._handle(worker_id, connection, orjson.loads(raw))
        finally:
            reporter.cancel()
            self.connections.pop(worker_id, None)

    def _handle(self, worker_id: str, connection: ClientConnection, message: dict[str, Any]) -> None:
        if message["type"] == "order":
            order = message["order"]
            self.orders[worker_id].append(order)
            if worker_id not in self.settings.simulator.unresponsive and (worker_id, order["id"]) not in self._work:
                self._work[(worker_id, order["id"])] = asyncio.create_task(self._work_order(connection, order))
        elif message["type"] == "withdrawn":
            task = self._work.pop((worker_id, message["order_id"]), None)
            if task is not None:
                task.cancel()

    async def _work_order(self, connection: ClientConnection, order: dict[str, Any]) -> None:
        accept_low, accept_high = self.settings.simulator.accept_delay_s
        work_low, work_high = self.settings.simulator.work_delay_s
        await asyncio.sleep(self.rng.uniform(accept_low, accept_high))
        await self._status(connection, order["id"], "accepted")
        await asyncio.sleep(self.rng.uniform(work_low, work_high))
        await self._status(connection, order["id"], "on_site")
        await asyncio.sleep(self.rng.uniform(work_low, work_high))
        photo_bytes = f"photo of {order['id']} after disposal".encode()
        photo = {
            "url": f"https://gridapp.example.cn/photos/{order['id']}/1.jpg",
            "media_type": "image/jpeg",
            "sha256": hashlib.sha256(photo_bytes).hexdigest(),
        }
        await self._status(connection, order["id"], "resolved", note="handled on site", photos=[photo])

    async def _status(self, connection: ClientConnection, order_id: str, status: str, **extra: Any) -> None:
        report = {
            "type": "status",
            "order_id": order_id,
            "status": status,
            "time": datetime.now(CHINA_TIME).isoformat(),
            **extra,
        }
        with contextlib.suppress(ConnectionClosed):
            await connection.send(orjson.dumps(report).decode())

    async def _report_location(self, worker_id: str, connection: ClientConnection) -> None:
        while True:
            lon, lat = self.position[worker_id]
            lon, lat = lon + self.rng.uniform(-0.0005, 0.0005), lat + self.rng.uniform(-0.0005, 0.0005)
            self.position[worker_id] = (lon, lat)
            report = {
                "type": "location",
                "lon": round(lon, 6),
                "lat": round(lat, 6),
                "crs": "gcj02",
                "accuracy_m": 8.0,
                "time": datetime.now(CHINA_TIME).isoformat(),
            }
            await connection.send(orjson.dumps(report).decode())
            await asyncio.sleep(self.settings.simulator.location_interval_s)
