"""Simulated recycling stations: one real MQTT 3.1.1 client per station, as the station controllers are.

Each round every station reports residents' drop-offs (resident id, fraction, weight, carbon-credit points)
and its telemetry: bins fill up a seeded random amount, a bin past 97 % is emptied by the collection truck
(its weight reported as collected), and now and then the compactor jams. Each client leaves a last will of
``offline`` on ``<prefix>/<station_id>/status``, published by the broker if the station drops off the network."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import aiomqtt
import orjson

from cityhub_recycling.connector import Fraction, Station
from cityhub_recycling.settings import RecyclingSettings
from hub.connector_kit import BrokerAddress, disconnect, load_records
from hub.tasks import cancel_and_wait

CHINA_TIME = timezone(timedelta(hours=8))
log = logging.getLogger(__name__)
BIN_CAPACITY_KG = {Fraction.KITCHEN: 120.0, Fraction.RECYCLABLE: 60.0, Fraction.HAZARDOUS: 20.0, Fraction.OTHER: 90.0}
EMPTY_AT_PCT = 97.0


class RecyclingStationSimulator:
    """Publishes telemetry, drop-off and status messages for every station in the registry."""

    def __init__(self, broker: BrokerAddress, settings: RecyclingSettings):
        self.broker = broker
        self.settings = settings
        self.stations: dict[str, Station] = load_records(settings.stations_path, Station, "station_id")
        self.rng = random.Random(settings.simulator.seed)
        self.fill = {sid: {f.value: self.rng.uniform(20, 50) for f in Fraction} for sid in self.stations}
        self._clients: dict[str, aiomqtt.Client] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._sequence = 0

    def _topic(self, station_id: str, kind: str) -> str:
        return f"{self.settings.topic_prefix}/{station_id}/{kind}"

    async def connect(self) -> None:
        """Connect every station's client (tests drive the traffic themselves)."""
        for station_id in self.stations:
            will = aiomqtt.Will(self._topic(station_id, "status"), b"offline", qos=1)
            client = aiomqtt.Client(
                self.broker.host,
                self.broker.port,
                username=self.broker.username,
                password=self.broker.password,
                identifier=f"{self.settings.simulator.client_id}-{station_id}",
                will=will,
                protocol=aiomqtt.ProtocolVersion.V311,
            )
            await client.__aenter__()
            self._clients[station_id] = client
            await client.publish(self._topic(station_id, "status"), b"online", qos=1)

    async def start(self) -> None:
        await self.connect()
        self._loop_task = asyncio.create_task(self._demo_loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._loop_task)
        self._loop_task = None
        for client in self._clients.values():
            await disconnect(client, log)
        self._clients.clear()

    async def send_raw(self, station_id: str, kind: str, payload: bytes) -> None:
        client = self._clients.get(station_id) or next(iter(self._clients.values()), None)
        if client is None:
            raise RuntimeError("simulator is not connected: call start() or connect() first")
        await client.publish(self._topic(station_id, kind), payload, qos=1)

    async def _send(self, station_id: str, kind: str, fields: dict[str, Any]) -> None:
        self._sequence += 1
        message = {"msg_id": f"{station_id}-{self._sequence}", "ts": datetime.now(CHINA_TIME).isoformat(), **fields}
        await self.send_raw(station_id, kind, orjson.dumps(message))

    async def send_telemetry(
        self,
        station_id: str,
        fill_pct: dict[str, float],
        collected_kg: dict[str, float] | None = None,
        faults: list[str] | None = None,
    ) -> None:
        await self._send(
            station_id, "telemetry", {"fill_pct": fill_pct, "collected_kg": collected_kg or {}, "faults": faults or []}
        )

    async def send_drop(self, station_id: str, resident_id: str, fraction: str, weight_kg: float, points: int) -> None:
        await self._send(
            station_id,
            "drop",
            {"resident_id": resident_id, "fraction": fraction, "weight_kg": weight_kg, "points": points},
        )

    async def play_round(self) -> None:
        """One round for every station: a few drop-offs, then telemetry with the bins' new levels."""
        for station_id in self.stations:
            for _ in range(self.rng.randint(1, 4)):
                fraction = self.rng.choice(list(Fraction)).value
                weight = round(self.rng.uniform(0.3, 6.0), 2)
                resident = f"R{self.rng.randint(1, self.settings.simulator.residents):05d}"
                await self.send_drop(station_id, resident, fraction, weight, points=int(weight * 10))
            await self._report_station(station_id)

    async def _report_station(self, station_id: str) -> None:
        collected: dict[str, float] = {}
        for fraction, level in self.fill[station_id].items():
            if level >= EMPTY_AT_PCT:
                collected[fraction] = round(BIN_CAPACITY_KG[Fraction(fraction)] * level / 100, 1)
                level = self.rng.uniform(2, 8)
            self.fill[station_id][fraction] = min(100.0, level + self.rng.uniform(3, 15))
        faults = ["E11"] if self.rng.random() < 0.05 else []
        fill = {fraction: round(level, 1) for fraction, level in self.fill[station_id].items()}
        await self.send_telemetry(station_id, fill, collected, faults)

    async def _demo_loop(self) -> None:
        while True:
            await self.play_round()
            await asyncio.sleep(self.settings.simulator.interval_s)
