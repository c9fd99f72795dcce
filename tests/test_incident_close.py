"""Closing incidents on request: a resolved dispatch order or ops through the admin API. The request goes
through ingest, so the pipeline applies it in order with the reports."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest

from hub import topology, wire
from hub.app import Hub
from hub.connector_runtime import encode_close_request
from hub.models import CloseRequest, DispatchStatus, DispatchUpdate, Incident
from hub.pipeline import BatchProcessor, IngestMessage, PipelineOptions, PipelineState
from tests.pipeline_support import T0, data_of, engines, event, hub_toml, ingest_item, publish_raw, read_stream
from tests.waiting import wait_until

GAS_TO_GRIDWORKER = """
[[rules]]
id = "gas"
when = 'category == "gas_leak"'
actions = { route = ["gridworker"] }
"""


def _close_item(incident_id: str, requester: str = "ops") -> tuple[str, bytes]:
    request = CloseRequest(incident_id=incident_id, reason="handled", time=T0 + timedelta(seconds=30))
    return topology.ingest_subject(requester), encode_close_request(request, requester)[1]


def _process(items: list[tuple[str, bytes]]):  # noqa: ANN202
    processor = BatchProcessor(engines(), PipelineOptions())
    state = PipelineState.fresh(processor.engines)
    result = processor.process(
        state, [IngestMessage(seq, subject, raw, time.time()) for seq, (subject, raw) in enumerate(items, start=1)]
    )
    return state, result


def _incident_changes(result) -> list[tuple[str, dict]]:  # noqa: ANN001
    changes = [output for output in result.outputs if output.subject.startswith("cityhub.incidents.")]
    return [(output.subject.rsplit(".", 1)[1], wire.decode(output.data)["data"]) for output in changes]


def test_reports_before_a_close_join_the_incident_and_reports_after_it_open_a_new_one():
    first_state, first = _process([ingest_item(event(0))])
    [(_, opened)] = _incident_changes(first)
    incident_id = opened["id"]

    state, result = _process(
        [
            ingest_item(event(0)),
            ingest_item(event(1, offset_m=5)),
            _close_item(incident_id),
            ingest_item(event(2, offset_m=10)),
        ]
    )
    changes = _incident_changes(result)
    closed = [data for change, data in changes if change == "closed"]
    assert len(closed) == 1 and closed[0]["id"] == incident_id
    assert Incident.model_validate(closed[0]).report_count == 2
    assert closed[0]["closed_reason"] == "handled (ops)" and closed[0]["state"] == "closed"
    [(change, reopened)] = [(c, d) for c, d in changes if d["id"] != incident_id]
    assert change == "opened" and reopened["report_count"] == 1
    assert result.closed == 1 and incident_id not in state.incidents


def test_a_close_for_an_incident_that_is_not_open_changes_nothing():
    state, result = _process([ingest_item(event(0)), _close_item("inc-" + "0" * 26)])
    assert result.closed == 0 and not [c for c, _ in _incident_changes(result) if c == "closed"]
    assert len(state.incidents) == 1


def test_a_close_request_from_a_source_that_may_not_close_lands_in_the_dlq():
    _, opened = _process([ingest_item(event(0))])
    [(_, incident)] = _incident_changes(opened)
    state, result = _process([ingest_item(event(0)), _close_item(incident["id"], requester="iot_mqtt")])
    [rejection] = result.rejected
    assert "cityhub.ingest.ops and cityhub.ingest.dispatch" in rejection.reason
    assert result.closed == 0 and incident["id"] in state.incidents


@pytest.mark.parametrize(
    ("incident_id", "why"),
    [
        ("inc-unknown", "'inc-unknown' is not an incident id"),
        ("inc-" + "0" * 26 + "\r\nforged", "control character U+000D at position 30"),
    ],
)
def test_a_close_request_for_what_is_not_an_incident_id_lands_in_the_dlq_saying_why(incident_id, why):
    data = {"incident_id": incident_id, "reason": "handled", "time": T0.isoformat()}
    raw = wire.encode(type_=wire.TYPE_CLOSE_REQUEST, id_="c1", source="/x", time=T0, data=data)
    _, result = _process([("cityhub.ingest.ops", raw)])
    [rejection] = result.rejected
    assert rejection.kind == "invalid" and rejection.reason.startswith("close request incident_id: ")
    assert why in rejection.reason


def test_a_malformed_close_request_lands_in_the_dlq():
    raw = wire.encode(type_=wire.TYPE_CLOSE_REQUEST, id_="c1", source="/x", time=T0, data={"incident_id": ""})
    _, result = _process([("cityhub.ingest.ops", raw)])
    [rejection] = result.rejected
    assert rejection.kind == "invalid" and "close request" in rejection.reason
    assert [output.subject for output in result.outputs] == ["cityhub.dlq.ops"]


@pytest.fixture
async def hub(tmp_path, nats_url):
    path = tmp_path / "cityhub.toml"
    path.write_text(hub_toml(nats_url, GAS_TO_GRIDWORKER, token="close-token"))
    running = Hub.from_file(path)
    await running.start(connectors=False)
    yield running
    await running.stop()


async def _closed(nats_url: str) -> list[dict]:
    return [data_of(m) for m in await read_stream(nats_url, topology.INCIDENTS_STREAM) if m.subject.endswith(".closed")]


async def test_a_resolved_order_and_an_ops_request_close_their_incidents(hub, nats_url):
    await publish_raw(nats_url, [ingest_item(event(0)), ingest_item(event(1, offset_m=5_000))])
    await wait_until(lambda: len(hub.pipeline.state.incidents) == 2, "two incidents open")
    orders = [data_of(m) for m in await read_stream(nats_url, topology.DISPATCH_STREAM)]
    resolved_order = next(order for order in orders if order["connector"] == "gridworker")
    by_ops = next(incident for incident in hub.pipeline.state.incidents if incident != resolved_order["incident_id"])

    update = DispatchUpdate(
        order_id=resolved_order["id"],
        incident_id=resolved_order["incident_id"],
        status=DispatchStatus.RESOLVED,
        time=T0 + timedelta(minutes=20),
        actor="王网格员",
    )
    raw = wire.encode(
        type_=wire.TYPE_DISPATCH_UPDATE, id_="u-1", source="/cityhub/gridworker", time=update.time, data=update
    )
    await hub.nc.jetstream().publish(topology.dispatch_update_subject("gridworker"), raw)
    async with httpx.AsyncClient(base_url=hub.admin_url) as client:
        refused = await client.post(f"/incidents/{by_ops}/close", json={"reason": "false alarm"})
        accepted = await client.post(
            f"/incidents/{by_ops}/close",
            json={"reason": "false alarm"},
            headers={"Authorization": "Bearer close-token"},
        )
    assert refused.status_code == 401 and accepted.status_code == 202
    await wait_until(lambda: hub.pipeline.counts["closed"] == 2, "both incidents closed")

    reasons = {closed["id"]: closed["closed_reason"] for closed in await _closed(nats_url)}
    assert reasons == {
        resolved_order["incident_id"]: f"order {resolved_order['id']} resolved by 王网格员 (gridworker) (dispatch)",
        by_ops: "false alarm (ops)",
    }
    assert not hub.pipeline.state.incidents
