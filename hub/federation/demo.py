"""``cityhub demo --tiers``: a city hub and two district hubs, one of them with a street hub below it, each on
its own nats-server (configs from ``cityhub nats-config``, linked as leafnodes), with the simulators where the
systems are in reality: the 12345 hotline, the city platform and the citizen mini-program at the city; the
eldercare platform and the grid workers' app at district 510104. It prints every tier's dashboard and the
credentials of each scope, then the city's unified stream: the whole city, each event once."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from pydantic import ValidationError

from hub import topology
from hub.app import Hub
from hub.demo.config import DEMO_SECRET_VARIABLE, SAMPLE_GRIDS, demo_config
from hub.federation.local import LocalTiers
from hub.federation.scope import GridHierarchy
from hub.geofence import LayerSpec
from hub.logs import configure_logging
from hub.plugins import build_plugin_host, demo_section_file, installed_plugins
from hub.simulate import start_simulators, stop_simulators
from hub.tap import format_event, tap

# The hubs, each with the connectors of the systems that reach it (IoT and recycling stations publish over MQTT,
# which the generated servers do not listen to: they are not in this demo).
HUBS = {
    "city": ["hotline12345", "citybrain", "citizen_report"],
    "510104": ["eldercare", "gridworker"],
    "510104-01": [],
    "510105": [],
}


def placement(tiers: LocalTiers, code: str) -> str:
    """The ``[nats]`` and ``[tier]`` tables of the hub ``code``, and its other connectors switched off."""
    tier = tiers.tier_config(code)
    children = ", ".join(f'"{child}"' for child in tier.children)
    parent = f'\n[tier.parent]\nscope = "{tier.parent.scope}"\n' if tier.parent else ""
    with_demo = {name for name, entry_point in installed_plugins().items() if demo_section_file(entry_point).is_file()}
    elsewhere = sorted(with_demo - set(HUBS[code]))  # the connectors: each demo section is a connector's
    switched_off = "".join(f"\n[plugins.{name}]\nenabled = false\n" for name in elsewhere if _runs_unconfigured(name))
    return (
        f'[nats]\nservers = ["{tiers.url(code)}"]\nnkey_seed_file = "{tiers.hub_credentials(code)}"\n\n'
        f'[tier]\nscope = "{code}"\nchildren = [{children}]\n{parent}{switched_off}'
    )


def _runs_unconfigured(plugin: str) -> bool:
    """Whether a plugin runs without a section of its own (its settings all have defaults)."""
    model = build_plugin_host().settings_models().get(plugin)
    try:
        return model is None or model.model_validate({}) is not None
    except ValidationError:
        return False


async def run_tiers(folder: Path, stop: asyncio.Event) -> None:
    hierarchy = GridHierarchy.from_layers(
        [LayerSpec(name="admin", path=SAMPLE_GRIDS / "chengdu_admin_gcj02.geojson", crs="gcj02")]
    )
    tiers = LocalTiers(folder / "tiers", hierarchy, HUBS).start()
    try:
        await tiers.wait_linked()
        async with AsyncExitStack() as stack:
            hubs = {code: await stack.enter_async_context(_running(tiers, code, folder)) for code in HUBS}
            simulators = [started for hub in hubs.values() for started in await start_simulators(hub)]
            stack.push_async_callback(stop_simulators, simulators)
            _print_banner(tiers, hubs)
            tail = asyncio.create_task(_print_city_stream(hubs["city"]))
            await stop.wait()
            tail.cancel()
    finally:
        tiers.stop()


@asynccontextmanager
async def _running(tiers: LocalTiers, code: str, folder: Path) -> AsyncIterator[Hub]:
    """The demo's hub ``code``, with its connectors and admin API, on its own nats-server."""
    data_dir = folder / code
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "cityhub.toml"
    path.write_text(demo_config(data_dir, placement(tiers, code), HUBS[code]))
    hub = Hub.from_file(path)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def _print_city_stream(city: Hub) -> None:
    """Every event the city's unified stream stores, its own and the ones sourced from the tiers below (a
    plain subscription would show only its own: sourced messages are stored, not published), until cancelled."""
    assert city.nc is not None
    async for raw in tap(city.nc, f"{topology.PREFIX}.events.>"):
        print(format_event(raw), flush=True)


def _print_banner(tiers: LocalTiers, hubs: dict[str, Hub]) -> None:
    lines = ["", "CityHub tiers demo running."]
    for code, hub in hubs.items():
        scope = tiers.scope(code)
        lines.append(f"  {scope.level:8} {code:10} dashboard {hub.admin_url}/dashboard   NATS {tiers.url(code)}")
    lines.append(f"  credentials (NKey seeds): {tiers.keys.folder}  (view-<scope>.nk reads that scope's subjects)")
    lines.append("  below: the city's unified stream, the whole city. Press Ctrl-C to stop.")
    print("\n".join(lines) + "\n", flush=True)


def demo_tiers(stop_after_s: float | None = None) -> int:
    """``cityhub demo --tiers``; Ctrl-C (or ``stop_after_s``) stops everything."""
    configure_logging(logging.WARNING)
    os.environ[DEMO_SECRET_VARIABLE] = secrets.token_urlsafe(24)

    async def main(folder: Path) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if stop_after_s is not None:
            loop.call_later(stop_after_s, stop.set)
        await run_tiers(folder, stop)

    with tempfile.TemporaryDirectory(prefix="cityhub-tiers-") as folder:
        asyncio.run(main(Path(folder)))
    return 0
