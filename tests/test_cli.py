"""The cityhub command line, run as a user runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import nats
import orjson
import pytest
import uvicorn

from hub import topology, wire
from hub.admin import create_admin_app
from hub.hookspecs import hookimpl
from hub.models import Category, Event, GridCell, Severity
from hub.nats.embedded import free_port
from hub.nats.streams import ensure_streams
from hub.tap import format_dispatch, format_event
from standin_hub import StandInHub

REPO = Path(__file__).resolve().parents[1]


def cityhub(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_validate_prints_every_error_and_exits_1(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[admin]\nport = "eighty"\n\n[dedup]\nwindow = "soon"\nmax_keys = 0\n')
    result = cityhub("validate", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}:2: admin.port: Input should be a valid integer, unable to parse string as an integer",
        f"{config}:5: dedup.window: 'soon' is not a duration: write e.g. '90s', '15m', '1h30m', '2d' or seconds",
        f"{config}:6: dedup.max_keys: Input should be greater than or equal to 1",
        f"3 problem(s) in {config}",
    ]


def test_validate_summarises_a_valid_file():
    result = cityhub("validate", "cityhub.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cityhub.toml: valid. NATS: embedded nats-server;")


def test_validate_and_the_demo_agree_on_what_is_enabled(tmp_path):
    from hub.demo.config import demo_config

    config = tmp_path / "cityhub.toml"
    config.write_text(demo_config(tmp_path))
    result = cityhub("validate", str(config), env={"CITYHUB_DEMO_SECRET": "x"})
    assert result.returncode == 0, result.stderr
    enabled = result.stdout.split("plugins enabled: ")[1].strip().split(", ")
    connectors = {path.parents[2].name for path in (REPO / "connectors").glob("*/src/*/demo.toml")}
    assert set(enabled) == connectors | {"enrichment", "redaction"} and "not configured" not in result.stdout


def test_validate_names_the_plugins_a_file_leaves_not_configured():
    result = cityhub("validate", "cityhub.toml")
    not_configured = result.stdout.split("not configured (no [plugins.<name>] section with its required keys): ")[1]
    assert set(not_configured.strip().split(", ")) == {"citybrain", "eldercare", "gridworker", "hotline12345"}


# --- plugins, through a real admin server -------------------------------------------------------------


class Toggle:
    """A plugin to switch on and off."""

    @hookimpl
    def plugin_health(self, hub):
        return {"fine": True}


@pytest.fixture
def admin_url(tmp_path):
    config = tmp_path / "cityhub.toml"
    config.write_text('[admin]\ntoken = "cli-token"\n')
    app = create_admin_app(StandInHub(config, {"toggle": Toggle()}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_plugins_list_disable_enable_through_the_admin_api(admin_url):
    listed = cityhub("plugins", "list", "--admin", admin_url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == ["toggle", "enabled"]
    refused = cityhub("plugins", "disable", "toggle", "--admin", admin_url, "--token", "wrong")
    assert refused.returncode == 1 and "401 a valid bearer token is required" in refused.stderr
    disabled = cityhub("plugins", "disable", "toggle", "--admin", admin_url, env={"CITYHUB_ADMIN_TOKEN": "cli-token"})
    assert disabled.returncode == 0 and "disabled (admin)" in disabled.stdout
    enabled = cityhub("plugins", "enable", "toggle", "--admin", admin_url, "--token", "cli-token")
    assert enabled.returncode == 0 and enabled.stdout.splitlines()[1].split()[:2] == ["toggle", "enabled"]
    unknown = cityhub("plugins", "enable", "ghost", "--admin", admin_url, "--token", "cli-token")
    assert unknown.returncode == 1 and "404 no plugin named 'ghost'" in unknown.stderr


# --- tap and replay, against a real nats-server -------------------------------------------------------


def unified(number: int, category: Category, severity: Severity) -> tuple[str, bytes]:
    event = Event(
        id=f"evt-{number}",
        source="iot_mqtt",
        source_event_id=f"alarm-{number}",
        category=category,
        severity=severity,
        time=datetime(2026, 5, 1, 8, 0, number, tzinfo=timezone(timedelta(hours=8))),
        address="成华区建设路街道 1 号",
        text=f"报警 {number}，联系电话 138****5678",
        grid_path=[
            GridCell(layer="admin", level="district", id="510108", name="成华区"),
            GridCell(layer="admin", level="street", id="510108003", name="建设路街道"),
        ],
    )
    subject = topology.event_subject("510108", "510108003", category.value, severity.value)
    raw = wire.encode(
        type_=wire.TYPE_EVENT,
        id_=event.id,
        source="cityhub/iot_mqtt",
        time=event.time,
        data=event,
        extensions={
            "category": category.value,
            "severity": severity.value,
            "incidentid": f"inc-{number}",
            "district": "510108",
            "street": "510108003",
        },
    )
    return subject, raw


STORY = [
    unified(1, Category.GAS_LEAK, Severity.CRITICAL),
    unified(2, Category.FIRE, Severity.HIGH),
    unified(3, Category.GAS_LEAK, Severity.MEDIUM),
]


async def test_tap_prints_live_events_matching_the_filters(nats_url):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "tap",
        "--server",
        nats_url,
        "--category",
        "gas_leak",
        "--limit",
        "2",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert (await process.stderr.readline()).decode().startswith("# tapping cityhub.events.*.*.gas_leak.*")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)  # the stream the tap waits for, as a starting hub creates it
    for subject, raw in STORY:
        await js.publish(subject, raw)
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    await nc.close()
    lines = stdout.decode().splitlines()
    assert process.returncode == 0 and len(lines) == 2
    assert [part.strip() for part in lines[0].split("  ") if part.strip()][:6] == [
        "2026-05-01T08:00:01+08:00",
        "CRITICAL",
        "gas_leak",
        "成华区/建设路街道",
        "[iot_mqtt]",
        "成华区建设路街道 1 号",
    ]
    assert "incident=inc-1" in lines[0] and '"报警 1，联系电话 138****5678"' in lines[0]
    assert "MEDIUM" in lines[1] and "incident=inc-3" in lines[1]


async def test_tap_keeps_printing_new_events_across_a_nats_restart(nats_url, restart_nats):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "tap",
        "--server",
        nats_url,
        "--json",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert (await process.stderr.readline()).startswith(b"# tapping")
        nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream()
        await ensure_streams(js)
        before, after = STORY[0][1], STORY[1][1]
        await js.publish(STORY[0][0], before)
        assert await asyncio.wait_for(process.stdout.readline(), timeout=60) == before + b"\n"
        await restart_nats()
        await js.publish(STORY[1][0], after, timeout=30)
        assert await asyncio.wait_for(process.stdout.readline(), timeout=60) == after + b"\n"
        await nc.close()
    finally:
        process.terminate()
        await process.wait()


async def test_replay_rereads_the_stream_from_a_start_time(nats_url):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    for subject, raw in STORY:
        await js.publish(subject, raw)
    await nc.close()

    def replay(*extra: str) -> subprocess.CompletedProcess[str]:
        return cityhub("replay", "--server", nats_url, *extra)

    everything = replay("--since", "1h", "--json")
    assert everything.returncode == 0, everything.stderr
    assert [line.encode() for line in everything.stdout.splitlines()] == [raw for _, raw in STORY]
    fires = replay("--since", "2020-01-01T00:00:00+08:00", "--category", "fire")
    assert len(fires.stdout.splitlines()) == 1 and "HIGH" in fires.stdout and "fire" in fires.stdout
    assert replay("--since", "2099-01-01T00:00:00+00:00").stdout == ""
    naive = replay("--since", "2026-05-01T08:00:00")
    assert naive.returncode == 1 and "add a timezone offset" in naive.stderr


def test_tap_without_a_server_says_how_to_find_one(tmp_path):
    result = cityhub("tap", cwd=tmp_path, env={"CITYHUB_NATS_URL": ""})
    assert result.returncode == 1 and "pass --server nats://HOST:PORT" in result.stderr


def test_run_refuses_a_bad_config_with_every_error(tmp_path):
    config = tmp_path / "cityhub.toml"
    config.write_text('[admin]\nport = -1\n\n[[rules]]\nid = "r"\nwhen = "category =="\n')
    result = cityhub("run", "-c", str(config))
    assert result.returncode == 1
    assert f"{config}:2: admin.port: Input should be greater than or equal to 0" in result.stderr


def test_the_demo_shows_events_orders_and_updates_in_the_city_time() -> None:
    """Orders are stamped in UTC and events carry their sender's offset; side by side they read in one zone."""
    shanghai = ZoneInfo("Asia/Shanghai")
    event = orjson.dumps({"severity": "high", "data": {"time": "2026-05-01T01:30:00+00:00", "source": "iot_mqtt"}})
    order = orjson.dumps(
        {"type": wire.TYPE_DISPATCH_ORDER, "data": {"created_at": "2026-05-01T01:30:05Z", "target": "gridworker"}}
    )
    update = orjson.dumps({"source": "cityhub/gridworker", "data": {"time": "2026-05-01T09:31:00+08:00"}})
    assert format_event(event, zone=shanghai).startswith("2026-05-01T09:30:00+08:00  HIGH")
    assert format_dispatch(order, zone=shanghai).startswith("2026-05-01T09:30:05+08:00  ORDER")
    assert format_dispatch(update, zone=shanghai).startswith("2026-05-01T09:31:00+08:00  UPDATE")
    assert format_event(event).startswith("2026-05-01T01:30:00+00:00")  # without a zone: as written
