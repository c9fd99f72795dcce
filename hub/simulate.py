"""``cityhub simulate NAME``: run one plugin's simulators against a hub that runs elsewhere (``cityhub run``)
until Ctrl-C or a set duration. The simulators are built from the plugin's ``[plugins.NAME]`` section of the
config, as ``cityhub demo`` builds them, so they talk to the connector that config runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from hub.app import Hub, stop_simulators
from hub.errors import PluginError


async def _simulate(hub: Hub, name: str, stop_after_s: float | None) -> int:
    simulators = [(name, simulator) for _, found in await hub.plugins.call("register_simulators", only=name)
                  for simulator in found]
    if not simulators:
        raise PluginError(f"plugin {name!r} built no simulator (is its [plugins.{name}] section complete? "
                          f"{hub.plugins.state(name).last_error or 'it implements no register_simulators hook'})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    for _, simulator in simulators:
        await simulator.start()
    print(f"simulating {name}: {len(simulators)} simulator(s); "
          f"{'Ctrl-C stops' if stop_after_s is None else f'stopping after {stop_after_s:g} s'}", flush=True)
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
