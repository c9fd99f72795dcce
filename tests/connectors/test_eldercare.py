"""Contract tests of the eldercare connector against the simulated platform: signed webhooks both ways,
through the real NATS runtime (ingest, DLQ, dispatch orders and updates)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from pydantic import SecretStr

from cityhub_eldercare import EldercareConnector, EldercarePlatformSimulator, EldercareSettings
from hub import signing
from hub.connector_runtime import running_connector
from hub.models import Category, DispatchOrder, GridCell, ReportRef, Severity
from hub.nats.embedded import free_port
from hub.testing import dead_letters, dispatch_updates, ingested, send_order
from tests.waiting import wait_until

SECRET = "test-secret-不要用在生产"


@pytest.fixture
def configured() -> EldercareSettings:
    platform_port = free_port()
    return EldercareSettings(
        listen_port=free_port(),
        secret=SECRET,
        platform_url=f"http://127.0.0.1:{platform_port}",
        simulator={"listen_port": platform_port, "outcome_delay_s": (0.01, 0.05)},
        backoff={"initial_s": 0.05, "max_s": 0.5},
    )


@pytest.fixture
async def platform(configured: EldercareSettings):
    simulator = EldercarePlatformSimulator(configured)
    yield simulator
    await simulator.stop()


async def _webhook_up(settings: EldercareSettings) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", settings.listen_port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return


async def test_alerts_carry_only_what_the_responder_needs(configured, platform, nats_url):
    async with running_connector(EldercareConnector(configured), nats_url):
        await _webhook_up(configured)
        sos = await platform.send_alert("E0001", "sos", device_id="WATCH-E0001")
        vitals = await platform.send_alert(
            "E0002",
            "vitals",
            vitals={"heart_rate_bpm": 72, "spo2_pct": 83, "systolic_mmhg": 150, "temperature_c": 36.6},
        )
        alone = await platform.send_alert("E0004", "no_activity", inactive_hours=14.0)
        not_alone = await platform.send_alert("E0003", "no_activity", inactive_hours=30.0)
        gas = await platform.send_alert("E0001", "gas", gas_lel_pct=32.0)
    assert [r.status_code for r in (sos, vitals, alone, not_alone, gas)] == [202, 202, 202, 200, 202]
    assert "living alone" in not_alone.json()["ignored"]

    events = {e["payload"]["alert_type"]: e for e in await ingested(nats_url, "eldercare")}
    assert set(events) == {"sos", "vitals", "no_activity", "gas"}
    assert events["sos"]["category"] == "elder_sos" and events["sos"]["severity"] == "critical"
    assert events["sos"]["reporter"] == {"name": "王秀英", "phone": "13800000001", "account": "E0001"}
    assert events["sos"]["payload"]["route_hint"] == "gridworker"
    assert events["sos"]["address"].endswith("2栋3单元501") and events["sos"]["location"]["crs"] == "wgs84"
    assert events["vitals"]["payload"]["vitals"] == {"spo2_pct": 83.0} and events["vitals"]["severity"] == "critical"
    assert events["no_activity"]["payload"]["inactive_hours"] == 14.0
    assert events["gas"]["category"] == "gas_leak" and events["gas"]["payload"]["gas_lel_pct"] == 32.0
    everything = orjson.dumps(list(events.values())).decode()
    assert "高血压" not in everything and "糖尿病" not in everything
    for event in events.values():
        assert "王秀英" not in orjson.dumps({k: v for k, v in event.items() if k != "reporter"}).decode()


async def test_bad_requests_get_a_clear_error_and_a_dlq_entry(configured, nats_url):
    url = f"http://127.0.0.1:{configured.listen_port}/alerts"
    good = orjson.dumps({"alert_id": "A1", "type": "fall", "elder_id": "E0001", "time": "2026-05-01T08:00:00+08:00"})
    cases = [
        (good, {signing.TIMESTAMP_HEADER: "1", signing.SIGNATURE_HEADER: "00"}),
        (good, signing.signed_headers("wrong secret", good)),
        (b"{not json", signing.signed_headers(SECRET, b"{not json")),
        (b'{"alert_id": "A2", "type": "fall", "elder_id": "E9999", "time": "2026-05-01T08:00:00+08:00"}', None),
        (b'{"alert_id": "A3", "type": "fall", "elder_id": "E0001", "time": "2026-05-01T08:00:00"}', None),
        (b"x" * (configured.max_body_bytes + 1), None),
    ]
    async with running_connector(EldercareConnector(configured), nats_url):
        await _webhook_up(configured)
        async with httpx.AsyncClient() as client:
            answers = [
                await client.post(url, content=body, headers=headers or signing.signed_headers(SECRET, body))
                for body, headers in cases
            ]
    assert [a.status_code for a in answers] == [401, 401, 400, 422, 400, 413]
    assert "too old" in answers[0].json()["error"] or "away from now" in answers[0].json()["error"]
    assert "does not match" in answers[1].json()["error"]
    assert "unknown elder id 'E9999'" in answers[3].json()["error"]
    assert "timezone" in answers[4].json()["error"]
    letters = await dead_letters(nats_url, "eldercare")
    assert [reason.split(":")[0] for _, reason in letters][:2] == ["bad signature", "bad signature"]
    assert len(letters) == 6 and letters[2][0] == b"{not json"
    assert await ingested(nats_url, "eldercare") == []


async def test_alerts_wait_at_the_platform_while_the_hub_is_down(configured, platform, nats_url):
    sending = asyncio.create_task(platform.send_alert("E0002", "fall"))
    await asyncio.sleep(0.3)
    assert not sending.done()
    async with running_connector(EldercareConnector(configured), nats_url):
        response = await asyncio.wait_for(sending, 20)
    assert response.status_code == 202
    [event] = await ingested(nats_url, "eldercare")
    assert event["category"] == "elder_fall" and event["source_event_id"] == response.json()["accepted"]


def _order(order_id: str, reports: tuple[ReportRef, ...] = ()) -> DispatchOrder:
    now = datetime.now(UTC)
    return DispatchOrder(
        id=order_id,
        incident_id=f"INC-{order_id}",
        target="eldercare",
        connector="eldercare",
        grid_cell=GridCell(layer="admin", level="grid", id="510104-03-05-01", name="春熙路片区第1网格"),
        category=Category.ELDER_FALL,
        severity=Severity.CRITICAL,
        summary="上门探访：跌倒报警",
        created_at=now,
        reports=list(reports),
    )


async def test_visit_orders_wait_in_jetstream_until_the_platform_is_back(configured, platform, nats_url):
    connector = EldercareConnector(configured)
    async with running_connector(connector, nats_url) as ctx:
        alert_id = (await platform.send_alert("E0002", "fall")).json()["accepted"]
        reports = (
            ReportRef(source="eldercare", source_event_id=alert_id),
            ReportRef(source="iot_mqtt", source_event_id="SMOKE-0001:alarm:1"),
        )
        await send_order(nats_url, _order("VO-1", reports), "eldercare")
        await wait_until(lambda: ctx.counters["deliver_failed"] >= 2)
        assert platform.visit_orders == []
        await platform.start_server()
        await wait_until(lambda: ctx.counters["visit_outcomes"] >= 3)

    assert [order["id"] for order in platform.visit_orders] == ["VO-1"]
    # the order names the platform's own alert, so the platform knows whom to visit
    assert platform.visit_orders[0]["alert_ids"] == [alert_id] and platform.visit_orders[0]["elder_ids"] == ["E0002"]
    updates = await dispatch_updates(nats_url, "eldercare")
    assert [(u["order_id"], u["status"]) for u in updates] == [
        ("VO-1", "accepted"),
        ("VO-1", "on_site"),
        ("VO-1", "resolved"),
    ]
    assert updates[-1]["actor"] == "CG-017" and updates[-1]["incident_id"] == "INC-VO-1"


async def test_platform_refusal_goes_to_the_dlq_not_into_a_retry_loop(configured, nats_url):
    refusing = configured.model_copy(update={"secret": SecretStr("another secret")})
    platform = EldercarePlatformSimulator(refusing)
    await platform.start_server()
    try:
        async with running_connector(EldercareConnector(configured), nats_url) as ctx:
            await send_order(nats_url, _order("VO-2"), "eldercare")
            await wait_until(lambda: ctx.counters["rejected"] >= 1)
        [(body, reason)] = await dead_letters(nats_url, "eldercare")
        assert "platform refused visit order VO-2: 401" in reason and orjson.loads(body)["id"] == "VO-2"
    finally:
        await platform.stop()
