"""hotline12345 contract tests: the connector against the simulated hotline (a real Open311 server replaying
real Boston 311 records, a real signed webhook sender), through a real nats-server."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import cityhub_hotline12345
from cityhub_hotline12345.connector import Hotline12345Connector
from cityhub_hotline12345.open311 import request_to_event
from cityhub_hotline12345.settings import Hotline12345Settings, Open311Settings
from cityhub_hotline12345.simulator import HotlineSimulator
from cityhub_hotline12345.workorder import feedback_for
from hub import topology, wire
from hub.connector_kit.http import RetrySettings
from hub.connector_runtime import running_connector
from hub.errors import DeliveryRejected, InvalidEventError
from hub.models import Category, CoordSystem, DispatchOrder, DispatchStatus, DispatchUpdate, ReportRef, Severity
from hub.testing import dead_letters, ingested_events, publish_outbound
from tests.waiting import wait_until

OPEN311_DATA = Path(__file__).resolve().parents[1] / "data" / "open311"
WEBHOOK_SECRET = "webhook-secret"
FEEDBACK_SECRET = "feedback-secret"
BOSTON_CATEGORIES = Path(cityhub_hotline12345.__file__).parent / "data" / "boston_service_categories.toml"
SAMPLE_SERVICE_CATEGORIES = tomllib.loads(BOSTON_CATEGORIES.read_text())["service_categories"]
FAST_RETRY = RetrySettings(initial_s=0.05, max_s=0.2, attempts=2, timeout_s=5)


def _settings(sim: HotlineSimulator, **open311: object) -> Hotline12345Settings:
    return Hotline12345Settings.model_validate(
        {
            "open311": {
                "base_url": sim.open311_url,
                "poll_interval_s": 0.1,
                "page_size": 7,
                "timeout_s": 5,
                "backoff": {"initial_s": 0.05, "max_s": 0.2},
                "service_categories": SAMPLE_SERVICE_CATEGORIES,
                **open311,
            },
            "webhook": {"secret": WEBHOOK_SECRET, "listen": {"port": 0}},
            "outbound": {"base_url": sim.feedback_url, "secret": FEEDBACK_SECRET, "retry": FAST_RETRY},
        }
    )


@pytest.fixture
async def sim():
    simulator = await HotlineSimulator(
        feedback_secret=FEEDBACK_SECRET, webhook_secret=WEBHOOK_SECRET, released=40
    ).start()
    yield simulator
    await simulator.stop()


async def _webhook_ready(connector: Hotline12345Connector, sim: HotlineSimulator) -> None:
    await wait_until(lambda: connector.webhook is not None and connector.webhook.port is not None)
    sim.webhook_url = f"{connector.webhook.url}{connector.settings.webhook.path}"


def _current_versions(sim: HotlineSimulator) -> tuple[set[str], set[str]]:
    """Msg ids of the requests' current versions (a poller sees each request as it reads at poll time), for the
    requests with a category mapping and for those without (which go to the DLQ)."""
    versions = {rid: f"hotline12345:open311:{rid}:{r['status']}" for rid, r in sim._requests.items()}
    mapped = {rid for rid, r in sim._requests.items() if r["service_code"] in SAMPLE_SERVICE_CATEGORIES}
    return {versions[rid] for rid in mapped}, {v for rid, v in versions.items() if rid not in mapped}


async def test_open311_requests_and_status_changes_reach_ingest_once(nats_url, sim):
    connector = Hotline12345Connector(_settings(sim))
    async with running_connector(connector, nats_url) as ctx:
        first_ids, first_unmapped = _current_versions(sim)
        await wait_until(lambda: ctx.counters["published"] >= len(first_ids))
        sim.advance(sim.remaining)  # the rest of January: new requests and closings
        later_ids, later_unmapped = _current_versions(sim)
        all_ids, unmapped = first_ids | later_ids, first_unmapped | later_unmapped
        await wait_until(
            lambda: ctx.counters["published"] >= len(all_ids) and ctx.counters["rejected"] >= len(unmapped)
        )

    events = await ingested_events(nats_url, "hotline12345")
    assert {msg_id for msg_id, _ in events} == all_ids
    assert len(events) == len(all_ids)
    closed = [event for _, event in events if event.status == "closed"]
    reopened_as_closed = {e.source_event_id for _, e in events if e.status == "open"} & {
        e.source_event_id for e in closed
    }
    assert reopened_as_closed, "some requests seen open first must come again as closed: a status change"
    assert {event.location.crs for _, event in events if event.location} == {CoordSystem.WGS84}
    rejected = await dead_letters(nats_url, "hotline12345")
    assert len(rejected) == len(unmapped)
    assert all("has no category mapping" in reason for _, reason in rejected)
    assert json.loads(rejected[0][0])["service_request_id"]
    assert sorted(connector.unmapped_services) == [
        "ANIMAL_GENERIC_REQUEST",
        "GENERAL_COMMENTS_FOR_A_PROGRAM_OR_POLICY",
        "SHORT_TERM_RENTAL",
    ]


async def test_cursor_survives_a_restart_nothing_twice_nothing_lost(nats_url, sim):
    first = Hotline12345Connector(_settings(sim))
    async with running_connector(first, nats_url) as ctx:
        first_ids, _ = _current_versions(sim)
        await wait_until(lambda: ctx.counters["published"] >= len(first_ids))
        polled_at = first.last_poll
        await wait_until(lambda: first.last_poll != polled_at)  # a whole poll finished: its cursor is stored
    sim.advance(30)
    all_ids = first_ids | _current_versions(sim)[0]
    async with running_connector(Hotline12345Connector(_settings(sim)), nats_url) as ctx:
        await wait_until(lambda: ctx.counters["published"] >= len(all_ids - first_ids))
        assert ctx.counters["published"] == len(all_ids - first_ids)

    events = await ingested_events(nats_url, "hotline12345")
    assert sorted(msg_id for msg_id, _ in events) == sorted(all_ids)


async def test_open311_outage_is_retried_with_backoff(nats_url, sim):
    sim.available = False
    connector = Hotline12345Connector(_settings(sim))
    async with running_connector(connector, nats_url) as ctx:
        await wait_until(lambda: ctx.counters["poll_errors"] >= 3)
        assert connector.open311_reachable is False
        sim.available = True
        expected, _ = _current_versions(sim)
        await wait_until(lambda: ctx.counters["published"] >= len(expected))
        # reachable once the poll that published them ends (it reads the pages again until they bring nothing new)
        await wait_until(lambda: connector.health()["open311_reachable"] is True, "Open311 reachable again")
    assert {msg_id for msg_id, _ in await ingested_events(nats_url, "hotline12345")} == expected


async def test_nats_restart_mid_stream_loses_nothing(nats_server, sim):
    connector = Hotline12345Connector(_settings(sim))
    async with running_connector(connector, nats_server.url) as ctx:
        first_ids, _ = _current_versions(sim)
        await wait_until(lambda: ctx.counters["published"] >= len(first_ids))
        nats_server.kill()
        sim.advance(sim.remaining)
        later_ids, _ = _current_versions(sim)
        await wait_until(lambda: ctx.counters["poll_errors"] >= 1)
        nats_server.start()
        await wait_until(lambda: ctx.counters["published"] >= len(first_ids | later_ids))
    assert sorted(msg_id for msg_id, _ in await ingested_events(nats_server.url, "hotline12345")) == sorted(
        first_ids | later_ids
    )


async def test_signed_work_order_becomes_an_event_with_caller_as_reporter(nats_url, sim):
    connector = Hotline12345Connector(_settings(sim, enabled=False))
    async with running_connector(connector, nats_url) as ctx:
        await _webhook_ready(connector, sim)
        order = sim.sample_order(datetime(2026, 7, 1, 9, 30, tzinfo=UTC))
        response = await sim.send_order(order)
        assert response.status_code == 200, response.text
        assert (await sim.send_order(order)).status_code == 200  # the hotline resends: stored once
        await wait_until(lambda: ctx.counters["orders_published"] == 2)

    [(msg_id, event)] = await ingested_events(nats_url, "hotline12345")
    assert msg_id == f"hotline12345:order:{order['order_no']}:1:open"
    assert event.reporter.name == order["caller"]["name"] and event.reporter.phone == order["caller"]["phone"]
    assert order["caller"]["phone"] not in json.dumps(event.payload) + (event.text or "")
    assert event.location.crs is CoordSystem.GCJ02
    assert (event.location.lon, event.location.lat) == (order["location"]["lng"], order["location"]["lat"])
    assert event.payload["deadline"] == order["deadline"]
    assert event.address == order["address"]


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda sim, order: sim.send_order(order, secret="wrong"), 401, "does not match"),
        (lambda sim, order: sim.send_order(order, timestamp=1_000_000), 401, "away from now"),
        (lambda sim, order: sim.send_order(b"{not json"), 422, "work order rejected"),
        (lambda sim, order: sim.send_order({**order, "category": "外星人入侵"}), 422, "is not mapped"),
        (lambda sim, order: sim.send_order({**order, "created_at": "2026-07-01T09:30:00"}), 422, "created_at"),
        (lambda sim, order: sim.send_order({**order, "description": "长" * 300_000}), 413, "exceeds the limit"),
    ],
    ids=["bad-signature", "stale-timestamp", "not-json", "unknown-category", "naive-time", "oversized"],
)
async def test_bad_work_orders_get_a_clear_4xx_and_a_dlq_entry(nats_url, sim, mutate, status, reason):
    connector = Hotline12345Connector(_settings(sim, enabled=False))
    async with running_connector(connector, nats_url):
        await _webhook_ready(connector, sim)
        response = await mutate(sim, sim.sample_order())
    assert response.status_code == status
    assert reason in response.json()["error"]
    [(_, dlq_reason)] = await dead_letters(nats_url, "hotline12345")
    assert reason in dlq_reason
    assert await ingested_events(nats_url, "hotline12345") == []


async def test_feedback_waits_in_jetstream_while_the_hotline_is_down(nats_url, sim):
    sim.available = False
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    subject = topology.dispatch_order_subject("hotline12345")
    resolved = DispatchUpdate(
        order_id="CD12345-20260701-000001",
        incident_id="inc-1",
        status=DispatchStatus.RESOLVED,
        time=now,
        actor="成华区网格员",
        note="已修复",
    )
    evaluation = {"order_no": "CD12345-20260701-000001", "action": "evaluate", "time": now.isoformat(), "evaluation": 5}
    on_site = resolved.model_copy(update={"status": DispatchStatus.ON_SITE})
    async with running_connector(Hotline12345Connector(_settings(sim, enabled=False)), nats_url) as ctx:
        await publish_outbound(nats_url, subject, wire.TYPE_DISPATCH_UPDATE, "u-1", now, resolved)
        await publish_outbound(nats_url, subject, wire.TYPE_DISPATCH_UPDATE, "u-2", now, on_site)
        await publish_outbound(nats_url, subject, "cityhub.hotline12345.feedback", "f-1", now, evaluation)
        await wait_until(lambda: ctx.counters["deliver_failed"] >= 2)
        assert sim.feedback == []
        sim.available = True
        await wait_until(lambda: ctx.counters["delivered"] == 3)

    assert [(item["action"], item["order_no"]) for item in sim.feedback] == [
        ("resolve", "CD12345-20260701-000001"),
        ("evaluate", "CD12345-20260701-000001"),
    ]
    assert sim.feedback[0]["handler"] == "成华区网格员" and sim.feedback[1]["evaluation"] == 5


async def test_feedback_refused_by_the_hotline_goes_to_the_dlq(nats_url, sim):
    settings = _settings(sim, enabled=False)
    settings.outbound.secret = settings.webhook.secret  # the hotline will not recognise our signature
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    feedback = {"order_no": "CD-1", "action": "accept", "time": now.isoformat()}
    async with running_connector(Hotline12345Connector(settings), nats_url) as ctx:
        await publish_outbound(
            nats_url,
            topology.dispatch_order_subject("hotline12345"),
            "cityhub.hotline12345.feedback",
            "f-1",
            now,
            feedback,
        )
        await wait_until(lambda: ctx.counters["rejected"] == 1)
    [(_, reason)] = await dead_letters(nats_url, "hotline12345")
    assert "refused by the external system" in reason and "401" in reason


def test_real_boston_open311_request_maps_to_an_event():
    record = json.loads((OPEN311_DATA / "boston_open311_request.json").read_text())
    services = json.loads((OPEN311_DATA / "boston_open311_services.json").read_text())
    assert record["service_code"] in {service["service_code"] for service in services}
    settings = Open311Settings(service_categories={record["service_code"]: Category.SANITATION})
    event = request_to_event(record, settings)
    assert event.source_event_id == f"open311:{record['service_request_id']}"
    assert event.status == "open" and event.category == Category.SANITATION
    assert [a.url for a in event.attachments] == [m["url"] for m in record["media_url"]]
    assert event.time.utcoffset() is not None
    assert "contact" not in event.payload


def test_a_request_the_hub_cannot_take_is_refused_in_open311_words():
    """The reason names the sender's fields (``description``, ``requested_datetime``), never the hub's (``text``)."""
    record = json.loads((OPEN311_DATA / "boston_open311_request.json").read_text())
    settings = Open311Settings(service_categories={record["service_code"]: Category.SANITATION})
    with pytest.raises(InvalidEventError) as refused:
        request_to_event({**record, "description": "x" * 9000}, settings)
    assert refused.value.reason.startswith(f"request {record['service_request_id']}: description: String should have")
    assert refused.value.kind == "invalid" and "text" not in refused.value.reason


async def test_open311_server_answers_bad_queries_with_the_spec_error_body(sim):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{sim.open311_url}/requests.json", params={"updated_after": "yesterday"})
    assert response.status_code == 400
    [error] = response.json()
    assert error["code"] == 400 and "bad query parameter" in error["description"]


def _order_with(reports: list[ReportRef], attempt: int = 1) -> DispatchOrder:
    return DispatchOrder(
        id=f"inc-1:connector:hotline12345:{attempt}",
        incident_id="inc-1",
        target="connector:hotline12345",
        connector="hotline12345",
        category=Category.GAS_LEAK,
        severity=Severity.CRITICAL,
        summary="gas_leak (critical) at 红星路三段1号",
        created_at=datetime(2026, 7, 1, 9, 31, tzinfo=UTC),
        attempt=attempt,
        reports=reports,
    )


def test_a_dispatch_order_answers_the_work_order_among_its_reports():
    reports = [
        ReportRef(source="iot_mqtt", source_event_id="GAS-JJ-0001:alarm:1"),
        ReportRef(source="hotline12345", source_event_id="order:CD12345-20260701-000001:2"),
    ]
    accept = feedback_for(_order_with(reports))
    assert accept is not None and (accept.order_no, accept.action) == ("CD12345-20260701-000001", "accept")
    redispatch = feedback_for(
        _order_with([ReportRef(source="hotline12345", source_event_id="open311:101004113371")], 2)
    )
    assert redispatch is not None and (redispatch.order_no, redispatch.action) == ("101004113371", "redispatch")
    with pytest.raises(DeliveryRejected, match="no 12345 report"):
        feedback_for(_order_with(reports[:1]))
