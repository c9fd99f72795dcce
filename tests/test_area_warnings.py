"""An area warning is one incident: it carries its area and the cells it touches, gets one dispatch order per
cell, is updated by a resent or updated warning (same id) and closes when it expires; the grids that do not
confirm are escalated on their deadline. Processed in memory, then through a real nats-server with the
escalator."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import nats

from hub import topology, wire
from hub.connector_runtime import encode_close_request
from hub.escalation import Escalator
from hub.metrics import Metrics
from hub.models import CloseRequest, DispatchStatus, DispatchUpdate, Incident, utcnow
from hub.nats.streams import ensure_streams
from hub.pipeline import BatchProcessor, IngestMessage, Pipeline, PipelineOptions, PipelineState
from tests.pipeline_support import (
    T0,
    WARNING_CELLS,
    area_warning,
    data_of,
    engines,
    event,
    ingest_item,
    publish_raw,
    read_stream,
)
from tests.waiting import wait_until

AREA_RULE = {
    "id": "area",
    "priority": 5,
    "when": 'category == "area_warning"',
    "actions": {"route": ["gridworker", "dept:emergency"], "escalate_after_s": 1},
}
CELL_TARGETS = [f"cell:{cell.id}" for cell in WARNING_CELLS]


def _process(items: list[tuple[str, bytes]]):  # noqa: ANN202
    processor = BatchProcessor(engines([AREA_RULE]), PipelineOptions())
    state = PipelineState.fresh(processor.engines)
    messages = [IngestMessage(seq, subject, raw, time.time()) for seq, (subject, raw) in enumerate(items, start=1)]
    return state, processor.process(state, messages)


def _published(result, kind: str) -> list[tuple[str, dict]]:  # noqa: ANN001
    return [
        (output.subject, wire.decode(output.data)["data"])
        for output in result.outputs
        if output.subject.startswith(f"cityhub.{kind}.")
    ]


def test_a_warning_resent_and_updated_is_one_incident_with_one_order_per_cell():
    first, update = area_warning(1, cells=2), area_warning(2, seconds=60, cells=3)
    state, result = _process([ingest_item(first), ingest_item(first), ingest_item(update)])

    assert result.duplicates == 1
    changes = [(subject.rsplit(".", 1)[1], data) for subject, data in _published(result, "incidents")]
    assert [change for change, _ in changes] == ["opened", "merged"]
    [(_, opened), (_, merged)] = changes
    assert opened["id"] == merged["id"] and merged["report_count"] == 2
    assert [cell["id"] for cell in merged["area"]["cells"]] == [cell.id for cell in WARNING_CELLS]
    assert merged["area"]["geometry"]["type"] == "Polygon" and Incident.model_validate(merged).area is not None
    orders = [data for _, data in _published(result, "dispatch")]
    assert sorted(order["target"] for order in orders) == sorted([*CELL_TARGETS, "dept:emergency"])
    assert {order["incident_id"] for order in orders} == {opened["id"]}
    for order in orders:  # each cell's order names its cell and goes to that cell's grid worker
        if order["target"].startswith("cell:"):
            assert (
                order["grid_cell"]["id"] == order["target"].removeprefix("cell:") and order["connector"] == "gridworker"
            )
    assert len(state.incidents) == 1


def test_a_warning_closes_when_it_expires_and_an_expired_update_closes_it_at_once():
    expiring = area_warning(1, warning="CB-1", expires_in_s=60)
    later = event(7, seconds=120)  # any report whose clock passes the expiry
    cancelled = area_warning(1, warning="CB-2", expires_in_s=0)
    _, result = _process([ingest_item(expiring), ingest_item(later), ingest_item(cancelled)])

    closed = [data for subject, data in _published(result, "incidents") if subject.endswith(".closed")]
    assert [data["closed_reason"] for data in closed] == ["the area warning expired"] * 2
    assert datetime.fromisoformat(closed[0]["updated_at"]) == T0 + timedelta(seconds=60)  # dated by the expiry
    incident_of = {
        data["event_ids"][0]: data["id"] for _, data in _published(result, "incidents") if data.get("event_ids")
    }
    events = {data["source_event_id"]: data["id"] for _, data in _published(result, "events")}
    assert [data["id"] for data in closed] == [incident_of[events["CB-1:v1"]], incident_of[events["CB-2:v1"]]]


def test_a_close_request_closes_a_warning_and_its_next_report_opens_a_new_one():
    state, opened = _process([ingest_item(area_warning(1))])
    [(_, incident)] = _published(opened, "incidents")
    request = CloseRequest(incident_id=incident["id"], reason="lifted", time=T0 + timedelta(seconds=30))
    _, result = _process(
        [
            ingest_item(area_warning(1)),
            (topology.ingest_subject("ops"), encode_close_request(request, "ops")[1]),
            ingest_item(area_warning(2, seconds=60)),
        ]
    )
    changes = [(subject.rsplit(".", 1)[1], data["id"]) for subject, data in _published(result, "incidents")]
    assert changes[:2] == [("opened", incident["id"]), ("closed", incident["id"])]
    assert changes[2][0] == "opened" and changes[2][1] != incident["id"]


async def test_unconfirmed_grids_escalate_on_their_deadline_and_one_grid_resolving_does_not_close_the_warning(nats_url):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    pipeline = Pipeline(nc, engines([AREA_RULE]), Metrics(), PipelineOptions(batch_size=100, fetch_timeout_s=0.1))
    await pipeline.start()
    await publish_raw(nats_url, [ingest_item(area_warning(1, time=utcnow()))])

    async def orders() -> list[dict]:
        return [data_of(m) for m in await read_stream(nats_url, topology.DISPATCH_STREAM) if ".orders." in m.subject]

    await wait_until(lambda: _count(orders, 4), "an order per cell and one to the department")
    first = {order["target"]: order for order in await orders()}
    confirmed, unconfirmed = CELL_TARGETS[:2], CELL_TARGETS[2]
    for target in confirmed:  # two grid workers confirm
        await _report(js, first[target], DispatchStatus.ACCEPTED)
    await _report(js, first[confirmed[0]], DispatchStatus.RESOLVED)  # one grid done: not the warning
    last = (await js.stream_info(topology.DISPATCH_STREAM)).state.last_seq
    reader = Escalator(nc, tick_s=3600)  # takes in orders and confirmations, fires nothing
    await reader.start()
    await wait_until(lambda: reader.follower.health()["next_sequence"] > last, "orders and confirmations read")
    await reader.stop()
    escalator = Escalator(nc, tick_s=0.1)  # the same durable consumer and deadlines, now firing
    await escalator.start()

    async def escalated() -> bool:
        return {order["target"] for order in await orders() if order["attempt"] == 2} == {unconfirmed, "dept:emergency"}

    await wait_until(escalated, "the unconfirmed grid and the department re-dispatched on their deadline")
    await _report(js, first["dept:emergency"], DispatchStatus.RESOLVED)  # closes the incident, after the grid's
    await wait_until(lambda: _closed(nats_url), "the incident closed by the department's resolution")
    await escalator.stop()
    await pipeline.stop()
    await nc.close()

    requests = [
        m for m in await read_stream(nats_url, topology.INGEST_STREAM) if m.subject == "cityhub.ingest.dispatch"
    ]
    assert len(requests) == 1 and "dept:emergency" in data_of(requests[0])["reason"]
    escalation = next(
        m for m in await read_stream(nats_url, topology.INCIDENTS_STREAM) if m.subject.endswith(".escalated")
    )
    deadline = datetime.fromisoformat(first[unconfirmed]["deadline"])
    assert datetime.fromisoformat(wire.decode(escalation.data)["time"]) >= deadline


async def _count(orders, expected: int) -> bool:  # noqa: ANN001
    return len(await orders()) >= expected


async def _closed(nats_url: str) -> bool:
    return any(m.subject.endswith(".closed") for m in await read_stream(nats_url, topology.INCIDENTS_STREAM))


async def _report(js, order: dict, status: DispatchStatus) -> None:  # noqa: ANN001
    update = DispatchUpdate(
        order_id=order["id"], incident_id=order["incident_id"], status=status, time=datetime.now(UTC), actor="网格员"
    )
    raw = wire.encode(
        type_=wire.TYPE_DISPATCH_UPDATE,
        id_=f"{order['id']}:{status}",
        source=wire.source_uri("gridworker"),
        time=update.time,
        data=update,
    )
    await js.publish(topology.dispatch_update_subject("gridworker"), raw)
