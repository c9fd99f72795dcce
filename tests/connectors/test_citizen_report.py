"""citizen_report contract tests: the simulated mini-program posting real multipart / JSON reports with real
PNG photos to the connector, through a real nats-server."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cityhub_citizen_report as citizen_report
from cityhub_citizen_report.connector import CitizenReportConnector, RateLimiter
from cityhub_citizen_report.settings import CitizenReportSettings
from cityhub_citizen_report.simulator import CitizenAppSimulator, png_photo
from hub.connector_kit import ServiceArea
from hub.connector_runtime import running_connector
from hub.errors import ConfigError
from hub.geofence import LayerSpec
from hub.models import CoordSystem
from hub.testing import dead_letters, ingested_events
from tests.waiting import wait_until

NOON = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def _connector(tmp_path: Path, **overrides: object) -> CitizenReportConnector:
    settings = CitizenReportSettings.model_validate(
        {"listen": {"port": 0}, "photo_dir": tmp_path / "photos", "max_photo_bytes": 4096, **overrides}
    )
    return CitizenReportConnector(settings)


async def _app(connector: CitizenReportConnector) -> CitizenAppSimulator:
    await wait_until(lambda: connector.server is not None and connector.server.port is not None)
    return CitizenAppSimulator(f"{connector.server.url}{connector.settings.path}")


@pytest.mark.parametrize("encoding", ["multipart", "json"])
async def test_report_with_photo_is_published_with_the_photo_by_reference(nats_url, tmp_path, encoding):
    connector = _connector(tmp_path)
    async with running_connector(connector, nats_url) as ctx:
        app = await _app(connector)
        report = app.sample_report(NOON)
        send = app.send_multipart if encoding == "multipart" else app.send_json
        response = await send(report)
        assert response.status_code == 201, response.text
        assert (await send(report)).status_code == 201  # the phone retried: stored once
        async with httpx.AsyncClient() as client:
            photo = await client.get(response.json()["photos"][0])
        await wait_until(lambda: ctx.counters["published"] == 2)

    [(msg_id, event)] = await ingested_events(nats_url, "citizen_report")
    assert msg_id == f"citizen_report:{report['report_id']}"
    assert event.location.crs is CoordSystem.GCJ02
    assert (event.location.lon, event.location.lat) == (report["lng"], report["lat"])
    assert event.reporter.account == report["reporter"] and event.text == report["text"]
    assert event.category == connector.settings.categories[report["type"]]
    [attachment] = event.attachments
    assert attachment.sha256 == hashlib.sha256(report["photo"]).hexdigest()
    assert (attachment.media_type, attachment.size_bytes) == ("image/png", len(report["photo"]))
    assert photo.status_code == 200 and photo.content == report["photo"]
    assert photo.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"photo": png_photo(400, 300, (1, 2, 3)) + b"\x00" * 5000}, 413, "exceeds the limit"),
        ({"photo": b"GIF89a" + b"\x00" * 64}, 415, "not a recognised image"),
        ({"type": "ufo"}, 422, "unknown report type 'ufo'"),
        ({"lat": 123.0}, 422, "lat"),
        ({"reported_at": "2026-07-01 12:00"}, 422, "reported_at"),
    ],
    ids=["photo-too-large", "not-an-image", "unknown-type", "latitude-out-of-range", "naive-time"],
)
async def test_bad_reports_get_a_clear_4xx_and_a_dlq_entry(nats_url, tmp_path, change, status, reason):
    connector = _connector(tmp_path)
    async with running_connector(connector, nats_url):
        app = await _app(connector)
        response = await app.send_multipart({**app.sample_report(NOON), **change})
    assert response.status_code == status
    assert reason in response.json()["error"]
    [(_, dlq_reason)] = await dead_letters(nats_url, "citizen_report")
    assert reason in dlq_reason
    assert await ingested_events(nats_url, "citizen_report") == []


async def test_photo_declared_as_another_type_is_refused(nats_url, tmp_path):
    connector = _connector(tmp_path)
    async with running_connector(connector, nats_url):
        app = await _app(connector)
        response = await app.send_json(app.sample_report(NOON), photo_type="image/jpeg")
    assert response.status_code == 415
    assert response.json()["error"] == "photo declared as image/jpeg but its bytes are image/png"


async def test_a_body_that_is_no_report_at_all_is_refused(nats_url, tmp_path):
    connector = _connector(tmp_path)
    async with running_connector(connector, nats_url):
        url = (await _app(connector)).url
        async with httpx.AsyncClient() as client:
            not_json = await client.post(url, content=b"{oops", headers={"content-type": "application/json"})
            plain = await client.post(url, content=b"gas!", headers={"content-type": "text/plain"})
    assert (not_json.status_code, plain.status_code) == (400, 415)
    reasons = [reason for _, reason in await dead_letters(nats_url, "citizen_report")]
    assert reasons[0].startswith("body is not JSON") and reasons[1].startswith(
        "send multipart/form-data or application/json"
    )


async def test_a_phone_that_drops_off_mid_upload_is_logged_and_the_next_report_goes_through(nats_url, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hub.connector_kit.http")
    connector = _connector(tmp_path)
    async with running_connector(connector, nats_url) as ctx:
        app = await _app(connector)
        _, writer = await asyncio.open_connection(connector.server.host, connector.server.port)
        writer.write(
            f"POST {connector.settings.path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            'content-length: 4000\r\n\r\n{"type": '.encode()
        )
        await writer.drain()
        await wait_until(lambda: ctx.counters["received"] == 1)
        writer.close()
        await wait_until(lambda: "went away before its request body was complete" in caplog.text)
        response = await app.send_json(app.sample_report(NOON))
        await wait_until(lambda: ctx.counters["published"] == 1)
    assert response.status_code == 201
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert (
        await dead_letters(nats_url, "citizen_report") == []
    )  # nothing arrived, so nothing to keep: the phone sends again


async def test_reporter_over_the_rate_limit_gets_429_with_retry_after(nats_url, tmp_path):
    connector = _connector(tmp_path, rate_limit={"reports": 2, "window_s": 600})
    async with running_connector(connector, nats_url) as ctx:
        app = await _app(connector)
        reports = [app.sample_report(NOON) for _ in range(3)]
        other = {**app.sample_report(NOON), "reporter": "someone-else"}
        statuses = [(await app.send_multipart({**r, "reporter": "busy"})).status_code for r in reports[:2]]
        limited = await app.send_multipart({**reports[2], "reporter": "busy"})
        statuses.append((await app.send_multipart(other)).status_code)
        await wait_until(lambda: ctx.counters["published"] == 3)
    assert statuses == [201, 201, 201]
    assert limited.status_code == 429 and 0 < int(limited.headers["retry-after"]) <= 600
    assert ctx.counters["rate_limited"] == 1
    assert await dead_letters(nats_url, "citizen_report") == []  # throttled, not bad: the phone keeps it and retries


async def test_text_only_report_without_photo(nats_url, tmp_path):
    connector = _connector(tmp_path)
    async with running_connector(connector, nats_url) as ctx:
        app = await _app(connector)
        report = {**app.sample_report(NOON), "photo": None, "report_id": None}
        del report["report_id"]
        response = await app.send_json(report)
        await wait_until(lambda: ctx.counters["published"] == 1)
    assert response.status_code == 201
    [(_, event)] = await ingested_events(nats_url, "citizen_report")
    assert event.attachments == [] and event.source_event_id.startswith("sha256:")


@settings(max_examples=200, deadline=None)
@given(
    calls=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5_000)), max_size=60),
    reports=st.integers(1, 4),
)
def test_rate_limiter_matches_a_sliding_window_oracle(calls, reports):
    """Oracle: a report is accepted iff fewer than ``reports`` accepted ones of that reporter lie in the last window.
    Time runs in whole milliseconds so that the window's edge is exact for both (floats would round either way)."""
    limiter = RateLimiter(reports, window_s=10_000, sweep_every=7)
    accepted: dict[str, list[int]] = {}
    now = 0
    for reporter, gap in calls:
        now += gap
        recent = [t for t in accepted.get(reporter, []) if t > now - 10_000]
        wait = limiter.retry_after(reporter, now)
        assert (wait == 0) == (len(recent) < reports)
        if wait == 0:
            accepted.setdefault(reporter, []).append(now)
        else:
            assert wait == min(recent) + 10_000 - now
    assert len(limiter) <= 3


async def test_a_source_set_to_reject_out_of_area_input_answers_422_saying_so(nats_url, tmp_path):
    admin = Path(__file__).resolve().parents[2] / "hub" / "data" / "grids" / "chengdu_admin_gcj02.geojson"
    area = ServiceArea([LayerSpec(name="chengdu", path=admin, crs="gcj02")])
    connector = CitizenReportConnector(_connector(tmp_path, reject_outside_area=True).settings, area)
    async with running_connector(connector, nats_url) as ctx:
        app = await _app(connector)
        inside = await app.send_multipart(app.sample_report(NOON))  # the first sample: 红星路, 锦江区
        outside = await app.send_multipart({**app.sample_report(NOON), "lng": 116.397, "lat": 39.909})
        await wait_until(lambda: ctx.counters["published"] == 1)
    assert inside.status_code == 201, inside.text
    assert outside.status_code == 422
    assert "is outside the area this hub serves (chengdu)" in outside.json()["error"]
    [(_, reason)] = await dead_letters(nats_url, "citizen_report")
    assert reason == outside.json()["error"]
    assert len(await ingested_events(nats_url, "citizen_report")) == 1


def test_rejecting_out_of_area_input_needs_the_hubs_grids():
    hub = SimpleNamespace(config=SimpleNamespace(data_dir=None, geo=SimpleNamespace(layers=[])))
    settings = CitizenReportSettings(reject_outside_area=True)
    with pytest.raises(ConfigError, match="reject_outside_area needs grids"):
        citizen_report.register_connectors(hub=hub, settings=settings)
