"""Contract tests of the gridworker connector against simulated worker apps (real WebSocket clients), through
the real NATS runtime: orders in from JetStream, dispatch updates and DLQ entries out, state in KV."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cityhub_gridworker import GridWorkerAppSimulator, GridworkerConnector, GridworkerSettings
from cityhub_gridworker.connector import worker_token
from hub.connector_runtime import running_connector
from hub.models import Category, DispatchOrder, GridCell, Severity
from hub.nats.embedded import free_port
from hub.testing import dead_letters, dispatch_updates, send_order
from tests.waiting import wait_until

SECRET = "grid-secret"
CELL = "510104-03-05-01"
PRIMARY, BACKUP, LEADER = "W-0503-01A", "W-0503-01B", "L-0503"


def _settings(**simulator: object) -> GridworkerSettings:
    return GridworkerSettings(
        listen_port=free_port(),
        secret=SECRET,
        fallback_leader="L-DUTY",
        accept_timeout_s=0.4,
        backup_timeout_s=0.4,
        check_interval_s=0.05,
        location_min_interval_s=0,
        simulator={
            "accept_delay_s": (0.01, 0.05),
            "work_delay_s": (0.01, 0.05),
            "location_interval_s": 0.1,
            **simulator,
        },
    )


def _order(order_id: str, cell: str = CELL) -> DispatchOrder:
    return DispatchOrder(
        id=order_id,
        incident_id=f"INC-{order_id}",
        target="gridworker",
        connector="gridworker",
        grid_cell=GridCell(layer="admin", level="grid", id=cell, name="网格"),
        category=Category.GAS_LEAK,
        severity=Severity.HIGH,
        summary="燃气泄漏，请立即到场",
        created_at=datetime.now(UTC),
    )


@pytest.fixture
async def apps():
    started: list[GridWorkerAppSimulator] = []

    def start(settings: GridworkerSettings) -> GridWorkerAppSimulator:
        simulator = GridWorkerAppSimulator(settings)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        await simulator.stop()


def _trail(updates: list[dict], order_id: str) -> list[tuple[str, str]]:
    return [(u["status"], u["actor"]) for u in updates if u["order_id"] == order_id]


async def test_order_waits_for_the_cell_worker_then_status_and_location_come_back(apps, nats_url):
    settings = _settings(workers=[PRIMARY])
    connector = GridworkerConnector(settings)
    async with running_connector(connector, nats_url) as ctx:
        await send_order(nats_url, _order("GO-1"), "gridworker")
        await send_order(nats_url, _order("GO-2", cell="999999"), "gridworker")
        await wait_until(lambda: ctx.counters["orders_waiting_for_worker"] >= 2)
        simulator = apps(settings)
        await simulator.start()
        await wait_until(lambda: ctx.counters["orders_resolved"] >= 1 and ctx.counters["locations"] >= 1)
        location = orjson.loads(await ctx.state.get(f"location/{PRIMARY}") or b"{}")
        assert list(connector.health()["open_orders"]) == ["GO-2"]

    updates = await dispatch_updates(nats_url, "gridworker")
    assert _trail(updates, "GO-1") == [
        ("sent", PRIMARY),
        ("accepted", PRIMARY),
        ("on_site", PRIMARY),
        ("resolved", PRIMARY),
    ]
    resolved = (
        updates[-1] if updates[-1]["order_id"] == "GO-1" else next(u for u in updates if u["status"] == "resolved")
    )
    assert resolved["attachments"][0]["url"].endswith("/GO-1/1.jpg") and len(resolved["attachments"][0]["sha256"]) == 64
    assert _trail(updates, "GO-2") == [("sent", "L-DUTY")]
    assert "not in roster" in next(u for u in updates if u["order_id"] == "GO-2")["note"]
    assert location["worker_id"] == PRIMARY and location["crs"] == "gcj02"


async def test_unaccepted_order_goes_to_backup_then_grid_leader(apps, nats_url):
    settings = _settings(workers=[PRIMARY, BACKUP, LEADER], unresponsive=[PRIMARY, BACKUP])
    simulator = apps(settings)
    async with running_connector(GridworkerConnector(settings), nats_url) as ctx:
        await simulator.start()
        await simulator.wait_connected()
        await send_order(nats_url, _order("GO-3"), "gridworker")
        await wait_until(lambda: ctx.counters["orders_resolved"] >= 1)

    assert _trail(await dispatch_updates(nats_url, "gridworker"), "GO-3") == [
        ("sent", PRIMARY),
        ("redispatched", BACKUP),
        ("escalated", LEADER),
        ("accepted", LEADER),
        ("on_site", LEADER),
        ("resolved", LEADER),
    ]
    assert [o["id"] for o in simulator.orders[PRIMARY]] == [o["id"] for o in simulator.orders[BACKUP]] == ["GO-3"]


async def test_open_orders_and_their_timers_survive_a_restart(nats_url):
    settings = _settings()
    async with running_connector(GridworkerConnector(settings), nats_url) as ctx:
        await send_order(nats_url, _order("GO-4"), "gridworker")
        await wait_until(lambda: ctx.counters["updates_published"] >= 1)

    restarted = GridworkerConnector(settings)
    async with running_connector(restarted, nats_url) as ctx:
        await wait_until(lambda: ctx.counters["orders_escalated"] >= 1)
        assert restarted.health()["open_orders"] == {"GO-4": {"assignee": LEADER, "status": "sent"}}

    assert _trail(await dispatch_updates(nats_url, "gridworker"), "GO-4") == [
        ("sent", PRIMARY),
        ("redispatched", BACKUP),
        ("escalated", LEADER),
    ]


async def test_bad_worker_input_gets_an_error_and_a_dlq_entry(nats_url):
    settings = _settings()
    url = f"ws://127.0.0.1:{settings.listen_port}/"
    async with running_connector(GridworkerConnector(settings), nats_url) as ctx:
        await send_order(nats_url, _order("GO-5"), "gridworker")
        await wait_until(lambda: ctx.counters["updates_published"] >= 1)
        async with connect(url) as intruder:
            await intruder.send(orjson.dumps({"type": "hello", "worker_id": PRIMARY, "token": "forged"}).decode())
            with pytest.raises(ConnectionClosed) as closed:
                await intruder.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

        replies = []
        async with connect(url) as app:
            await app.send(
                orjson.dumps({"type": "hello", "worker_id": BACKUP, "token": worker_token(SECRET, BACKUP)}).decode()
            )
            assert orjson.loads(await app.recv())["type"] == "welcome"
            now = datetime.now(UTC).isoformat()
            for message in (
                b"{broken",
                orjson.dumps({"type": "status", "order_id": "GO-404", "status": "accepted", "time": now}),
                orjson.dumps({"type": "status", "order_id": "GO-5", "status": "accepted", "time": now}),
                orjson.dumps({"type": "location", "lon": 300, "lat": 30.6, "time": now}),
            ):
                await app.send(message.decode())
                replies.append(orjson.loads(await app.recv()))

    assert all(reply["type"] == "error" for reply in replies)
    assert "Invalid JSON" in replies[0]["reason"]
    assert "GO-404" in replies[1]["reason"] and "not open" in replies[1]["reason"]
    assert f"assigned to {PRIMARY}, not {BACKUP}" in replies[2]["reason"]
    assert "lon" in replies[3]["reason"]
    letters = await dead_letters(nats_url, "gridworker")
    assert len(letters) == 5
    assert "bad token" in letters[0][1] and b"forged" not in letters[0][0]


async def test_resolved_without_photo_is_refused(nats_url, apps):
    settings = _settings(workers=[PRIMARY], unresponsive=[PRIMARY])
    async with running_connector(GridworkerConnector(settings), nats_url) as ctx:
        await send_order(nats_url, _order("GO-6"), "gridworker")
        await wait_until(lambda: ctx.counters["updates_published"] >= 1)
        async with connect(f"ws://127.0.0.1:{settings.listen_port}/") as app:
            await app.send(
                orjson.dumps({"type": "hello", "worker_id": PRIMARY, "token": worker_token(SECRET, PRIMARY)}).decode()
            )
            await app.recv()
            pushed = orjson.loads(await app.recv())
            now = datetime.now(UTC).isoformat()
            await app.send(
                orjson.dumps({"type": "status", "order_id": "GO-6", "status": "resolved", "time": now}).decode()
            )
            reply = orjson.loads(await app.recv())
    assert pushed["type"] == "order" and pushed["order"]["id"] == "GO-6" and pushed["role"] == "primary"
    assert reply == {"type": "error", "reason": "a resolved report needs at least one photo"}


def test_orders_for_a_micro_grid_go_to_the_enclosing_grid_s_worker():
    connector = GridworkerConnector(_settings())
    assert connector.responsible_for(CELL).primary == PRIMARY
    assert connector.responsible_for(f"{CELL}-07").primary == PRIMARY
    assert connector.responsible_for("510104-03-05") is None
