"""Events the geofence places nowhere: to triage (``no_cell``) and the configured fallback route, never to a
grid worker, through a real nats-server."""

from __future__ import annotations

import dataclasses

import nats

from hub import topology
from hub.metrics import Metrics
from hub.models import Category, Location, Triage
from hub.nats.streams import ensure_streams
from hub.pipeline import Pipeline, PipelineOptions
from tests.pipeline_support import GAS_RULE, data_of, engines, event, ingest_item, publish_raw, read_stream
from tests.waiting import wait_until

OPTIONS = PipelineOptions(batch_size=100, fetch_timeout_s=0.1)
BEIJING = Location(lon=116.397, lat=39.909)  # far outside the Chengdu sample grids


async def _processed(nats_url: str, items: list, unplaced_route: tuple[str, ...]) -> None:
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    pipeline = Pipeline(nc, dataclasses.replace(engines([GAS_RULE]), unplaced_route=unplaced_route), Metrics(), OPTIONS)
    await pipeline.start()
    await publish_raw(nats_url, items)
    await wait_until(lambda: pipeline.counts["out"] == len(items), "every event processed")
    await pipeline.stop()
    await nc.close()


async def test_an_out_of_area_event_lands_in_triage_and_takes_the_fallback_route(nats_url):
    outside = event(1).model_copy(update={"location": BEIJING})
    unlocated = event(2, category=Category.NOISE, offset_m=5000).model_copy(update={"location": None})
    inside = event(3).model_copy(update={"triage": Triage.NO_CELL})  # the sender's word for it is not taken
    await _processed(nats_url, [ingest_item(e) for e in (outside, unlocated, inside)], ("dept:district_duty",))

    events = {data_of(m)["source_event_id"]: m for m in await read_stream(nats_url, topology.EVENTS_STREAM)}
    assert data_of(events["e-1"])["triage"] == "no_cell" and events["e-1"].subject.startswith("cityhub.events._._.")
    assert data_of(events["e-2"])["triage"] == "no_cell" and "triage" not in data_of(events["e-3"])
    incidents = [data_of(m) for m in await read_stream(nats_url, topology.INCIDENTS_STREAM)]
    assert sorted(i.get("triage", "placed") for i in incidents) == ["no_cell", "no_cell", "placed"]

    orders = [(m.subject, data_of(m)) for m in await read_stream(nats_url, topology.DISPATCH_STREAM)]
    by_event = {incident["event_ids"][0]: incident["id"] for incident in incidents}
    ids = {data_of(m)["source_event_id"]: by_event[data_of(m)["id"]] for m in events.values()}
    targets = {
        source_id: sorted(o["target"] for _, o in orders if o["incident_id"] == incident_id)
        for source_id, incident_id in ids.items()
    }
    assert targets == {
        "e-1": ["dept:district_duty"],  # the gas rule's gridworker and dept:fire replaced
        "e-2": ["dept:district_duty"],  # no rule matched: triage still needs someone
        "e-3": ["dept:fire", "gridworker"],
    }
    triage_orders = [(subject, o) for subject, o in orders if o["target"] == "dept:district_duty"]
    assert all(subject == "cityhub.dispatch.orders.dept_district_duty" for subject, _ in triage_orders)
    gas_triage = next(o for _, o in triage_orders if o["incident_id"] == ids["e-1"])
    assert gas_triage["deadline"] is not None  # the gas rule's escalate_after still applies
