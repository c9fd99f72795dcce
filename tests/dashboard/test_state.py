"""LiveState against a real nats-server: the unified stream published as the pipeline does, watched live."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from stream_samples import T0, grid_cells, make_incident, make_order, make_report, make_update

from hub import topology, wire
from hub.config import TierConfig
from hub.dashboard.figures import Durations, EventRates, nearest_rank
from hub.dashboard.state import IncidentView, LiveState, OrderView
from hub.models import (
    Area,
    Category,
    CrossScopeIncident,
    DispatchStatus,
    IncidentChange,
    IncidentState,
    LinkedIncident,
    Severity,
    utcnow,
)
from hub.nats.streams import ensure_streams
from tests.waiting import wait_until


async def test_reports_join_their_incident_in_time_order_whatever_arrives_first(state, writer):
    incident = make_incident(1, sources=["iot_mqtt", "hotline_12345", "citizen_app"], rules=["gas-critical"])
    late, early, middle = (
        make_report(incident, 3, "citizen_app", 9, "楼道有燃气味"),
        make_report(incident, 1, "iot_mqtt", 0),
        make_report(incident, 2, "hotline_12345", 4),
    )
    for report in (late, early):
        await writer.report(incident, report)
    await writer.incident(incident)
    await writer.report(incident, middle)
    await wait_until(lambda: (state.incident("INC000001") or {}).get("reports", []).__len__() == 3, "three reports")

    page = state.incident("INC000001")
    assert [r["source"] for r in page["reports"]] == ["iot_mqtt", "hotline_12345", "citizen_app"]
    assert page["incident"]["matched_rules"] == ["gas-critical"]
    assert [cell["level"] for cell in page["incident"]["grid_path"]] == ["district", "street", "grid"]
    summary = page["summary"]
    assert (summary["district_name"], summary["street_name"], summary["reports"]) == ("锦江区", "春熙路街道", 3)
    assert state.open_cell_counts() == {"510104": 1, "510104001": 1, "51010400101": 1}


async def test_dispatch_orders_updates_and_response_times(state, writer):
    incident = make_incident(2, category=Category.ELDER_FALL, escalate_at=T0 + timedelta(minutes=15))
    order = make_order(incident, minutes=1, deadline_minutes=20)
    accepted, resolved = make_update(order, DispatchStatus.ACCEPTED, 2), make_update(order, DispatchStatus.RESOLVED, 9)
    await writer.update(accepted)  # before its order: held until the order arrives
    await writer.incident(incident)
    await writer.order(order)
    await writer.update(resolved)
    await wait_until(lambda: state.figures()["time_to_resolve"]["all"] is not None, "the resolution to count")

    page = state.incident("INC000002")
    (shown,) = page["orders"]
    assert shown["status"] == "resolved"
    assert [u["status"] for u in shown["updates"]] == ["accepted", "resolved"]
    assert page["summary"]["deadline"] == (T0 + timedelta(minutes=15)).isoformat().replace("+00:00", "Z")
    figures = state.figures()
    # counted from the order's creation (the hub's reception, 受理), one minute after the incident's own time
    assert figures["time_to_accept"]["by_category"]["elder_fall"] == {"count": 1, "median_s": 120.0, "p90_s": 120.0}
    assert figures["time_to_resolve"]["by_street"]["春熙路街道"]["median_s"] == 540.0


async def test_response_times_never_count_from_an_old_event_time(state, writer):
    """A work order imported from 2022 and received now: its figures are minutes from reception, not years."""
    imported = make_incident(6, category=Category.NOISE, opened_at=utcnow() - timedelta(days=1500))
    order = make_order(imported, minutes=1500 * 24 * 60)  # created at reception, i.e. now
    await writer.incident(imported)
    await writer.order(order)
    await writer.update(make_update(order, DispatchStatus.ACCEPTED, 4))
    await writer.update(make_update(order, DispatchStatus.RESOLVED, 25))
    await wait_until(lambda: state.figures()["time_to_resolve"]["all"] is not None, "the resolution to count")
    figures = state.figures()
    assert figures["time_to_accept"]["all"]["median_s"] == 240.0
    assert figures["time_to_resolve"]["by_category"]["noise"]["median_s"] == 1500.0


SQUARE = {"type": "Polygon", "coordinates": [[[104.0, 30.6], [104.1, 30.6], [104.1, 30.7], [104.0, 30.6]]]}


async def test_an_area_warning_shows_how_many_of_its_grids_confirmed_it(state, writer):
    cells = [grid for _, _, grid, _ in grid_cells()[:3]]
    area = Area(id="flood-1", geometry=SQUARE, cells=cells)
    warning = make_incident(20, category=Category.AREA_WARNING).model_copy(update={"area": area})
    orders = [
        make_order(warning, number).model_copy(
            update={"id": f"ORD-W-{cell.id}", "target": f"cell:{cell.id}", "grid_cell": cell, "attempt": 1}
        )
        for number, cell in enumerate(cells, start=1)
    ]
    await writer.incident(warning)
    for order in orders:
        await writer.order(order)
    await writer.update(make_update(orders[0], DispatchStatus.ACCEPTED, 1))
    await writer.update(make_update(orders[1], DispatchStatus.RESOLVED, 3))
    await wait_until(lambda: state.messages == 6, "the warning, its orders and two confirmations")

    confirmation = state.incident("INC000020")["summary"]["confirmation"]
    assert confirmation == {"confirmed": 2, "cells": 3, "unconfirmed": [{"id": cells[2].id, "name": cells[2].name}]}
    assert len(state.incident("INC000020")["orders"]) == 3  # an order per grid, none superseding another
    assert state.incident("INC000020")["summary"]["area"] == SQUARE  # the map draws it


def test_response_clock_starts_at_reception_and_not_for_a_late_incident():
    """The incident's received_at when the stream carries it, else its first order's creation; none when late."""
    received, dispatched = "2026-12-06T10:00:00+00:00", "2026-12-06T10:00:05+00:00"
    orders = {"o1": OrderView({"id": "o1", "target": "gridworker", "created_at": dispatched})}
    with_reception = IncidentView("i1", incident={"received_at": received}, orders=dict(orders))
    assert with_reception.response_clock_start() == datetime.fromisoformat(received)
    assert IncidentView("i2", incident={}, orders=dict(orders)).response_clock_start() == datetime.fromisoformat(
        dispatched
    )
    late = IncidentView("i3", incident={"received_at": received, "late": True}, orders=dict(orders))
    assert late.response_clock_start() is None and IncidentView("i4", incident={}).response_clock_start() is None


async def test_an_incident_closed_before_any_dispatch_or_reception_time_counts_in_no_figure(state, writer):
    await writer.incident(make_incident(7, state=IncidentState.CLOSED))
    await wait_until(lambda: state.messages == 1, "the incident")
    figures = state.figures()
    assert figures["time_to_accept"]["all"] is None and figures["time_to_resolve"]["all"] is None


async def test_figures_count_open_overdue_and_events_per_source(state, writer):
    opened = utcnow() - timedelta(hours=1)
    late = make_incident(3, opened_at=opened, escalate_at=opened + timedelta(minutes=30))
    on_time = make_incident(4, cell=5, opened_at=opened, escalate_at=opened + timedelta(hours=2))
    closed = make_incident(5, state=IncidentState.CLOSED, opened_at=opened, escalate_at=opened)
    for incident in (late, on_time, closed):
        await writer.incident(incident)
    for number in range(3):
        await writer.report(late, make_report(late, number, "iot_mqtt", number))
    await writer.report(on_time, make_report(on_time, 1, "hotline_12345", 1))
    await wait_until(lambda: state.messages == 7, "seven messages")

    figures = state.figures()
    assert (figures["open"], figures["overdue"]) == (2, 1)
    assert figures["open_by_severity"] == {"high": 2}
    assert {source: sum(rate["series"]) for source, rate in figures["events_per_minute"].items()} == {
        "iot_mqtt": 3,
        "hotline_12345": 1,
    }
    assert [s["id"] for s in state.incidents({"status": "overdue"})] == ["INC000003"]


async def test_filters(state, writer):
    incidents = [
        make_incident(10, cell=0, category=Category.GAS_LEAK, severity=Severity.CRITICAL, sources=["iot_mqtt"]),
        make_incident(11, cell=4, category=Category.NOISE, severity=Severity.LOW, sources=["hotline_12345"]),
        make_incident(
            12,
            cell=16,
            category=Category.GAS_LEAK,
            severity=Severity.HIGH,
            sources=["hotline_12345", "iot_mqtt"],
            state=IncidentState.ACKNOWLEDGED,
        ),
        make_incident(13, cell=17, category=Category.FIRE, state=IncidentState.RESOLVED),
    ]
    for incident in incidents:
        await writer.incident(incident)
    await wait_until(lambda: len(state.incidents({"status": "all"})) == 4, "four incidents")

    def ids(**filters):
        return sorted(s["id"][-2:] for s in state.incidents(filters))

    assert ids() == ["10", "11", "12"]
    assert ids(status="all") == ["10", "11", "12", "13"]
    assert ids(status="acknowledged") == ["12"]
    assert ids(category="gas_leak") == ["10", "12"]
    assert ids(severity="low") == ["11"]
    assert ids(source="iot_mqtt") == ["10", "12"]
    assert ids(district="青羊区") == ids(district="510105") == ["12"]
    assert ids(street="书院街街道") == ["11"]


async def test_a_restarted_dashboard_shows_the_open_incidents_again(nc, writer):
    first = LiveState(window=timedelta(days=3650))
    await first.start(nc)
    still_open, closed = make_incident(20), make_incident(21, cell=3)
    for incident in (still_open, closed):
        await writer.incident(incident)
        await writer.report(incident, make_report(incident, 1, "iot_mqtt", 0))
    await writer.incident(closed.model_copy(update={"state": IncidentState.CLOSED}), IncidentChange.CLOSED)
    await wait_until(lambda: first.messages == 5, "the first dashboard to see everything")
    await first.stop()

    restarted = LiveState(window=timedelta(days=3650))
    await restarted.start(nc)
    try:
        await wait_until(lambda: restarted.caught_up, "the replay to finish")
        assert [s["id"] for s in restarted.incidents()] == ["INC000020"]
        assert restarted.incident("INC000021")["incident"]["state"] == "closed"
        assert restarted.open_cell_counts() == first.open_cell_counts()
    finally:
        await restarted.stop()


async def test_an_escalation_updates_deadline_and_level_and_keeps_the_rest(state, writer):
    incident = make_incident(25, sources=["iot_mqtt", "hotline_12345"], escalate_at=T0 + timedelta(minutes=10))
    await writer.incident(incident)
    # What the escalation timer knows: the order's cell, its own clock, the next deadline.
    escalation = incident.model_copy(
        update={
            "grid_path": incident.grid_path[-1:],
            "sources": [],
            "location": None,
            "opened_at": T0 + timedelta(minutes=1),
            "updated_at": T0 + timedelta(minutes=10),
            "escalation_level": 1,
            "escalate_at": T0 + timedelta(minutes=20),
        }
    )
    await writer.incident(escalation, IncidentChange.ESCALATED)
    await wait_until(lambda: state.messages == 2, "both messages")
    summary = state.incident("INC000025")["summary"]
    assert (summary["escalation_level"], summary["deadline"]) == (1, "2026-11-23T08:20:00Z")
    assert summary["sources"] == ["iot_mqtt", "hotline_12345"] and summary["district"] == "510104"
    assert summary["opened_at"] == "2026-11-23T08:00:00Z"


async def test_a_closed_change_closes_the_incident_and_keeps_its_place(state, writer):
    incident = make_incident(26)
    await writer.incident(incident)
    # What the pipeline remembers when it closes an incident: its summary, not its place.
    closed = incident.model_copy(
        update={
            "grid_path": [],
            "location": None,
            "state": IncidentState.CLOSED,
            "updated_at": T0 + timedelta(minutes=30),
            "closed_reason": "order INC000026:gridworker:1 resolved (gridworker)",
        }
    )
    await writer.incident(closed, IncidentChange.CLOSED)
    await wait_until(lambda: state.messages == 2, "both messages")
    shown = state.incident("INC000026")
    assert shown["incident"]["state"] == "closed" and shown["incident"]["closed_reason"].startswith("order")
    assert shown["summary"]["district"] == "510104" and shown["incident"]["location"] is not None
    assert "INC000026" not in [summary["id"] for summary in state.incidents()]


async def test_unreadable_messages_are_counted_and_the_feed_goes_on(state, writer):
    await writer.raw("cityhub.events.x.y.gas_leak.high", b"{not json")
    await writer.raw(
        "cityhub.incidents.x.gas_leak.opened",
        b'{"specversion": "1.0", "id": "1", "source": "/x", "type": "cityhub.incident.opened", "data": {"id": "INC9"}}',
    )
    await writer.incident(make_incident(30))
    await wait_until(lambda: state.incident("INC000030") is not None, "the good incident")
    await wait_until(lambda: state.unreadable == 2, "both bad messages counted")  # the streams are not ordered
    assert state.incident("INC9") is None


async def test_ten_thousand_open_incidents(state, writer):
    incidents = [make_incident(n, cell=n, severity=list(Severity)[n % 5]) for n in range(10_000)]
    acks = [writer.js.publish(*_incident_message(incident)) for incident in incidents]
    for ack in acks:
        await ack
    await wait_until(lambda: state.figures()["open"] == 10_000, "10,000 open incidents", timeout=120)
    assert len(state.incidents({"severity": "critical"})) == 2000
    assert sum(state.open_cell_counts().values()) == 30_000


def _incident_message(incident):
    raw = wire.encode(
        type_="cityhub.incident.opened",
        id_=incident.id,
        source="/cityhub/pipeline",
        time=incident.opened_at,
        data=incident,
    )
    return topology.incident_subject(incident.grid_path[0].id, incident.category, "opened"), raw


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=60))
def test_durations_match_a_sorted_oracle(samples):
    durations = Durations()
    for sample in samples:
        durations.add(["all"], sample)
    ordered = sorted(samples)
    assert durations.summary("all") == {
        "count": len(samples),
        "median_s": nearest_rank(ordered, 0.5),
        "p90_s": nearest_rank(ordered, 0.9),
    }
    assert nearest_rank(ordered, 0.5) == ordered[(len(ordered) + 1) // 2 - 1]


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_what_is_shown(rng: random.Random):
    """Each stream is ordered, but the three are not ordered against each other: any interleaving of them
    gives the same picture."""
    messages = _conversation()
    in_order, interleaved = LiveState(clock=lambda: T0), LiveState(clock=lambda: T0)
    for subject, raw in messages:
        in_order.apply(subject, raw, T0)
    for subject, raw in _interleave(messages, rng):
        interleaved.apply(subject, raw, T0)
    assert interleaved.incidents({"status": "all"}) == in_order.incidents({"status": "all"})
    for incident_id in ("INC000040", "INC000041"):
        assert interleaved.incident(incident_id) == in_order.incident(incident_id)
    assert interleaved.figures() == in_order.figures()


def _interleave(messages: list[tuple[str, bytes]], rng: random.Random) -> list[tuple[str, bytes]]:
    by_stream: dict[str, list[tuple[str, bytes]]] = {}
    for message in messages:
        by_stream.setdefault(message[0].split(".")[1], []).append(message)
    queues = [list(reversed(queue)) for queue in by_stream.values()]
    merged = []
    while queues:
        queue = rng.choice(queues)
        merged.append(queue.pop())
        if not queue:
            queues.remove(queue)
    return merged


def _conversation() -> list[tuple[str, bytes]]:
    """Messages of two incidents: opening, reports, an order and its updates, an acknowledgement."""
    first, second = make_incident(40), make_incident(41, cell=9, category=Category.FLOODING)
    messages = [_incident_message(first), _incident_message(second)]
    for incident in (first, second):
        for number, source in enumerate(("iot_mqtt", "hotline_12345", "citizen_app")):
            event = make_report(incident, number, source, number * 2)
            messages.append(
                (
                    "cityhub.events.a.b.c.d",
                    wire.encode(
                        type_=wire.TYPE_EVENT,
                        id_=event.id,
                        source="/x",
                        time=event.time,
                        data=event,
                        extensions={"incidentid": incident.id},
                    ),
                )
            )
        order = make_order(incident)
        messages.append(
            (
                "cityhub.dispatch.orders.gridworker",
                wire.encode(
                    type_=wire.TYPE_DISPATCH_ORDER, id_=order.id, source="/x", time=order.created_at, data=order
                ),
            )
        )
        for status, minutes in (
            (DispatchStatus.ACCEPTED, 3),
            (DispatchStatus.ON_SITE, 8),
            (DispatchStatus.RESOLVED, 20),
        ):
            update = make_update(order, status, minutes)
            messages.append(
                (
                    "cityhub.dispatch.updates.gridworker",
                    wire.encode(
                        type_=wire.TYPE_DISPATCH_UPDATE,
                        id_=f"{order.id}{status}",
                        source="/x",
                        time=update.time,
                        data=update,
                    ),
                )
            )
    acknowledged = first.model_copy(
        update={"state": IncidentState.ACKNOWLEDGED, "updated_at": T0 + timedelta(minutes=5)}
    )
    messages.append(
        (
            "cityhub.incidents.a.gas_leak.updated",
            wire.encode(
                type_="cityhub.incident.updated",
                id_="ack",
                source="/x",
                time=acknowledged.updated_at,
                data=acknowledged,
            ),
        )
    )
    return messages


def test_events_per_minute_slide_over_the_last_sixty_seconds():
    rates = EventRates()
    minute = T0.replace(second=0)
    for second in range(0, 60, 2):  # 30 events in the previous minute
        rates.add("iot_mqtt", minute - timedelta(seconds=60 - second))
    for second in range(0, 15):  # 15 so far in this one
        rates.add("iot_mqtt", minute + timedelta(seconds=second))
    rate = rates.per_source(minute + timedelta(seconds=20))["iot_mqtt"]
    assert (rate["last_minute"], rate["current"], rate["per_minute"]) == (30, 15, 35.0)
    assert sum(rate["series"]) == 45 and len(rate["series"]) == 30


async def test_a_cross_scope_incident_marks_each_incident_it_links_and_grows(nc, writer):
    """On a hub among tiers the dashboard follows the links stream too: each linked incident's summary names
    the cross-scope incident and every incident it links; a grown link (a third side) replaces it."""
    await ensure_streams(nc.jetstream(), tier=TierConfig(scope="city", children=["510104", "510105", "510106"]))
    live = LiveState(window=timedelta(days=3650), links=True)
    await live.start(nc)
    try:
        sides = [make_incident(number, cell=number) for number in (41, 42, 43)]
        for incident in sides:
            await writer.incident(incident)
        linked = [
            LinkedIncident(id=incident.id, scope=scope)
            for incident, scope in zip(sides, ("510104", "510105", "510106"), strict=True)
        ]
        first = CrossScopeIncident(
            id=f"xs-{sides[0].id}", category=Category.GAS_LEAK, linked_by="city", incidents=linked[:2], updated_at=T0
        )
        await writer.link(first)
        await wait_until(lambda: _cross_scope(live, sides[1].id) is not None, "the link on the second incident")
        assert (
            _cross_scope(live, sides[0].id)
            == _cross_scope(live, sides[1].id)
            == {
                "id": first.id,
                "linked_by": "city",
                "incidents": [{"id": sides[0].id, "scope": "510104"}, {"id": sides[1].id, "scope": "510105"}],
            }
        )
        assert _cross_scope(live, sides[2].id) is None

        await writer.link(first.model_copy(update={"incidents": linked}))
        await wait_until(lambda: _cross_scope(live, sides[2].id) is not None, "the grown link on the third")
        assert all(len(_cross_scope(live, incident.id)["incidents"]) == 3 for incident in sides)
        assert live.health()["unreadable"] == 0
    finally:
        await live.stop()


def _cross_scope(live: LiveState, incident_id: str) -> dict | None:
    page = live.incident(incident_id)
    return page["summary"]["cross_scope"] if page else None
