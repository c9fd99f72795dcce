"""What the demo's terminal shows while it runs: the banner with the hub's URLs and the storyline, then the
unified stream one line a message. The simulators of every plugin run for as long."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from nats.aio.subscription import Subscription

from hub import topology
from hub.app import Hub
from hub.demo.config import DEMO_SECRET_VARIABLE
from hub.simulate import start_simulators, stop_simulators
from hub.tap import format_dispatch, format_event

# What a first look at the demo shows, printed under its banner; tests/test_demo.py checks each beat happens.
DEMO_STORYLINE = (
    "0:00  gas leak at 红星路三段1号 reported three ways (IoT gas alarm, 12345 call, citizen's photo): one incident",
    "0:00  e-bike shed fire at 滨江东路9号: its grid worker never accepts the order",
    "0:15  an elder's SOS (李建国, lives alone): the grid worker and a visit order to the eldercare platform",
    "0:30  red flood warning (暴雨内涝预警) over several grids around 合江亭: each grid's worker gets an order",
    "0:50  the shed's order is overdue: the incident escalates and is dispatched again",
    "1:00  the grid worker app moves the order to the backup worker",
)


async def show_demo(
    hub: Hub, stop: asyncio.Event, *, config_path: Path, log_file: Path | None, stop_after_s: float | None = None
) -> None:
    """Run every plugin's simulators and show the banner, then the unified stream, until ``stop`` is set (by
    Ctrl-C, or after ``stop_after_s``)."""
    simulators = await start_simulators(hub)
    if stop_after_s is not None:
        asyncio.get_running_loop().call_later(stop_after_s, stop.set)
    print(_banner_text(hub, len(simulators), config_path, log_file, stop_after_s), flush=True)
    tail = asyncio.create_task(_print_unified_stream(hub))
    try:
        await stop.wait()
    finally:
        tail.cancel()
        await stop_simulators(simulators)


def _banner_text(
    hub: Hub, simulators: int, config_path: Path, log_file: Path | None, stop_after_s: float | None
) -> str:
    secret = os.environ.get(DEMO_SECRET_VARIABLE, "")
    stopping = "Press Ctrl-C to stop." if stop_after_s is None else f"Stopping after {stop_after_s:g} s (or Ctrl-C)."
    return "\n".join(
        [
            "",
            "CityHub demo running.",
            f"  NATS:      {hub.nats_url}",
            f"  admin API: {hub.admin_url}  (docs at /docs)",
            f"  dashboard: {hub.admin_url}/dashboard",
            f"  tap:       cityhub tap --server {hub.nats_url}",
            f"  simulators: {simulators}",
            f"  config:    {config_path}  (check it: CITYHUB_DEMO_SECRET=x cityhub validate {config_path})",
            f"  log:       {log_file or 'this terminal (--verbose)'}",
            f"  connector secret: {secret[:4]}… (generated for this run)",
            "Storyline (then steady traffic from all seven systems):",
            *(f"  {beat}" for beat in DEMO_STORYLINE),
            stopping,
            "",
        ]
    )


async def _print_unified_stream(hub: Hub) -> None:
    """Every unified event, dispatch order and status update, one line each, until cancelled."""
    assert hub.nc is not None
    events = await hub.nc.subscribe(f"{topology.PREFIX}.events.>")
    dispatch = await hub.nc.subscribe(f"{topology.PREFIX}.dispatch.>")
    zone = ZoneInfo(hub.config.timezone)  # events, orders and updates side by side in the city's time
    await asyncio.gather(
        _print_each(events, functools.partial(format_event, zone=zone)),
        _print_each(dispatch, functools.partial(format_dispatch, zone=zone)),
    )


async def _print_each(subscription: Subscription, format_message: Callable[[bytes], str]) -> None:
    async for message in subscription.messages:
        print(format_message(message.data), flush=True)
