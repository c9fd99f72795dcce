"""Contract tests of the iot_mqtt connector: its device simulator publishes over a real MQTT broker (a second
nats-server's MQTT listener), the connector runs on the real NATS runtime, results are read from JetStream."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cityhub_iot_mqtt import IotDeviceSimulator, IotMqttConnector, IotMqttSettings
from cityhub_iot_mqtt.registry import load_registry
from hub.backoff import BackoffSettings
from hub.connector_kit.mqtt import parse_broker_url
from hub.connector_runtime import running_connector
from hub.errors import ConfigError
from hub.nats.embedded import EmbeddedNats
from hub.testing import dead_letters, ingested
from tests.waiting import wait_until

FAST = BackoffSettings(initial_s=0.05, max_s=0.5)
# A QoS 1 message the broker handed to a connection that was closing is redelivered after nats-server's MQTT
# ack_wait (30 s by default), not at once; waits that may hit that case allow for it.
REDELIVERY_WAIT_S = 45.0


@pytest.fixture
def settings(mqtt_broker: EmbeddedNats) -> IotMqttSettings:
    return IotMqttSettings(broker_url=f"mqtt://127.0.0.1:{mqtt_broker.mqtt_port}", check_interval_s=0.1, backoff=FAST)


def _connector(settings: IotMqttSettings) -> IotMqttConnector:
    return IotMqttConnector(settings, parse_broker_url(settings.broker_url or ""))


async def _simulator(settings: IotMqttSettings) -> IotDeviceSimulator:
    simulator = IotDeviceSimulator(parse_broker_url(settings.broker_url or ""), settings)
    await simulator.connect()
    return simulator


async def test_alarm_worsening_and_recovery_update_one_alarm_key(settings, nats_url):
    connector = _connector(settings)
    async with running_connector(connector, nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        simulator = await _simulator(settings)
        for lel_pct in (2.0, 24.0, 55.0, 30.0, 6.0):
            await simulator.send("GAS-JJ-0001", lel_pct=lel_pct)
        await wait_until(lambda: ctx.counters["recoveries"] >= 1)
        await simulator.stop()

    events = await ingested(nats_url, "iot_mqtt")
    assert [(e["source_event_id"], e["status"], e["severity"]) for e in events] == [
        ("GAS-JJ-0001:gas_leak:1:alarm", "alarm", "high"),
        ("GAS-JJ-0001:gas_leak:1:severity-critical", "worsened", "critical"),
        ("GAS-JJ-0001:gas_leak:1:recovered", "recovered", "info"),
    ]
    first = events[0]
    assert first["category"] == "gas_leak" and first["device_id"] == "GAS-JJ-0001"
    assert first["location"] == {"lon": 104.0815, "lat": 30.6571, "crs": "wgs84"}
    assert first["address"].startswith("成都市锦江区春熙路街道")
    assert first["payload"]["reading"] == {"lel_pct": 24.0, "unit": "%LEL", "threshold": 20.0}
    assert first["payload"]["owner"] == "锦江物业服务有限公司"
    assert {e["payload"]["alarm_key"] for e in events} == {"GAS-JJ-0001:gas_leak"}


async def test_every_device_type_alarms_in_its_own_unit(settings, nats_url):
    connector = _connector(settings)
    async with running_connector(connector, nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        simulator = await _simulator(settings)
        await simulator.send("WATER-JJ-0001", immersed=True)
        await simulator.send("EBIKE-JJ-0001", max_temp_c=58.0, fire=False)
        await simulator.send("EBIKE-JJ-0001", max_temp_c=91.0, fire=True)
        await simulator.send("MANHOLE-CH-0001", tilt_deg=21.5)
        await simulator.send("HYDRANT-CH-0001", pressure_mpa=0.08)
        await simulator.send("ELEV-QY-0001", fault_code="E01")
        await simulator.send("DOOR-QY-0001", open=True, armed=False)
        await simulator.send("DOOR-QY-0001", open=True, armed=True)
        await wait_until(lambda: ctx.counters["alarms"] >= 6)
        await simulator.stop()

    by_category = {e["category"]: e for e in await ingested(nats_url, "iot_mqtt")}
    assert set(by_category) == {
        "water_leak",
        "fire",
        "manhole_cover",
        "hydrant_pressure",
        "elevator_fault",
        "door_alarm",
    }
    assert by_category["fire"]["severity"] == "critical" and by_category["fire"]["payload"]["reading"]["unit"] == "°C"
    assert by_category["manhole_cover"]["payload"]["reading"]["unit"] == "°"
    assert by_category["hydrant_pressure"]["payload"]["reading"]["unit"] == "MPa"
    assert by_category["elevator_fault"]["severity"] == "critical"


async def test_bad_messages_go_to_the_dlq_with_their_reason(settings, nats_url):
    connector = _connector(settings)
    async with running_connector(connector, nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        simulator = await _simulator(settings)
        await simulator.send("GAS-XX-9999", lel_pct=30.0)
        await simulator.send_raw("cityhub/raw/iot/GAS-JJ-0002/data", b'{"lel_pct": "high"')
        await simulator.send("GAS-JJ-0002", lel_pct=150.0)
        await simulator.send_raw(
            "cityhub/raw/iot/GAS-JJ-0002/data", orjson.dumps({"lel_pct": 30, "ts": "2026-05-01T08:00:00"})
        )
        await simulator.send("GAS-JJ-0002", lel=30.0)
        await simulator.send("GAS-JJ-0002", lel_pct=1.0)
        await wait_until(lambda: ctx.counters["rejected"] >= 5)
        await simulator.stop()

    reasons = [reason for _, reason in await dead_letters(nats_url, "iot_mqtt")]
    assert "unknown device id 'GAS-XX-9999'" in reasons[0]
    assert "Invalid JSON" in reasons[1]
    assert "lel_pct" in reasons[2] and "less than or equal to 100" in reasons[2]
    assert "no timezone offset" in reasons[3]
    assert "lel: Extra inputs are not permitted" in reasons[4] and "lel_pct: Field required" in reasons[4]
    assert (await dead_letters(nats_url, "iot_mqtt"))[1][0] == b'{"lel_pct": "high"'
    assert await ingested(nats_url, "iot_mqtt") == []


async def test_flapping_alarm_is_held_until_stable(mqtt_broker, nats_url):
    settings = IotMqttSettings(
        broker_url=f"mqtt://127.0.0.1:{mqtt_broker.mqtt_port}",
        check_interval_s=0.1,
        flap_max_transitions=2,
        flap_window_s=2.0,
        backoff=FAST,
    )
    connector = _connector(settings)
    async with running_connector(connector, nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        simulator = await _simulator(settings)
        for index in range(5):
            await simulator.send("DOOR-QY-0001", open=index % 2 == 0)
        await wait_until(lambda: ctx.counters["flapping_held"] >= 3)
        assert connector.health()["flapping"] == ["DOOR-QY-0001:door_alarm"]
        await wait_until(lambda: ctx.counters["alarms"] >= 2)
        await simulator.stop()

    events = await ingested(nats_url, "iot_mqtt")
    assert [e["source_event_id"] for e in events] == [
        "DOOR-QY-0001:door_alarm:1:alarm",
        "DOOR-QY-0001:door_alarm:1:recovered",
        "DOOR-QY-0001:door_alarm:2:alarm",
    ]


async def test_silent_device_goes_offline_and_comes_back(mqtt_broker, nats_url, tmp_path: Path):
    registry = tmp_path / "devices.json"
    registry.write_text(
        orjson.dumps(
            [
                {
                    "device_id": "GAS-T-1",
                    "type": "gas",
                    "address": "测试地址",
                    "lon": 104.07,
                    "lat": 30.66,
                    "owner": "测试物业",
                    "heartbeat_s": 0.3,
                }
            ]
        ).decode()
    )
    settings = IotMqttSettings(
        broker_url=f"mqtt://127.0.0.1:{mqtt_broker.mqtt_port}",
        registry_path=registry,
        offline_grace=1.0,
        check_interval_s=0.1,
        backoff=FAST,
    )
    connector = _connector(settings)
    async with running_connector(connector, nats_url) as ctx:
        await wait_until(lambda: ctx.counters["devices_offline"] >= 1)
        assert connector.health()["offline"] == ["GAS-T-1"]
        simulator = await _simulator(settings)
        await simulator.heartbeat("GAS-T-1")
        await wait_until(lambda: ctx.counters["devices_back_online"] >= 1)
        await simulator.stop()

    events = await ingested(nats_url, "iot_mqtt")
    assert [(e["category"], e["status"], e["source_event_id"]) for e in events] == [
        ("device_offline", "offline", "GAS-T-1:device_offline:1:offline"),
        ("device_offline", "recovered", "GAS-T-1:device_offline:1:recovered"),
    ]


async def test_person_alerts_are_marked_sensitive_and_identity_kept_in_reporter(settings, nats_url):
    connector = _connector(settings)
    async with running_connector(connector, nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        simulator = await _simulator(settings)
        await simulator.send(
            "CAM-QY-0001",
            event="key_person",
            confidence=0.93,
            subject_id="WL-0042",
            subject_name="某重点人员",
            snapshot_url="https://video.example.cn/snap/1.jpg",
        )
        await simulator.send("CAM-JJ-0001", event="high_altitude_throwing", confidence=0.4)
        await simulator.send("CAM-JJ-0001", event="high_altitude_throwing", confidence=0.88)
        await wait_until(lambda: ctx.counters["video_detections"] >= 2)
        await simulator.stop()
    assert ctx.counters["video_below_confidence"] == 1

    person, throwing = await ingested(nats_url, "iot_mqtt")
    assert person["category"] == "person_alert" and person["payload"]["sensitive"] is True
    assert person["reporter"] == {"name": "某重点人员", "account": "WL-0042"}
    assert "某重点人员" not in orjson.dumps(person["payload"]).decode()
    assert person["attachments"][0]["url"] == "https://video.example.cn/snap/1.jpg"
    assert throwing["category"] == "high_altitude_throwing" and "sensitive" not in throwing["payload"]


async def test_nothing_is_lost_across_connector_restart_and_broker_outage(mqtt_broker, settings, nats_url):
    address = parse_broker_url(settings.broker_url or "")
    async with running_connector(IotMqttConnector(settings, address), nats_url) as ctx:
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 1)
        simulator = await _simulator(settings)
        await simulator.send("GAS-JJ-0001", lel_pct=30.0)
        await simulator.send("GAS-JJ-0001", lel_pct=3.0)
        await wait_until(lambda: ctx.counters["recoveries"] >= 1)

    await simulator.send("GAS-JJ-0001", lel_pct=27.0)  # the hub is down: the broker keeps it for the session

    async with running_connector(IotMqttConnector(settings, address), nats_url) as ctx:
        await wait_until(lambda: ctx.counters["alarms"] >= 1, timeout=REDELIVERY_WAIT_S)
        await simulator.stop()
        mqtt_broker.kill()
        await wait_until(lambda: ctx.counters["mqtt_reconnects"] >= 2)
        mqtt_broker.start()
        await wait_until(lambda: ctx.counters["mqtt_connects"] >= 2)
        simulator = await _simulator(settings)
        await simulator.send("GAS-JJ-0001", lel_pct=2.0)
        await wait_until(lambda: ctx.counters["recoveries"] >= 1, timeout=REDELIVERY_WAIT_S)
        await simulator.stop()

    assert [e["source_event_id"] for e in await ingested(nats_url, "iot_mqtt")] == [
        "GAS-JJ-0001:gas_leak:1:alarm",
        "GAS-JJ-0001:gas_leak:1:recovered",
        "GAS-JJ-0001:gas_leak:2:alarm",
        "GAS-JJ-0001:gas_leak:2:recovered",
    ]


def test_registry_errors_name_file_line_and_key(tmp_path: Path):
    registry = tmp_path / "devices.csv"
    registry.write_text(
        "device_id,type,address,lon,lat,owner\n"
        "GAS-1,gas,甲,104.0,30.6,物业\n"
        "GAS-2,smoke,乙,104.0,30.6,物业\n"
        "GAS-1,gas,丙,204.0,30.6,物业\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_registry(registry)
    assert [(issue.line, issue.key) for issue in caught.value.issues] == [(3, "type"), (4, "lon")]
    assert f"{registry}:3: type" in str(caught.value)


def test_sample_registry_covers_every_device_type():
    types = {device.type for device in load_registry(IotMqttSettings().registry_path).values()}
    assert {str(t) for t in types} == {
        "gas",
        "water_immersion",
        "ebike_thermal",
        "manhole_tilt",
        "hydrant_pressure",
        "elevator",
        "door_magnet",
        "video_ai",
    }
