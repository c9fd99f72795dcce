"""Contract tests of the recycling connector: simulated station controllers publish over a real MQTT broker,
the connector runs on the real NATS runtime."""

from __future__ import annotations

import orjson
import pytest

from cityhub_recycling import RecyclingConnector, RecyclingSettings, RecyclingStationSimulator
from hub.backoff import BackoffSettings
from hub.connector_kit.mqtt import parse_broker_url
from hub.connector_runtime import running_connector
from hub.nats.embedded import EmbeddedNats
from hub.testing import dead_letters, ingested, wiretap
from tests.waiting import wait_until

FAST = BackoffSettings(initial_s=0.05, max_s=0.5)
STATION = "RS-JJ-001"


@pytest.fixture
def settings(mqtt_broker: EmbeddedNats) -> RecyclingSettings:
    return RecyclingSettings(broker_url=f"mqtt://127.0.0.1:{mqtt_broker.mqtt_port}", check_interval_s=0.1, backoff=FAST)


@pytest.fixture
async def stations(settings: RecyclingSettings):
    simulator = RecyclingStationSimulator(parse_broker_url(settings.broker_url or ""), settings)
    yield simulator
    await simulator.stop()


def _connector(settings: RecyclingSettings) -> RecyclingConnector:
    return RecyclingConnector(settings, parse_broker_url(settings.broker_url or ""))


async def test_one_full_bin_is_one_event_thanks_to_hysteresis(settings, stations, nats_url):
    async with running_connector(_connector(settings), nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        await stations.connect()
        for level in (85.0, 91.0, 93.0, 88.0, 95.0, 70.0, 40.0, 65.0, 92.0):
            await stations.send_telemetry(STATION, {"kitchen": level})
        await wait_until(lambda: ctx.counters["bins_full"] >= 2)

    events = await ingested(nats_url, "recycling")
    assert [(e["source_event_id"], e["status"]) for e in events] == [
        ("RS-JJ-001:kitchen:1:full", "full"),
        ("RS-JJ-001:kitchen:1:recovered", "recovered"),
        ("RS-JJ-001:kitchen:2:full", "full"),
    ]
    full = events[0]
    assert full["category"] == "bin_full" and full["device_id"] == STATION
    assert full["payload"]["fill_pct"] == 91.0 and full["payload"]["full_pct"] == 90.0
    assert full["location"]["crs"] == "wgs84" and full["address"].startswith("成都市锦江区")


async def test_credit_points_are_summed_per_station_and_day_and_no_resident_id_reaches_nats(
    settings, stations, nats_url
):
    async with wiretap(nats_url) as seen:
        connector = _connector(settings)
        async with running_connector(connector, nats_url) as ctx:
            await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
            await stations.connect()
            await stations.send_drop(STATION, "R00007", "recyclable", 2.5, 25)
            await stations.send_drop(STATION, "R00008", "kitchen", 1.25, 12)
            await stations.send_drop(STATION, "R00007", "recyclable", 0.5, 5)
            await stations.send_raw(STATION, "drop", b'{"resident_id": "R00009", "fraction": "glass"}')
            await stations.send_raw(STATION, "drop", b"R00010;kitchen;1.0")
            await stations.send_telemetry(STATION, {"kitchen": 99.0, "other": 20.0}, collected_kg={"other": 45.5})
            await wait_until(
                lambda: ctx.counters["drops"] >= 3 and ctx.counters["rejected"] >= 2 and ctx.counters["bins_full"] >= 1
            )
            health = connector.health()
            saved = await ctx.state.get("stations")

    day = health["daily"][STATION]
    assert day == {
        "drops": 3,
        "credit_points": 42,
        "dropped_kg": {"recyclable": 3.0, "kitchen": 1.25},
        "collected_kg": {"other": 45.5},
        "full_bins": 1,
        "faults": 0,
    }
    assert saved is not None and orjson.loads(saved)["daily"][health["day"]][STATION]["credit_points"] == 42
    assert seen, "the wiretap saw the connector's traffic"
    leaks = [message for message in seen if b"R0000" in message or b"R00010" in message]
    assert leaks == []
    masked, withheld = (data for data, _ in await dead_letters(nats_url, "recycling"))
    assert orjson.loads(masked)["resident_id"] == "***"
    assert orjson.loads(withheld)["withheld"] == "unparseable drop record"


async def test_faults_offline_and_unknown_stations(settings, stations, nats_url):
    async with running_connector(_connector(settings), nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        await stations.connect()
        await stations.send_telemetry(STATION, {"kitchen": 10.0}, faults=["E11"])
        await stations.send_telemetry(STATION, {"kitchen": 12.0}, faults=["E11", "E21"])
        await stations.send_telemetry(STATION, {"kitchen": 14.0})
        await stations.send_raw(STATION, "status", b"offline")
        await stations.send_telemetry(STATION, {"kitchen": 15.0})
        await stations.send_raw("RS-XX-999", "telemetry", orjson.dumps({"fill_pct": {"kitchen": 50}}))
        await wait_until(lambda: ctx.counters["stations_back_online"] >= 1 and ctx.counters["rejected"] >= 1)

    events = await ingested(nats_url, "recycling")
    assert [(e["category"], e["status"], e["payload"].get("fault_code")) for e in events] == [
        ("station_fault", "fault", "E11"),
        ("station_fault", "fault", "E21"),
        ("station_fault", "recovered", "E11"),
        ("station_fault", "recovered", "E21"),
        ("device_offline", "offline", None),
        ("device_offline", "recovered", None),
    ]
    [(_, reason)] = await dead_letters(nats_url, "recycling")
    assert "unknown station id 'RS-XX-999'" in reason


async def test_state_survives_restart_and_simulated_rounds_flow(settings, stations, nats_url):
    async with running_connector(_connector(settings), nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        await stations.connect()
        await stations.send_telemetry(STATION, {"hazardous": 96.0})
        await wait_until(lambda: ctx.counters["bins_full"] >= 1)

    async with running_connector(_connector(settings), nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        await stations.send_telemetry(STATION, {"hazardous": 97.0})
        await stations.send_telemetry(STATION, {"hazardous": 5.0})
        for _ in range(3):
            await stations.play_round()
        await wait_until(lambda: ctx.counters["bins_emptied"] >= 1 and ctx.counters["drops"] >= 4)

    hazardous = [
        e for e in await ingested(nats_url, "recycling") if e["payload"].get("alarm_key") == f"{STATION}:hazardous"
    ]
    assert [(e["source_event_id"], e["severity"]) for e in hazardous][:2] == [
        ("RS-JJ-001:hazardous:1:full", "high"),
        ("RS-JJ-001:hazardous:1:recovered", "info"),
    ]
