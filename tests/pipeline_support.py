"""Helpers for pipeline tests: engines over the shipped sample grids, event factories, stream readers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import orjson

from hub import topology
from hub.connector_runtime import encode_ingest
from hub.geofence import GridIndex, LayerSpec
from hub.incidents import MergePolicy
from hub.models import Area, Category, CoordSystem, Event, GridCell, Location, Severity
from hub.pipeline import Engines
from hub.rules import RuleSet

GRIDS = Path(__file__).resolve().parents[1] / "hub" / "data" / "grids"
# A point inside micro-grid 510104-01-01-01-01 (GCJ-02), district 510104 (锦江区).
INSIDE_GCJ02 = (104.07557378344114, 30.57166595)
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

GAS_RULE = {
    "id": "gas-critical",
    "priority": 10,
    "when": 'category == "gas_leak"',
    "actions": {"severity": "critical", "route": ["gridworker", "dept:fire"], "escalate_after_s": 600},
}


def hub_toml(
    nats_url: str, sections: str = "", *, token: str | None = None, pipeline: str = "", admin_port: int = 0
) -> str:
    """A cityhub.toml for a Hub on ``nats_url``: admin API on ``admin_port`` (0: a free one) with ``token``, the
    shipped admin grids, a short fetch timeout; ``pipeline`` adds keys to [pipeline], ``sections`` appends
    whole tables."""
    token_line = f'token = "{token}"\n' if token else ""
    return f"""[nats]
servers = ["{nats_url}"]

[admin]
port = {admin_port}
{token_line}
[geo]
layers = [{{ name = "admin", path = "{GRIDS}/chengdu_admin_gcj02.geojson", crs = "gcj02" }}]

[pipeline]
fetch_timeout = "50ms"
{pipeline}
{sections}"""


def engines(rules: list[dict] | None = None, with_grids: bool = True) -> Engines:
    geofence = (
        GridIndex.load([LayerSpec(name="admin", path=GRIDS / "chengdu_admin_gcj02.geojson", crs="gcj02")])
        if with_grids
        else None
    )
    return Engines(
        rules=RuleSet.compile(rules if rules is not None else [GAS_RULE]), merge_policy=MergePolicy(), geofence=geofence
    )


def event(
    n: int,
    *,
    source: str = "iot_mqtt",
    category: Category = Category.GAS_LEAK,
    offset_m: float = 0.0,
    seconds: float | None = None,
) -> Event:
    lon, lat = INSIDE_GCJ02
    return Event(
        source=source,
        source_event_id=f"e-{n}",
        category=category,
        severity=Severity.MEDIUM,
        time=T0 + timedelta(seconds=n if seconds is None else seconds),
        location=Location(lon=lon + offset_m / 96_000, lat=lat, crs=CoordSystem.GCJ02),
        address=f"{n} Hongxing Rd",
        text=f"alarm {n}",
    )


WARNING_CELLS = [GridCell(layer="admin", level="grid", id=f"510104-01-01-0{n}", name=f"网格{n}") for n in (1, 2, 3)]
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[104.07, 30.57], [104.08, 30.57], [104.08, 30.58], [104.07, 30.58], [104.07, 30.57]]],
}


def area_warning(
    n: int,
    *,
    warning: str = "CB-1",
    seconds: float = 0.0,
    cells: int = 3,
    expires_in_s: float | None = 3600.0,
    time: datetime | None = None,
) -> Event:
    """Report ``n`` of the city platform's area warning ``warning`` (``n`` makes a new version of it), touching
    the first ``cells`` of WARNING_CELLS."""
    happened = time or T0 + timedelta(seconds=seconds)
    return Event(
        source="citybrain",
        source_event_id=f"{warning}:v{n}",
        category=Category.AREA_WARNING,
        severity=Severity.HIGH,
        time=happened,
        text=f"暴雨内涝预警 {warning} v{n}",
        payload={"warning_id": warning},
        area=Area(
            id=warning,
            geometry=SQUARE,
            cells=WARNING_CELLS[:cells],
            expires_at=happened + timedelta(seconds=expires_in_s) if expires_in_s is not None else None,
        ),
    )


async def publish_raw(nats_url: str, items: list[tuple[str, bytes]]) -> None:
    """Publish ``(subject, bytes)`` to ingest, waiting for each ack."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    futures = [await js.publish_async(subject, data) for subject, data in items]
    await asyncio.gather(*futures)
    await nc.close()


def ingest_item(e: Event) -> tuple[str, bytes]:
    return topology.ingest_subject(e.source), encode_ingest(e)[1]


def bare_item(e: Event) -> tuple[str, bytes]:
    return topology.ingest_subject(e.source), e.model_dump_json(exclude_none=True).encode()


async def _count(js, stream: str) -> int:  # noqa: ANN001 - nats JetStreamContext
    """Messages on the stream's own subjects (not on its fence subject: hub.availability.fence)."""
    info = await js.stream_info(stream, subjects_filter=topology.STREAM_SUBJECTS[stream][0])
    return sum((info.state.subjects or {}).values())


async def read_stream(nats_url: str, stream: str) -> list:
    """Every message on a stream's own subjects, in order (an ordered, ack-less consumer)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    total = await _count(js, stream)
    messages = []
    if total:
        sub = await js.pull_subscribe(
            topology.STREAM_SUBJECTS[stream][0],
            stream=stream,
            config=nats.js.api.ConsumerConfig(ack_policy=nats.js.api.AckPolicy.NONE),
        )
        while len(messages) < total:
            messages += await sub.fetch(min(5000, total - len(messages)), timeout=10)
        await sub.unsubscribe()
    await nc.close()
    return messages


async def stream_count(nats_url: str, stream: str) -> int:
    nc = await nats.connect(nats_url)
    count = await _count(nc.jetstream(), stream)
    await nc.close()
    return count


def data_of(message) -> dict:
    return orjson.loads(message.data)["data"]
