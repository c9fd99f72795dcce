"""``cityhub demo`` end to end, as a user runs it: the real command in its own process group, read from outside
with nats-py, stopped with a Ctrl-C (SIGINT to the whole group, as a terminal sends it)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest

from hub import topology
from tests.waiting import wait_until

SEVEN_SOURCES = {"hotline12345", "citizen_report", "citybrain", "iot_mqtt", "eldercare", "recycling", "gridworker"}
GAS_SCENARIO_SOURCES = {"iot_mqtt", "hotline12345", "citizen_report"}
GAS_DEVICE = "GAS-JJ-0001"
FLOOD_TITLE = "暴雨内涝预警"  # the storyline's warning (connectors/citybrain/simulator.py STORYLINE_FLOOD)
STORYLINE_ELDER = "E0002"
SHED_DEVICE = "EBIKE-JJ-0001"
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")  # hub.logs' format
WAIT_S = 75.0  # deadlines for a hung demo, not speed targets
STARTUP_WAIT_S = 120.0  # seven connector processes and their simulators start on a machine that may be busy


def _cityhub() -> str:
    beside_python = Path(sys.executable).parent / "cityhub"
    found = str(beside_python) if beside_python.exists() else shutil.which("cityhub")
    if found is None:
        pytest.skip("the cityhub command is not installed (make install)")
    return found


class DemoProcess:
    """``cityhub demo`` in its own session; its output read continuously so the pipe never fills up."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            asyncio.create_task(self._collect(process.stdout, self.stdout)),
            asyncio.create_task(self._collect(process.stderr, self.stderr)),
        ]

    @staticmethod
    async def _collect(stream: asyncio.StreamReader | None, lines: list[str]) -> None:
        assert stream is not None
        async for line in stream:
            lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    async def banner_value(self, label: str) -> str:
        pattern = re.compile(rf"^\s+{label}:\s+(\S+)")
        try:
            async with asyncio.timeout(STARTUP_WAIT_S):
                while not (found := [match for line in self.stdout if (match := pattern.match(line))]):
                    if self.process.returncode is not None:
                        raise AssertionError("the demo exited early:\n" + "\n".join(self.stderr[-30:]))
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError("the demo printed no banner:\n" + "\n".join(self.stderr[-30:])) from None
        return found[0].group(1)

    async def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            async with asyncio.timeout(60):
                returncode = await self.process.wait()
                await asyncio.gather(*self._readers)
        except TimeoutError:
            raise AssertionError("the demo did not stop on Ctrl-C:\n" + "\n".join(self.stderr[-40:])) from None
        return returncode

    async def kill(self) -> None:
        """After a failure: SIGTERM first, so the hub still stops its nats-server (in a session of its own)."""
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await self.process.wait()
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()


class StreamWatch:
    """What the demo's unified stream has shown so far: event and dispatch sources, incidents, orders."""

    def __init__(self) -> None:
        self.sources: set[str] = set()
        self.gas_incident_ids: set[str] = set()
        self.shed_incident_ids: set[str] = set()
        self.sos_incident_ids: set[str] = set()
        self.flood_incident_ids: set[str] = set()
        self.updates: list[dict[str, Any]] = []
        self.incidents: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def on_event(self, message: Any) -> None:
        envelope = orjson.loads(message.data)
        self.sources.add(envelope["data"]["source"])
        event = envelope["data"]
        if event.get("device_id") == GAS_DEVICE:
            self.gas_incident_ids.add(envelope["incidentid"])
        if event.get("device_id") == SHED_DEVICE and event["category"] == "fire":
            self.shed_incident_ids.add(envelope["incidentid"])
        if event["category"] == "elder_sos" and STORYLINE_ELDER in orjson.dumps(event).decode():
            self.sos_incident_ids.add(envelope["incidentid"])
        if event["category"] == "area_warning" and FLOOD_TITLE in orjson.dumps(event).decode():
            self.flood_incident_ids.add(envelope["incidentid"])

    async def on_incident(self, message: Any) -> None:
        data = orjson.loads(message.data)["data"]
        self.incidents[data["id"]] = data  # the latest update of each incident

    async def on_dispatch(self, message: Any) -> None:
        kind, connector = message.subject.split(".")[2:4]
        if kind == "updates":
            self.sources.add(connector)
            self.updates.append(orjson.loads(message.data)["data"])
        else:
            self.orders[connector].append(orjson.loads(message.data)["data"])

    def gas_incident(self) -> dict[str, Any] | None:
        """The incident the gas alarm of GAS-JJ-0001 belongs to, once it has a report from each scenario source."""
        for incident_id in self.gas_incident_ids & self.incidents.keys():
            if GAS_SCENARIO_SOURCES <= set(self.incidents[incident_id]["sources"]):
                return self.incidents[incident_id]
        return None

    def orders_of(self, incident_ids: set[str], connector: str) -> list[dict[str, Any]]:
        return [order for order in self.orders[connector] if order["incident_id"] in incident_ids]

    def storyline_sos_dispatched(self) -> bool:
        """The elder's SOS: an order to the grid worker and a visit order to the eldercare platform."""
        return bool(
            self.orders_of(self.sos_incident_ids, "gridworker") and self.orders_of(self.sos_incident_ids, "eldercare")
        )

    def flood_warning_orders(self) -> list[dict[str, Any]]:
        """The storyline's flood warning: one order per grid it touches."""
        return self.orders_of(self.flood_incident_ids, "gridworker")

    def shed_escalated(self) -> bool:
        """The e-bike shed's order nobody accepts: dispatched again (attempt 2), and moved to the backup worker."""
        orders = self.orders_of(self.shed_incident_ids, "gridworker")
        moved = {u["order_id"] for u in self.updates if u["status"] == "redispatched"}
        return any(o["attempt"] >= 2 for o in orders) and any(o["id"] in moved for o in orders)

    def orders_naming_their_reports(self) -> bool:
        """An order back to the 12345 hotline and a visit order to the eldercare platform, each naming its
        own system's report (the 工单, the alert)."""
        return all(
            any(report["source"] == connector for order in self.orders[connector] for report in order["reports"])
            for connector in ("hotline12345", "eldercare")
        )


async def start_demo(data_dir: Path) -> DemoProcess:
    """``cityhub demo`` with its folder at ``data_dir``; ``--for``: a backstop should the test itself die."""
    process = await asyncio.create_subprocess_exec(
        _cityhub(),
        "demo",
        "--for",
        "280s",
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    return DemoProcess(process)


async def watch_storyline(nats_url: str) -> StreamWatch:
    """Follow the demo's unified stream from its start until every beat of its storyline has shown."""
    watch = StreamWatch()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for subject, handler in (
            (f"{topology.PREFIX}.events.>", watch.on_event),
            (f"{topology.PREFIX}.incidents.>", watch.on_incident),
            (f"{topology.PREFIX}.dispatch.>", watch.on_dispatch),
        ):
            await js.subscribe(subject, cb=handler, ordered_consumer=True)  # from the start of each stream
        await wait_until(
            lambda: SEVEN_SOURCES <= watch.sources,
            f"the demo showing all seven systems (so far: {watch.sources})",
            WAIT_S,
        )
        await wait_until(
            watch.gas_incident, "the gas alarm, the 12345 call and the citizen photo as one incident", WAIT_S
        )
        await wait_until(
            watch.orders_naming_their_reports, "orders to the hotline and eldercare naming their reports", WAIT_S
        )
        await wait_until(
            watch.storyline_sos_dispatched, "the storyline's SOS dispatched to the grid worker and eldercare", WAIT_S
        )
        await wait_until(
            lambda: len({(o["grid_cell"] or {}).get("id") for o in watch.flood_warning_orders()}) >= 2,
            "the storyline's flood warning dispatched to several grids",
            WAIT_S,
        )
        await wait_until(watch.shed_escalated, "the shed's order escalated and moved to the backup worker", WAIT_S)
    finally:
        await nc.close()
    return watch


@pytest.mark.timeout(300)
async def test_demo_shows_all_seven_systems_and_its_storyline_then_stops_on_ctrl_c(tmp_path):
    data_dir = tmp_path / "demo"
    demo = await start_demo(data_dir)
    try:
        nats_url = await demo.banner_value("NATS")
        admin_url = await demo.banner_value("admin API")
        assert nats_url.startswith("nats://127.0.0.1:") and admin_url.startswith("http://127.0.0.1:")
        assert any(line.strip() == f"tap:       cityhub tap --server {nats_url}" for line in demo.stdout)
        assert await demo.banner_value("log") == str(data_dir / "demo.log")

        watch = await watch_storyline(nats_url)
        health = httpx.get(f"{admin_url}/health", timeout=30).json()

        incident = watch.gas_incident()
        assert incident is not None and incident["report_count"] >= 3 and len(incident["sources"]) >= 3
        where = incident["location"]  # 成都市锦江区春熙路街道红星路三段1号, WGS-84 on the unified stream
        assert abs(where["lon"] - 104.0815) < 2e-3 and abs(where["lat"] - 30.6571) < 2e-3
        assert any("[iot_mqtt]" in line for line in demo.stdout) and any("UPDATE" in line for line in demo.stdout)
        assert health["plugins"]["enrichment"]["details"]["contacts"] > 0  # the demo's contact table is loaded
        assert not [line for line in demo.stdout if "Boston" in line or " MA 0" in line]  # Chengdu's calls only
        assert await demo.ctrl_c() == 0
    finally:
        await demo.kill()
    printed = "\n".join(demo.stdout + demo.stderr)
    logged = (data_dir / "demo.log").read_text()
    assert any(map(LOG_RECORD.match, logged.splitlines()))
    assert not any(map(LOG_RECORD.match, demo.stdout + demo.stderr))  # the terminal shows the stream, not the logs
    assert "Traceback" not in printed + logged and " ERROR " not in printed + logged
