"""The dashboard's LiveState: how fast it follows the unified stream, beside the consumer a user would
otherwise write (the CloudEvents SDK and the pydantic models, keeping only the latest incident and its
reports), and what its queries cost with 10,000 open incidents."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat

from hub import wire
from hub.dashboard.state import LiveState
from hub.models import Event, Incident, Severity
from tests.dashboard.stream_samples import T0, make_incident, make_report

INCIDENTS = 10_000
STREAM_GROUP = f"Dashboard: follow the unified stream ({INCIDENTS:,} incidents + {INCIDENTS:,} reports)"
QUERY_GROUP = f"Dashboard: queries with {INCIDENTS:,} open incidents"


def stream_messages() -> list[tuple[str, bytes]]:
    messages = []
    for number in range(INCIDENTS):
        incident = make_incident(number, cell=number, severity=list(Severity)[number % 5])
        report = make_report(incident, 1, "iot_mqtt", 0)
        messages.append(
            (
                "cityhub.incidents.x.gas_leak.opened",
                wire.encode(
                    type_="cityhub.incident.opened",
                    id_=incident.id,
                    source="/cityhub/pipeline",
                    time=incident.opened_at,
                    data=incident,
                ),
            )
        )
        messages.append(
            (
                "cityhub.events.x.y.gas_leak.high",
                wire.encode(
                    type_=wire.TYPE_EVENT,
                    id_=report.id or "",
                    source="/cityhub/iot_mqtt",
                    time=report.time,
                    data=report,
                    extensions={"incidentid": incident.id},
                ),
            )
        )
    return messages


@pytest.fixture(scope="module")
def messages() -> list[tuple[str, bytes]]:
    return stream_messages()


@pytest.fixture(scope="module")
def full_state(messages) -> LiveState:
    """10,000 open incidents; its clock moves a second per reading, so figures are computed every time."""
    seconds = itertools.count()
    state = LiveState(clock=lambda: T0 + timedelta(seconds=next(seconds)))
    for subject, raw in messages:
        state.apply(subject, raw, T0)
    return state


def test_livestate_follows_the_stream(benchmark, messages):
    def follow() -> LiveState:
        state = LiveState(clock=lambda: T0)
        for subject, raw in messages:
            state.apply(subject, raw, T0)
        return state

    benchmark.group = STREAM_GROUP
    benchmark.extra_info.update(
        items=len(messages), role="cityhub", note="reports in time order, orders, cell counts, response-time figures"
    )
    state = benchmark.pedantic(follow, rounds=5, iterations=1)
    assert state.figures()["open"] == INCIDENTS


def test_sdk_and_pydantic_consumer(benchmark, messages):
    """The peer: parse each message with the CloudEvents SDK, validate its data with the pydantic model."""

    def follow() -> dict[str, dict[str, Any]]:
        incidents: dict[str, dict[str, Any]] = {}
        reader = JSONFormat()
        for _, raw in messages:
            event = reader.read(None, raw)
            if event.get_type() == wire.TYPE_EVENT:
                report = Event.model_validate(event.get_data())
                incident_id = event.get_extension("incidentid")
                incidents.setdefault(incident_id, {"reports": []})["reports"].append(report)
            else:
                incident = Incident.model_validate(event.get_data())
                incidents.setdefault(incident.id, {"reports": []})["incident"] = incident
        return incidents

    benchmark.group = STREAM_GROUP
    benchmark.extra_info.update(
        items=len(messages), role="peer", note="latest incident + its reports only; no figures, no cell counts"
    )
    incidents = benchmark.pedantic(follow, rounds=5, iterations=1)
    assert len(incidents) == INCIDENTS


def test_figures(benchmark, full_state):
    benchmark.group = QUERY_GROUP
    benchmark.extra_info.update(items=1, role="sanity", note="GET /api/figures, every 2 s per open page")
    assert benchmark(full_state.figures)["open"] == INCIDENTS


def test_filtered_list(benchmark, full_state):
    benchmark.group = QUERY_GROUP
    benchmark.extra_info.update(items=1, role="sanity", note="GET /api/incidents?severity=critical")
    assert len(benchmark(full_state.incidents, {"severity": "critical"})) == INCIDENTS // 5


def test_page_snapshot(benchmark, full_state):
    benchmark.group = QUERY_GROUP
    benchmark.extra_info.update(items=1, role="sanity", note="the first server-sent event a page receives")
    snapshot = benchmark(lambda: orjson.dumps({"incidents": full_state.incidents({"status": "all"})}))
    assert len(orjson.loads(snapshot)["incidents"]) == INCIDENTS
