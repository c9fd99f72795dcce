"""A simulated device fleet: a real MQTT 3.1.1 client publishing what field devices publish.

Every registered device sends heartbeats; a scripted round of readings walks through each device type's alarm
and recovery (gas rising to critical, a shed fire, a tilted manhole cover, a hydrant losing pressure, a trapped
elevator passenger, a flapping fire door, video-AI detections), with seeded noise, plus the bad input a real
fleet produces (an unregistered device, a garbled payload)."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import aiomqtt
import orjson

from cityhub_iot_mqtt.registry import Device, load_registry
from cityhub_iot_mqtt.settings import IotMqttSettings
from hub.connector_kit import BrokerAddress, disconnect
from hub.tasks import cancel_and_wait

CHINA_TIME = timezone(timedelta(hours=8))
log = logging.getLogger(__name__)


class IotDeviceSimulator:
    """Publishes device traffic to ``<topic_prefix>/<device_id>/data|heartbeat`` on the broker."""

    def __init__(self, broker: BrokerAddress, settings: IotMqttSettings):
        self.broker = broker
        self.settings = settings
        self.devices: dict[str, Device] = load_registry(settings.registry_path)
        self.rng = random.Random(settings.simulator.seed)
        self._client: aiomqtt.Client | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._sequence = 0

    async def connect(self) -> None:
        """Connect without starting the demo loop (tests drive the traffic themselves)."""
        self._client = self.broker.client(self.settings.simulator.client_id, clean_session=True)
        await self._client.__aenter__()

    async def start(self) -> None:
        """Connect and publish the scripted scenario round after round (``cityhub demo``)."""
        await self.connect()
        self._loop_task = asyncio.create_task(self._demo_loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._loop_task)
        self._loop_task = None
        if self._client is not None:
            await disconnect(self._client, log)
            self._client = None

    async def send(self, device_id: str, **reading: Any) -> None:
        """Publish one data message with a message id and a +08:00 timestamp."""
        self._sequence += 1
        message = {"msg_id": f"{device_id}-{self._sequence}", "ts": datetime.now(CHINA_TIME).isoformat(), **reading}
        await self.send_raw(f"{self.settings.topic_prefix}/{device_id}/data", orjson.dumps(message))

    async def heartbeat(self, device_id: str) -> None:
        await self.send_raw(f"{self.settings.topic_prefix}/{device_id}/heartbeat", b"{}")

    async def send_raw(self, topic: str, payload: bytes) -> None:
        if self._client is None:
            raise RuntimeError("simulator is not connected: call start() or connect() first")
        await self._client.publish(topic, payload, qos=1)

    def _noise(self, spread: float) -> float:
        return round(self.rng.uniform(-spread, spread), 2)

    def scenario(self) -> list[tuple[str, dict[str, Any]]]:
        """One round of readings, (device id, fields), in order; the same seed gives the same round."""
        flapping_door = [("DOOR-QY-0001", {"open": index % 2 == 0, "armed": True}) for index in range(7)]
        return [
            ("GAS-JJ-0001", {"lel_pct": 2.0 + self._noise(0.5)}),
            ("GAS-JJ-0001", {"lel_pct": 23.5 + self._noise(1.0)}),
            ("GAS-JJ-0001", {"lel_pct": 56.0 + self._noise(2.0)}),
            ("GAS-JJ-0001", {"lel_pct": 6.0 + self._noise(1.0)}),
            ("WATER-JJ-0001", {"immersed": True}),
            ("EBIKE-JJ-0001", {"max_temp_c": 38.0 + self._noise(2.0), "fire": False}),
            ("EBIKE-JJ-0001", {"max_temp_c": 96.0 + self._noise(4.0), "fire": True}),
            ("MANHOLE-CH-0001", {"tilt_deg": 22.0 + self._noise(3.0), "displaced": False}),
            ("HYDRANT-CH-0001", {"pressure_mpa": 0.09 + self._noise(0.01)}),
            ("ELEV-QY-0001", {"fault_code": "E01"}),
            ("ELEV-QY-0001", {"fault_code": "0"}),
            *flapping_door,
            (
                "CAM-JJ-0001",
                {
                    "event": "high_altitude_throwing",
                    "confidence": 0.91,
                    "snapshot_url": "https://video.example.cn/snap/CAM-JJ-0001/0001.jpg",
                },
            ),
            (
                "CAM-QY-0001",
                {
                    "event": "stranger",
                    "confidence": 0.87,
                    "subject_id": "WL-2207",
                    "subject_name": "张某",
                    "snapshot_url": "https://video.example.cn/snap/CAM-QY-0001/0001.jpg",
                },
            ),
            ("WATER-JJ-0001", {"immersed": False}),
            ("EBIKE-JJ-0001", {"max_temp_c": 31.0 + self._noise(2.0), "fire": False}),
            ("MANHOLE-CH-0001", {"tilt_deg": 1.0 + abs(self._noise(0.5)), "displaced": False}),
            ("HYDRANT-CH-0001", {"pressure_mpa": 0.31 + self._noise(0.01)}),
        ]

    async def play(self, silent: frozenset[str] = frozenset(), *, bad_input: bool = True) -> None:
        """Heartbeats from every device except ``silent``, then one scenario round, then (unless told not to)
        the bad input a real fleet produces: an unregistered device and a garbled payload."""
        for device_id in self.devices:
            if device_id not in silent:
                await self.heartbeat(device_id)
        for device_id, reading in self.scenario():
            await self.send(device_id, **reading)
        if bad_input:
            await self.send("GAS-XX-9999", lel_pct=12.0)
            await self.send_raw(f"{self.settings.topic_prefix}/GAS-JJ-0002/data", b'{"lel_pct": "high"')

    async def _demo_loop(self) -> None:
        bad_input = True
        while True:
            await self.play(bad_input=bad_input)
            bad_input = False
            await asyncio.sleep(self.settings.simulator.interval_s)
