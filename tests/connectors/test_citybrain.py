"""citybrain contract tests: incidents reported to the simulated city platform over real HTTPS (a CA and
certificate made at test time with trustme), area warnings pushed by it fanned out over the demo grids, through
a real nats-server."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme

from cityhub_citybrain.connector import CitybrainConnector, shared_admin_path
from cityhub_citybrain.settings import CitybrainSettings
from cityhub_citybrain.simulator import CityPlatformSimulator, square
from hub import topology, wire
from hub.connector_kit.http import RetrySettings
from hub.connector_runtime import running_connector
from hub.geofence import GridIndex, LayerSpec
from hub.models import Category, Incident, IncidentState, Severity
from hub.testing import dead_letters, ingested_events, publish_outbound
from tests.waiting import wait_until

GRIDS = Path(__file__).resolve().parents[2] / "hub" / "data" / "grids" / "chengdu_admin_gcj02.geojson"
LAYER = {"name": "admin", "path": str(GRIDS), "crs": "gcj02"}
REPORT_SECRET = "north-secret"
WARNING_SECRET = "south-secret"
NOON = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[ssl.SSLContext, Path]:
    """A throw-away CA, the platform's certificate for 127.0.0.1 and the CA file the hub trusts."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca_file = tmp_path_factory.mktemp("ca") / "city-platform-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, ca_file


@pytest.fixture
async def platform(tls):
    simulator = await CityPlatformSimulator(
        report_secret=REPORT_SECRET, warning_secret=WARNING_SECRET, tls=tls[0]
    ).start()
    yield simulator
    await simulator.stop()


def _connector(platform: CityPlatformSimulator, ca_file: Path, **south: object) -> CitybrainConnector:
    return CitybrainConnector(
        CitybrainSettings.model_validate(
            {
                "northbound": {
                    "url": platform.incidents_url,
                    "secret": REPORT_SECRET,
                    "ca_file": str(ca_file),
                    "hub_id": "510104",
                    "min_severity": "high",
                    "categories": [],
                    "report_overdue": True,
                    "retry": RetrySettings(initial_s=0.05, max_s=0.2, attempts=2, timeout_s=5),
                },
                "southbound": {
                    "secret": WARNING_SECRET,
                    "listen": {"port": 0},
                    "layers": [LAYER],
                    "levels": ["grid"],
                    **south,
                },
            }
        )
    )


async def _warnings_ready(connector: CitybrainConnector, platform: CityPlatformSimulator) -> None:
    await wait_until(lambda: connector.server is not None and connector.server.port is not None)
    platform.warning_url = f"{connector.server.url}{connector.settings.southbound.path}"


def _incident(incident_id: str, severity: Severity, escalate_at: datetime | None = None) -> Incident:
    return Incident(
        id=incident_id,
        category=Category.GAS_LEAK,
        severity=severity,
        opened_at=NOON,
        updated_at=NOON,
        address="成都市锦江区春熙路",
        report_count=3,
        sources=["iot_mqtt", "hotline12345"],
        escalate_at=escalate_at,
        state=IncidentState.OPEN,
    )


async def test_an_area_warning_is_one_event_with_its_area_and_the_touched_grid_cells(nats_url, platform, tls):
    connector = _connector(platform, tls[1], crs="gcj02")
    warning = platform.sample_warning(NOON)
    warning["area"] = square(104.0780, 30.6540, 0.006)
    updated = {**warning, "message": "水位上涨，请立即转移低洼处人员。"}
    async with running_connector(connector, nats_url) as ctx:
        await _warnings_ready(connector, platform)
        response = await platform.send_warning(warning)
        assert response.status_code == 202, response.text
        assert (await platform.send_warning(warning)).status_code == 202  # the platform resends: no new event
        assert (await platform.send_warning(updated)).status_code == 202  # same warning id, new content
        cells = response.json()["cells"]
        await wait_until(lambda: ctx.counters["published"] == 3)

    index = GridIndex.load([LayerSpec.model_validate(LAYER)])
    expected = {
        f"{c.layer}:{c.id}" for c in index.cells_intersecting(warning["area"], crs="gcj02") if c.level == "grid"
    }
    assert set(cells) == expected and len(cells) > 1
    [(_, first), (_, second)] = await ingested_events(nats_url, "citybrain")
    assert first.category == Category.AREA_WARNING and first.location is None
    assert first.area is not None and first.area.id == warning["warning_id"]
    assert {f"{cell.layer}:{cell.id}" for cell in first.area.cells} == expected
    assert all(cell.level == "grid" for cell in first.area.cells)
    assert {cell.id[:6] for cell in first.area.cells} == {"510104", "510105"}
    assert first.grid_path == []  # two districts: no admin path shared by every touched cell
    ring = first.area.geometry["coordinates"][0]  # sent in GCJ-02, carried in WGS-84 (a few hundred metres west)
    assert (
        first.area.geometry["type"] == "Polygon" and 0.001 < warning["area"]["coordinates"][0][0][0] - ring[0][0] < 0.01
    )
    assert warning["message"] in (first.text or "") and updated["message"] in (second.text or "")
    assert second.area is not None and second.area.id == first.area.id
    assert first.source_event_id != second.source_event_id  # an update passes dedup and updates the incident


def test_the_shared_admin_path_of_touched_cells():
    district, street_a, street_b, grid_a, grid_b = (
        SimpleNamespace(id=i) for i in ("D", "D-1", "D-2", "D-1-1", "D-2-1")
    )
    assert shared_admin_path([[district, street_a, grid_a], [district, street_b, grid_b]]) == [district]
    assert shared_admin_path([[district, street_a, grid_a]]) == [district, street_a, grid_a]
    assert shared_admin_path([[district, street_a, grid_a], [SimpleNamespace(id="school")]]) == []
    assert shared_admin_path([]) == []


@pytest.mark.parametrize(
    ("send", "status", "reason"),
    [
        (lambda p, w: p.send_warning(w, secret="wrong"), 401, "does not match"),
        (lambda p, w: p.send_warning({**w, "level": "purple"}), 422, "level"),
        (
            lambda p, w: p.send_warning({**w, "area": {"type": "Polygon", "coordinates": [[[104.0, 30.0]]]}}),
            422,
            "area",
        ),
        (lambda p, w: p.send_warning(b"[]"), 422, "area warning rejected"),
    ],
    ids=["bad-signature", "unknown-level", "broken-polygon", "not-an-object"],
)
async def test_bad_warnings_get_a_clear_4xx_and_a_dlq_entry(nats_url, platform, tls, send, status, reason):
    connector = _connector(platform, tls[1])
    async with running_connector(connector, nats_url):
        await _warnings_ready(connector, platform)
        response = await send(platform, platform.sample_warning(NOON))
    assert response.status_code == status, response.text
    assert reason in response.json()["error"]
    [(_, dlq_reason)] = await dead_letters(nats_url, "citybrain")
    assert reason in dlq_reason
    assert await ingested_events(nats_url, "citybrain") == []


@pytest.mark.parametrize("trouble", ["down", "slow"])
async def test_incidents_meeting_the_criteria_reach_the_platform_after_an_outage(nats_url, platform, tls, trouble):
    platform.available, platform.delay_s = (False, 0.0) if trouble == "down" else (True, 2.0)
    connector = _connector(platform, tls[1], enabled=False)
    connector.settings.northbound.retry.timeout_s = 0.3  # the slow platform answers after our timeout
    high = _incident("inc-high", Severity.HIGH)
    low = _incident("inc-low", Severity.LOW)
    overdue = _incident("inc-overdue", Severity.LOW, escalate_at=NOON - timedelta(hours=1))
    async with running_connector(connector, nats_url) as ctx:
        for incident in (high, low, overdue):
            subject = topology.incident_subject("510104", incident.category, "opened")
            await publish_outbound(nats_url, subject, f"{wire.TYPE_INCIDENT_PREFIX}opened", incident.id, NOON, incident)
        await wait_until(lambda: ctx.counters["deliver_failed"] >= 2)
        assert trouble == "slow" or platform.reports == []
        platform.available, platform.delay_s = True, 0.0
        await wait_until(lambda: ctx.counters["delivered"] == 3)

    assert [(r["incident"]["id"], r["reasons"]) for r in platform.reports] == [
        ("inc-high", ["severity"]),
        ("inc-overdue", ["overdue"]),
    ]
    assert {r["hub_id"] for r in platform.reports} == {"510104"}
    assert ctx.counters["incidents_reported"] == 2 and ctx.counters["incidents_not_reported"] == 1
    assert platform.attempts > 2  # the outage was retried, each attempt signed afresh over HTTPS


async def test_the_platform_refusing_a_report_moves_it_to_the_dlq(nats_url, platform, tls):
    connector = _connector(platform, tls[1], enabled=False)
    connector.settings.northbound.secret = connector.settings.southbound.secret  # the platform will refuse us
    incident = _incident("inc-1", Severity.CRITICAL)
    async with running_connector(connector, nats_url) as ctx:
        subject = topology.incident_subject("510104", incident.category, "opened")
        await publish_outbound(nats_url, subject, f"{wire.TYPE_INCIDENT_PREFIX}opened", incident.id, NOON, incident)
        await wait_until(lambda: ctx.counters["rejected"] == 1)
    [(_, reason)] = await dead_letters(nats_url, "citybrain")
    assert "refused by the external system" in reason and "401" in reason
