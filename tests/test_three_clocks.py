"""The three clocks through a real nats-server: a report's own time (merging), the hub's reception (deadlines,
escalation, response times) and the order's dispatch, acceptance and resolution. A late event — dated 6 h ago,
received now — is flagged late and escalates on its deadline counted from its reception, not at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import nats
from cloudevents.core.formats.json import JSONFormat

from hub import topology
from hub.escalation import Escalator
from hub.metrics import Metrics
from hub.models import utcnow
from hub.nats.streams import ensure_streams
from hub.pipeline import EventTimeWindow, Pipeline, PipelineOptions
from tests.pipeline_support import GAS_RULE, data_of, engines, event, ingest_item, publish_raw, read_stream
from tests.waiting import wait_until

ESCALATE_AFTER_S = 1
OPTIONS = PipelineOptions(batch_size=100, fetch_timeout_s=0.1, event_time=EventTimeWindow(late_after_s=1800))
QUICK_GAS_RULE = {
    **GAS_RULE,
    "actions": {**GAS_RULE["actions"], "route": ["gridworker"], "escalate_after_s": ESCALATE_AFTER_S},
}


def _time(message) -> datetime:  # noqa: ANN001
    return datetime.fromisoformat(JSONFormat().read(None, message.data).get_attributes()["time"].isoformat())


async def test_a_late_event_is_flagged_and_escalates_on_its_deadline_from_reception(nats_url):
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    pipeline = Pipeline(nc, engines([QUICK_GAS_RULE]), Metrics(), OPTIONS)
    escalator = Escalator(nc, tick_s=0.1)
    await pipeline.start()
    await escalator.start()
    happened = utcnow().replace(microsecond=0) - timedelta(hours=6)
    sent = utcnow()
    await publish_raw(nats_url, [ingest_item(event(1).model_copy(update={"time": happened}))])

    async def escalated() -> bool:
        return any(m.subject.endswith(".escalated") for m in await read_stream(nats_url, topology.INCIDENTS_STREAM))

    await wait_until(escalated, "the late event's order escalated")
    await escalator.stop()
    await pipeline.stop()
    await nc.close()

    [unified] = await read_stream(nats_url, topology.EVENTS_STREAM)
    report = data_of(unified)
    received = datetime.fromisoformat(report["received_at"])
    assert report["late"] is True and JSONFormat().read(None, unified.data).get_extension("late") is True
    assert datetime.fromisoformat(report["time"]) == happened and received >= sent - timedelta(seconds=1)

    incidents = await read_stream(nats_url, topology.INCIDENTS_STREAM)
    opened = data_of(incidents[0])
    assert opened["late"] is True and datetime.fromisoformat(opened["received_at"]) == received
    assert datetime.fromisoformat(opened["opened_at"]) == happened  # merging runs on the time it happened

    orders = [data_of(m) for m in await read_stream(nats_url, topology.DISPATCH_STREAM) if ".orders." in m.subject]
    first = next(order for order in orders if order["attempt"] == 1)
    dispatched, deadline = datetime.fromisoformat(first["created_at"]), datetime.fromisoformat(first["deadline"])
    assert dispatched == received and deadline == received + timedelta(seconds=ESCALATE_AFTER_S)
    [escalation] = [m for m in incidents if m.subject.endswith(".escalated")]
    assert _time(escalation) >= deadline  # on its deadline from reception, not at once for its age


async def test_an_event_on_time_is_not_late(nats_url):
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    pipeline = Pipeline(nc, engines([]), Metrics(), OPTIONS)
    await pipeline.start()
    await publish_raw(nats_url, [ingest_item(event(1).model_copy(update={"time": utcnow() - timedelta(minutes=5)}))])
    await wait_until(lambda: pipeline.counts["out"] == 1, "the event processed")
    await pipeline.stop()
    await nc.close()

    [unified] = await read_stream(nats_url, topology.EVENTS_STREAM)
    assert data_of(unified)["late"] is False and JSONFormat().read(None, unified.data).get_extension("late") is None
    [opened] = await read_stream(nats_url, topology.INCIDENTS_STREAM)
    assert data_of(opened)["late"] is False
    assert datetime.fromisoformat(data_of(opened)["received_at"]).tzinfo == UTC
