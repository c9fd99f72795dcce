"""Hubs of a :class:`~hub.federation.local.LocalTiers` deployment, in this process, and what their streams hold."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from hub import topology
from hub.app import Hub
from hub.federation.local import LocalTiers
from hub.models import Category, CoordSystem, Event, Location, Severity

GRIDS = Path(__file__).resolve().parents[2] / "hub" / "data" / "grids" / "chengdu_admin_gcj02.geojson"
# Centres of micro-grids (GCJ-02) in the districts and streets the tests use.
PLACES = {
    "510104-01": (104.07557378344114, 30.571385141087394),
    "510104-02": (104.08006182937424, 30.587697159999998),
    "510105-02": (103.91433414289386, 30.690085160000002),
    "510108-03": (104.07302567752296, 30.698932416107258),
    # about 38 m apart, on both sides of the border between 锦江区 and 青羊区
    "510104-03": (104.069102, 30.658765),
    "510105-08": (104.068702, 30.658765),
}
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

FENCE_PREFIX = f"{topology.PREFIX}.fence."


GAS_RULE = """
[[rules]]
id = "gas"
when = 'category == "gas_leak"'
actions = { severity = "high", route = ["gridworker"] }
"""
ADMIN_TOKEN = "t0ken"


def hub_toml(tiers: LocalTiers, code: str, rules: str = GAS_RULE) -> str:
    tier = tiers.tier_config(code)
    parent = f'[tier.parent]\nscope = "{tier.parent.scope}"\n' if tier.parent else ""
    return f"""[nats]
servers = ["{tiers.url(code)}"]
nkey_seed_file = "{tiers.hub_credentials(code)}"

[geo]
layers = [{{ name = "admin", path = "{GRIDS}", crs = "gcj02" }}]

[admin]
port = 0
token = "{ADMIN_TOKEN}"

[pipeline]
fetch_timeout = "50ms"
{rules}
[tier]
scope = "{code}"
children = {orjson.dumps(tier.children).decode()}
{parent}"""


@asynccontextmanager
async def running_hub(tiers: LocalTiers, code: str, folder: Path, rules: str = GAS_RULE, admin: bool = False):
    """The hub ``code`` on its own nats-server with ``rules``, without connectors (and without admin API
    unless ``admin``; its token is :data:`ADMIN_TOKEN`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cityhub.toml"
    path.write_text(hub_toml(tiers, code, rules), encoding="utf-8")
    hub = Hub.from_file(path)
    await hub.start(admin=admin, connectors=False)
    try:
        yield hub
    finally:
        await hub.stop()


def report(n: int, street: str, source: str = "hotline_12345", category: Category = Category.GAS_LEAK) -> Event:
    """Report ``n`` at the centre of a micro-grid of ``street``; reports of one street are 10 m apart."""
    lon, lat = PLACES[street]
    return Event(
        source=source,
        source_event_id=f"{street}-{n}",
        category=category,
        severity=Severity.MEDIUM,
        time=T0 + timedelta(seconds=n),
        address=f"{street} {n}",
        text=f"report {n}",
        location=Location(lon=lon + (n % 5) * 10 / 96_000, lat=lat, crs=CoordSystem.GCJ02),
    )


async def send(client: Client, *events: Event) -> None:
    """Each event to ``cityhub.ingest.<source>``, as the ingest contract says, waiting for the acks."""
    js = client.jetstream()
    for event in events:
        await js.publish(
            f"cityhub.ingest.{event.source}",
            event.model_dump_json(exclude_none=True).encode(),
            headers={"Nats-Msg-Id": f"{event.source}:{event.source_event_id}"},
        )


async def stored(client: Client, stream: str) -> list:
    """Every message ``stream`` holds, in order, but the active hub's fence mark (hub.availability.fence)."""
    js = client.jetstream()
    state = (await js.stream_info(stream)).state
    messages: list = []
    if not state.messages:
        return messages
    for sequence in range(state.first_seq, state.last_seq + 1):
        try:
            message = await js.get_msg(stream, sequence)
        except NotFoundError:  # a fence mark rolled up by the next one
            continue
        if not message.subject.startswith(FENCE_PREFIX):
            messages.append(message)
    return messages


async def count(client: Client, stream: str) -> int:
    return len(await stored(client, stream))


def cloud_event(message) -> dict:
    return orjson.loads(message.data)
