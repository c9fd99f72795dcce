"""``cityhub simulate NAME``: run one plugin's simulators against a hub that runs elsewhere (``cityhub run``)
until Ctrl-C or a set duration. The simulators are built from the plugin's ``[plugins.NAME]`` section of the
config, as ``cityhub demo`` builds them, so they talk to the connector that config runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from hub.app import Hub
from hub.errors import PluginError

log = logging.getLogger("cityhub")

SIMULATOR_STOP_S = 10.0


async def start_simulators(hub: Hub, only: str | None = None) -> list[tuple[str, Any]]:
    """Build and start the simulators of every plugin (or of plugin ``only``): ``(plugin, simulator)`` pairs."""
    simulators = [
        (plugin, simulator)
        for plugin, found in await hub.plugins.call("register_simulators", only=only)
        for simulator in found
    ]
    for _, simulator in simulators:
        await simulator.start()
    return simulators


async def stop_simulators(simulators: list[tuple[str, Any]], timeout_s: float = SIMULATOR_STOP_S) -> None:
    """Stop each ``(plugin, simulator)``, the last started first. One that raises or hangs past ``timeout_s``
    is logged with its plugin, class and traceback, and the rest are still stopped: the run must end."""
    for plugin, simulator in reversed(simulators):
        try:
            await asyncio.wait_for(simulator.stop(), timeout_s)
        except Exception:
            log.exception("simulator %s of plugin %s did not stop cleanly", type(simulator).__name__, plugin)


async def _simulate(hub: Hub, name: str, stop_after_s: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    simulators = await start_simulators(hub, only=name)
    if not simulators:
        raise PluginError(
            f"plugin {name!r} built no simulator (is its [plugins.{name}] section complete? "
            f"{hub.plugins.state(name).last_error or 'it implements no register_simulators hook'})"
        )
    print(
        f"simulating {name}: {len(simulators)} simulator(s); "
        f"{'Ctrl-C stops' if stop_after_s is None else f'stopping after {stop_after_s:g} s'}",
        flush=True,
    )
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), stop_after_s)
    finally:
        await stop_simulators(simulators)
    return 0


def simulate(name: str, config_path: str | Path, stop_after_s: float | None = None) -> int:
    """Build the hub's plugins from ``config_path`` (nothing is started) and run ``name``'s simulators."""
    hub = Hub.from_file(config_path)
    hub.plugins.state(name)  # a PluginError naming the installed plugins when there is no such plugin
    return asyncio.run(_simulate(hub, name, stop_after_s))
