"""Whatever the server does to the hub's connection, the hub gets a working one again: nats-server closes a
connection that publishes above max_payload (``-ERR 'Maximum Payload Violation'``), which sends nats-py's client
to its closed state for good; the hub replaces it and carries on."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson

from hub import topology
from hub.app import Hub
from hub.nats.embedded import EmbeddedNats
from hub.plugins import ALLOW_LIST_ENV
from tests.pipeline_support import event, hub_toml, ingest_item, publish_raw, read_stream, stream_count
from tests.waiting import holds_within, wait_until

REPO = Path(__file__).resolve().parents[1]
FOLLOWED_BY_THE_DASHBOARD = (topology.EVENTS_STREAM, topology.INCIDENTS_STREAM, topology.DISPATCH_STREAM)
# The test events happened months ago: their orders are overdue at once, and the escalator re-dispatches each.
ESCALATING_RULE = """
[[rules]]
id = "gas"
when = 'category == "gas_leak"'
actions = { route = ["gridworker"], escalate_after_s = 1 }
"""
# The hub process of the SIGTERM test: `cityhub run` (without the built-in connectors, which the test does not
# need), whose connection the server closes once it has started.
HUB_CLOSED_BY_THE_SERVER = """
import sys
from hub import app

started = app.Hub.start

async def start_then_publish_over_max_payload(hub, **options):
    await started(hub, **{{**options, "connectors": False}})
    await publish_over_max_payload(hub.nc)

{publish_over_max_payload}
app.Hub.start = start_then_publish_over_max_payload
sys.exit(app.run(sys.argv[1]))
"""


CONNECTION_BACK = ("moving the hub onto it", "nats reconnected")


async def publish_over_max_payload(nc) -> None:
    """What issue 10 saw: a payload that fits, headers that take the message over max_payload. nats-py checks
    only the payload; the server closes the connection."""
    await nc.publish("cityhub.dlq.test", b"x" * (nc.max_payload - 10), headers={"CityHub-Reason": "y" * 100})


async def test_a_hub_whose_connection_the_server_closes_moves_onto_a_new_one_and_carries_on(
    small_payload_server, tmp_path
):
    url = small_payload_server.url
    (tmp_path / "cityhub.toml").write_text(hub_toml(url, ESCALATING_RULE))
    hub = Hub.from_file(tmp_path / "cityhub.toml")
    await hub.start(connectors=False)
    try:
        await publish_raw(url, [ingest_item(event(0))])
        await wait_until(lambda: hub.pipeline.counts["out"] == 1, "the first event processed")
        closed = hub.nc
        await publish_over_max_payload(closed)
        await wait_until(lambda: hub.link.replaced == 1 and hub.nc.is_connected, "a new connection")

        await publish_raw(url, [ingest_item(event(1, offset_m=5_000))])
        await wait_until(lambda: hub.pipeline.counts["out"] == 2, "an event processed on the new connection")
        await wait_until(
            lambda: len([v for v in hub.dashboard.views.values() if v.incident]) == 2,
            "the dashboard shows the incident opened after the replacement",
        )
        await wait_until(
            lambda: _both_incidents_escalated(url), "both orders escalated, the second on the new connection"
        )
        published = sum([await stream_count(url, stream) for stream in FOLLOWED_BY_THE_DASHBOARD])
        await wait_until(lambda: hub.dashboard.messages >= published, "the dashboard saw every message")
        seen_by_the_dashboard = hub.dashboard.messages
        async with httpx.AsyncClient(base_url=hub.admin_url) as client:
            health = (await client.get("/health")).json()["runtime"]
            ready = await client.get("/ready")
    finally:
        await hub.stop()

    assert closed.is_closed and "maximum payload" in str(closed.last_error).lower()
    assert ready.status_code == 200 and health["nats"] == {
        "connected": True,
        "embedded": False,
        "max_payload": 64 * 1024,
        "replaced": 1,
    }
    assert health["escalation"]["running"] and health["pipeline"]["running"]
    assert await stream_count(url, topology.EVENTS_STREAM) == 2
    assert seen_by_the_dashboard == published  # followed on from where it was, nothing applied twice


async def test_cityhub_run_stops_cleanly_on_sigterm_after_the_server_closed_its_connection(
    small_payload_server, tmp_path
):
    url = small_payload_server.url
    config = tmp_path / "cityhub.toml"
    config.write_text(hub_toml(url, ESCALATING_RULE))
    script = HUB_CLOSED_BY_THE_SERVER.format(publish_over_max_payload=inspect.getsource(publish_over_max_payload))
    log = tmp_path / "hub.log"
    hub = subprocess.Popen(
        [sys.executable, "-c", script, str(config)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    try:
        # nats-py closes the connection for good when it reads the server's -ERR first, and reconnects when it
        # sees the reset socket first: the hub must carry on after either.
        back = await holds_within(lambda: any(sign in log.read_text() for sign in CONNECTION_BACK), 120)
        assert back, f"the hub never got its connection back:\n{log.read_text()}"
        await publish_raw(url, [ingest_item(event(0))])
        while await stream_count(url, topology.EVENTS_STREAM) < 1:  # wait_until polls sync conditions only
            await asyncio.sleep(0.05)
        hub.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(hub.wait, 60)
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
    text = log.read_text()
    assert "moving the hub onto it" not in text or "maximum payload violation" in text.lower(), text
    assert returncode == 0, text


async def _both_incidents_escalated(url: str) -> bool:
    """Each of the two incidents has a re-dispatched order (attempt 2) in the dispatch stream."""
    orders = [
        orjson.loads(m.data)["data"]
        for m in await read_stream(url, topology.DISPATCH_STREAM)
        if ".orders." in m.subject
    ]
    return len({order["incident_id"] for order in orders if order["attempt"] >= 2}) == 2


async def test_cityhub_run_stops_on_sigterm_while_nats_is_away(tmp_path):
    """A stop never hangs on NATS: the lease, the pipeline and every follower retry while NATS is away, and a
    cancellation swallowed by one of nats-py's timeouts is sent again until their loops end."""
    server = EmbeddedNats(store_dir=tmp_path / "nats")
    server.launch()
    await asyncio.to_thread(server.wait_listening)
    config = tmp_path / "cityhub.toml"
    config.write_text(hub_toml(server.url))
    log = tmp_path / "hub.log"
    environment = {**os.environ, ALLOW_LIST_ENV: "redaction"}  # no connectors: they listen on fixed ports
    hub = subprocess.Popen(
        [sys.executable, "-c", f"from hub.app import run; run({str(config)!r})"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=environment,
    )
    try:
        await wait_until(lambda: "hub started" in log.read_text(), "the hub started")
        await asyncio.to_thread(server.stop)
        await wait_until(lambda: "reconnecting" in log.read_text(), "the hub noticed NATS is away")
        hub.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(hub.wait, 120)  # a bound for a hang, not a speed check
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
    assert returncode == 0, log.read_text()
