"""Escalation deadlines through a real nats-server: fire when overdue, stop when accepted, survive a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import nats

from hub import topology, wire
from hub.escalation import CONSUMER, Escalator, close_request_for, next_order
from hub.models import CLOSE_REASON_MAX, Category, DispatchOrder, DispatchStatus, DispatchUpdate, Severity
from hub.nats.streams import ensure_streams
from hub.pipeline import dispatch_output
from tests.pipeline_support import data_of, read_stream, stream_count
from tests.waiting import wait_until

# Incident ids of the shape the pipeline makes (close requests refuse any other): inc-<26-digit event id>
INC_D, INC_E = ("inc-" + "0" * 25 + letter for letter in "DE")


def _order(incident: str, due_in_s: float) -> DispatchOrder:
    now = datetime.now(UTC)
    return DispatchOrder(
        id=f"{incident}:gridworker:1",
        incident_id=incident,
        target="gridworker",
        connector="gridworker",
        category=Category.GAS_LEAK,
        severity=Severity.CRITICAL,
        summary="gas leak",
        created_at=now,
        deadline=now + timedelta(seconds=due_in_s),
    )


async def _publish(js, output) -> None:
    await js.publish(output.subject, output.data, headers={topology.HEADER_MSG_ID: output.msg_id})


async def _orders(nats_url: str) -> list[dict]:
    return [data_of(m) for m in await read_stream(nats_url, topology.DISPATCH_STREAM) if ".orders." in m.subject]


async def _running_escalator(nats_url: str):  # noqa: ANN202
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    escalator = Escalator(nc, tick_s=0.1)
    await escalator.start()
    return nc, js, escalator


async def _until_async(probe, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await probe():
            await asyncio.sleep(0.2)


async def test_overdue_order_is_redispatched_and_acceptance_stops_the_clock(nats_url):
    nc, js, escalator = await _running_escalator(nats_url)
    await _publish(js, dispatch_output(_order("inc-A", due_in_s=0.5)))

    async def second_attempt_sent() -> bool:
        return any(order["attempt"] == 2 for order in await _orders(nats_url))

    await _until_async(second_attempt_sent)
    [second] = [order for order in await _orders(nats_url) if order["attempt"] == 2]
    assert second["id"] == "inc-A:gridworker:2" and second["target"] == "gridworker"
    update = DispatchUpdate(
        order_id=second["id"], incident_id="inc-A", status=DispatchStatus.ACCEPTED, time=datetime.now(UTC)
    )
    raw = wire.encode(type_=wire.TYPE_DISPATCH_UPDATE, id_="u1", source="/test", time=update.time, data=update)
    await js.publish(topology.dispatch_update_subject("gridworker"), raw)
    await asyncio.sleep(1.5)  # the second deadline (0.5 s after the first fired) has passed
    await escalator.stop()
    await nc.close()

    assert max(order["attempt"] for order in await _orders(nats_url)) == 2
    escalated = [m for m in await read_stream(nats_url, topology.INCIDENTS_STREAM)]
    assert [m.subject for m in escalated] == ["cityhub.incidents._.gas_leak.escalated"]


async def test_deadlines_survive_a_restart_of_the_escalator(nats_url):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    first = Escalator(nc, tick_s=0.1)
    await first.start()
    await _publish(js, dispatch_output(_order("inc-B", due_in_s=2.0)))
    await asyncio.sleep(0.5)  # tracked, not yet due
    await first.stop()
    assert first.fired == 0

    second = Escalator(nc, tick_s=0.1)
    await second.start()

    async def fired() -> bool:
        return second.fired >= 1

    await _until_async(fired)
    await second.stop()
    await nc.close()
    assert [order["attempt"] for order in await _orders(nats_url)] == [1, 2]


async def test_a_resolved_order_stops_every_clock_of_its_incident_and_asks_to_close_it(nats_url):
    nc, js, escalator = await _running_escalator(nats_url)
    gridworker = _order(INC_D, due_in_s=2.0)
    fire = gridworker.model_copy(update={"id": f"{INC_D}:dept:fire:1", "target": "dept:fire", "connector": "dept_fire"})
    for order in (gridworker, fire):
        await _publish(js, dispatch_output(order))
    update = DispatchUpdate(
        order_id=gridworker.id,
        incident_id=INC_D,
        status=DispatchStatus.RESOLVED,
        time=datetime.now(UTC),
        actor="王网格员",
    )
    raw = wire.encode(type_=wire.TYPE_DISPATCH_UPDATE, id_="u-D", source="/test", time=update.time, data=update)
    await js.publish(topology.dispatch_update_subject("gridworker"), raw)

    async def close_requested() -> bool:
        return bool(await read_stream(nats_url, topology.INGEST_STREAM))

    await _until_async(close_requested)
    await asyncio.sleep(2.5)  # both deadlines have passed
    await escalator.stop()
    await nc.close()
    assert escalator.fired == 0 and [order["attempt"] for order in await _orders(nats_url)] == [1, 1]
    [request] = await read_stream(nats_url, topology.INGEST_STREAM)
    assert request.subject == "cityhub.ingest.dispatch" and request.headers[topology.HEADER_MSG_ID] == f"close:{INC_D}"
    assert data_of(request) == {
        "incident_id": INC_D,
        "reason": f"order {INC_D}:gridworker:1 resolved by 王网格员 (gridworker)",
        "time": data_of(request)["time"],
    }


async def test_a_deadline_due_after_a_nats_restart_or_a_lost_consumer_escalates_exactly_once(nats_url, restart_nats):
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await ensure_streams(js)
    escalator = Escalator(nc, tick_s=0.1)
    await escalator.start()
    await _publish(js, dispatch_output(_long_order("inc-R", due_in_s=2.0)))
    await wait_until(lambda: escalator.follower.next_seq == 2, "the order tracked")
    await restart_nats()  # the deadline falls due while the server is down or just after
    await wait_until(lambda: escalator.fired == 1, "the escalation after the restart")

    await js.delete_consumer(topology.DISPATCH_STREAM, CONSUMER)
    await _publish(js, dispatch_output(_long_order("inc-L", due_in_s=1.0)))
    await wait_until(lambda: escalator.fired == 2, "the escalation of an order sent after the consumer was deleted")
    stored = await stream_count(nats_url, topology.DISPATCH_STREAM)
    await wait_until(lambda: escalator.follower.next_seq > stored, "the escalator's own orders followed")
    await asyncio.sleep(1.0)  # ten ticks: room for an escalation fired twice
    await escalator.stop()
    await nc.close()

    orders = sorted((order["incident_id"], order["attempt"]) for order in await _orders(nats_url))
    assert orders == [("inc-L", 1), ("inc-L", 2), ("inc-R", 1), ("inc-R", 2)]
    escalated = sorted(data_of(m)["id"] for m in await read_stream(nats_url, topology.INCIDENTS_STREAM))
    assert escalated == ["inc-L", "inc-R"] and escalator.health()["consumer"]["recoveries"] >= 1


def _long_order(incident: str, due_in_s: float) -> DispatchOrder:
    """An order given ten minutes to be accepted, of which ``due_in_s`` seconds are left: the next attempt's
    deadline is ten minutes away."""
    order = _order(incident, due_in_s)
    return order.model_copy(update={"created_at": order.created_at - timedelta(minutes=10)})


def test_a_resolved_update_without_an_offset_still_closes_and_a_long_reason_is_cut():
    update = DispatchUpdate(
        order_id=f"{INC_E}:gridworker:1",
        incident_id=INC_E,
        status=DispatchStatus.RESOLVED,
        time=datetime(2026, 5, 1, 8, 30),
        actor="王" * 600,
    )
    request = close_request_for(update, reporter="gridworker")
    assert request.time == datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    assert len(request.reason) == CLOSE_REASON_MAX and request.reason.startswith(
        f"order {INC_E}:gridworker:1 resolved by 王"
    )


def test_the_ladder_redispatches_then_goes_upward_then_stops():
    order = _order("inc-C", due_in_s=600)
    now = datetime.now(UTC)
    ladder = []
    while (order := next_order(order, now)) is not None:
        ladder.append((order.attempt, order.target, order.connector))
    assert ladder == [
        (2, "gridworker", "gridworker"),
        (3, "level:street", "gridworker"),
        (4, "level:district", "gridworker"),
    ]
