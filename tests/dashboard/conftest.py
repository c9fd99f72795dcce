"""Fixtures for the dashboard: NATS with the CityHub streams, a LiveState following them, a running admin
app (real uvicorn server, real config and plugin host) with the dashboard router fed from NATS, and a headless
browser (Debian's chromium driven by Playwright) with the folder its screenshots go to."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import uvicorn
from playwright.async_api import async_playwright, expect
from stream_samples import TOKEN, StreamWriter, grid_collection

from hub.admin import create_admin_app, require_token
from hub.dashboard import build_router, live_state
from hub.dashboard.state import LiveState
from hub.hookspecs import hookimpl
from hub.nats.embedded import free_port
from standin_hub import StandInHub
from tests.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
async def browser():
    """Debian's chromium (never `playwright install`); the test skips, saying why, where it is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (run .ci/install-browser)")
    # Waiting, not timing: on a busy 2-core machine the page with 10,000 incidents can take several seconds.
    expect.set_options(timeout=60_000)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """docs/screenshots/ when asked to refresh them (CITYHUB_SCREENSHOTS=1; the README and docs show them),
    else a temporary folder, so a test run leaves the work tree as it was."""
    if os.environ.get("CITYHUB_SCREENSHOTS") == "1":
        return DOCS_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def writer(nc) -> StreamWriter:
    return StreamWriter(nc.jetstream())


@pytest.fixture
async def state(nc):
    live = LiveState(window=timedelta(days=3650))
    await live.start(nc)
    yield live
    await live.stop()


class HealthyPlugin:
    """A plugin that reports counters in its health."""

    @hookimpl
    def plugin_health(self, hub):
        return {"events_in": 42, "connected": True}


class FailingPlugin:
    """A plugin whose health check raises: the panel shows the error."""

    @hookimpl
    def plugin_health(self, hub):
        raise ConnectionError("device registry unreachable")


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "grids" / "admin.geojson"
    path.parent.mkdir()
    path.write_bytes(orjson.dumps(grid_collection()))
    return path


@pytest.fixture
def hub_plugins() -> dict[str, object]:
    return {"iot_mqtt": HealthyPlugin(), "eldercare": FailingPlugin()}


@pytest.fixture
def hub(tmp_path: Path, grid_file: Path, hub_plugins) -> StandInHub:
    config = tmp_path / "cityhub.toml"
    config.write_text(
        f'[admin]\ntoken = "{TOKEN}"\n\n[hooks]\nmax_consecutive_failures = 100\n\n'
        '[dashboard]\nwindow = "3650d"\n\n'
        f'[[geo.layers]]\nname = "admin"\npath = "{grid_file}"\n'
    )
    return StandInHub(config, hub_plugins)


@dataclass
class Dashboard:
    url: str
    state: LiveState
    hub: StandInHub
    writer: StreamWriter


@pytest.fixture
async def dashboard(nc, hub, writer):
    """The admin app with the dashboard router, served by uvicorn on a free port, fed from NATS."""
    live = live_state(hub.config.dashboard)
    await live.start(nc)
    app = create_admin_app(hub, routers=[build_router(live, token_check=require_token)])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    serving = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, "uvicorn to start")
    yield Dashboard(f"http://127.0.0.1:{port}", live, hub, writer)
    server.should_exit = True
    await serving
    await live.stop()
