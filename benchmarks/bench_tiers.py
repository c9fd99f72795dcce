"""A city-wide load entered at the city and carried down to three district hubs, beside one hub alone taking
the same load, in the same run.

- tiers: the city hub and the hubs of districts 510104, 510105 and 510108, each a ``cityhub run`` process on
  its own nats-server (the configs ``cityhub nats-config`` generates, linked as leafnodes, on loopback). The
  12345 reports enter the city's ingest; the city's pipeline hands each one down to its district's hub
  (``CITYHUB_HANDOFF``, sourced by the district's ingest), which handles it, and the city sees the district's
  unified event in its own stream (sourced up).
- single hub: one city hub with no children on its own nats-server: it handles every report itself.

Each round publishes 12,000 reports (an even share per district, 4 categories, places on a lattice over the
three districts) to the city's ingest and ends when the city's unified stream holds all of them: events/s end
to end. The note gives p50/p99 latency with the reports paced at half the tiers' rate (the same pace for
both): for the tiers, city ingest → the district's unified event, and city ingest → visible at the city;
for the single hub, ingest → its unified event. And the CPU time per event of every process (median round):
the hubs and nats-servers share the machine's cores, so the sum is what a report costs the machine.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from benchmarks.loading import publish_load
from benchmarks.observing import cpu_seconds, p50_p99, stored_times
from benchmarks.report import label
from hub import topology
from hub.connector_runtime import encode_ingest
from hub.federation.local import LocalTiers
from hub.federation.scope import GridHierarchy
from hub.geofence import GridIndex, LayerSpec
from hub.models import Category, CoordSystem, Event, Location
from tests.federation.tier_hubs import GRIDS, hub_toml
from tests.hub_processes import HubProcess

DISTRICTS = ("510104", "510105", "510108")
EVENTS = 12_000
SOURCE = "hotline_12345"
GROUP = f"Three tiers: a city-wide load entered at the city, carried down to {len(DISTRICTS)} district hubs (events/s end to end)"
CATEGORIES = [Category.GAS_LEAK, Category.WATER_LEAK, Category.NOISE, Category.FIRE]
# The connectors that run without a section of their own; the benchmark is the only source of events.
CONNECTORS_OFF = "".join(
    f"\n[plugins.{name}]\nenabled = false\n" for name in ("citizen_report", "iot_mqtt", "recycling")
)
_tiers_rate: dict[str, float] = {}


@functools.cache
def places() -> dict[str, list[tuple[float, float]]]:
    """Points (GCJ-02) of a 200 m lattice over central Chengdu, by the district that holds them."""
    grids = GridIndex.load([LayerSpec(name="admin", path=GRIDS, crs="gcj02")])
    lons, lats = (
        axis.ravel() for axis in np.meshgrid(np.arange(103.90, 104.25, 0.002), np.arange(30.55, 30.80, 0.002))
    )
    held: dict[str, list[tuple[float, float]]] = {code: [] for code in DISTRICTS}
    for lon, lat, where in zip(lons, lats, grids.locate_many(lons, lats, crs="gcj02"), strict=True):
        if where.admin_path and where.admin_path[0].id in held:
            held[where.admin_path[0].id].append((float(lon), float(lat)))
    return held


def city_wide(tag: str, count: int) -> tuple[list[str], list[bytes]]:
    """``count`` 12345 reports taking turns over the districts: their ingest ids and CloudEvents."""
    start = datetime.now(UTC)
    ids, raws = [], []
    for n in range(count):
        district = places()[DISTRICTS[n % len(DISTRICTS)]]
        lon, lat = district[(n // len(DISTRICTS)) % len(district)]
        event = Event(
            source=SOURCE,
            source_event_id=f"{tag}-{n}",
            category=CATEGORIES[(n // 7) % len(CATEGORIES)],
            time=start + timedelta(milliseconds=n),
            location=Location(lon=lon, lat=lat, crs=CoordSystem.GCJ02),
        )
        msg_id, raw = encode_ingest(event)
        ids.append(msg_id)
        raws.append(raw)
    return ids, raws


class RunningTiers:
    """The hubs ``codes`` of a deployment on loopback, each a ``cityhub run`` process on its own nats-server."""

    def __init__(self, folder: Path, codes: list[str]):
        hierarchy = GridHierarchy.from_layers([LayerSpec(name="admin", path=GRIDS, crs="gcj02")])
        self.tiers = LocalTiers(folder / "tiers", hierarchy, codes)
        self.hubs: dict[str, HubProcess] = {}
        for code in codes:
            config = folder / code / "cityhub.toml"
            config.parent.mkdir(parents=True)
            config.write_text(hub_toml(self.tiers, code) + CONNECTORS_OFF)
            self.hubs[code] = HubProcess(config, f"hub-{code}")

    async def start(self) -> RunningTiers:
        self.tiers.start()
        await self.tiers.wait_linked()
        for hub in self.hubs.values():
            hub.start()
        for hub in self.hubs.values():
            await hub.wait_for_role("active", timeout=120)
        return self

    def stop(self) -> None:
        for hub in self.hubs.values():
            hub.stop()
        self.tiers.stop()

    def processes(self) -> dict[str, int]:
        """Every process of the deployment by what it is: pid."""
        pids = {}
        for code, hub in self.hubs.items():
            pids[f"hub {code}"] = hub.process.pid
            pids[f"nats-server {code}"] = self.tiers.servers[code].process.pid
        return pids

    async def connect(self, code: str = "city") -> Client:
        return await self.tiers.connect_hub(code)


def _deployment(folder: Path, codes: list[str]):
    running = asyncio.run(RunningTiers(folder, codes).start())
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def tiers(tmp_path_factory):
    yield from _deployment(tmp_path_factory.mktemp("tiers"), ["city", *DISTRICTS])


@pytest.fixture(scope="module")
def single_hub(tmp_path_factory):
    yield from _deployment(tmp_path_factory.mktemp("single"), ["city"])


async def _carry(running: RunningTiers, ids: list[str], raws: list[bytes], pace_per_s: float | None = None) -> None:
    """Publish the reports to the city's ingest and wait until the city's unified stream holds every one
    (counted by a consumer of the new unified events that reads none: its pending count)."""
    city = await running.connect()
    js = city.jetstream()
    counter = await js.add_consumer(
        topology.EVENTS_STREAM,
        ConsumerConfig(
            filter_subject=f"{topology.PREFIX}.events.>",
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=600.0,
        ),
    )
    await publish_load(js, f"{topology.PREFIX}.ingest.{SOURCE}", raws, ids, pace_per_s)
    while (await js.consumer_info(topology.EVENTS_STREAM, counter.name)).num_pending < len(raws):
        await asyncio.sleep(0.02)
    await js.delete_consumer(topology.EVENTS_STREAM, counter.name)
    await city.close()


def _round(running: RunningTiers, ids: list[str], raws: list[bytes], cpu: list[dict[str, float]]) -> None:
    """One round; appends the CPU seconds per event of every process to ``cpu``."""
    processes = running.processes()
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    asyncio.run(_carry(running, ids, raws))
    cpu.append({name: (cpu_seconds(pid) - before[name]) / len(raws) for name, pid in processes.items()})


def _measure(benchmark, running: RunningTiers) -> tuple[float, dict[str, float]]:  # noqa: ANN001 - pytest-benchmark
    """Throughput rounds: events/s (median round) and the median CPU µs per event of each process."""
    benchmark.group = GROUP  # before the rounds: pytest-benchmark files a benchmark under the group it had then
    rounds = itertools.count()
    cpu: list[dict[str, float]] = []
    benchmark.pedantic(
        _round, setup=lambda: ((running, *city_wide(f"r{next(rounds)}", EVENTS), cpu), {}), rounds=3, iterations=1
    )
    return EVENTS / benchmark.stats.stats.median, {
        name: statistics.median(r[name] for r in cpu) * 1e6 for name in cpu[0]
    }


async def _first_sequences(running: RunningTiers) -> dict[tuple[str, str], int]:
    """The sequence the next message of each stream the latency is read from will have."""
    where = [("city", topology.INGEST_STREAM), ("city", topology.EVENTS_STREAM)]
    where += [
        (code, stream)
        for code in running.hubs
        if code != "city"
        for stream in (topology.INGEST_STREAM, topology.EVENTS_STREAM)
    ]
    first = {}
    for code, stream in where:
        client = await running.connect(code)
        first[(code, stream)] = (await client.jetstream().stream_info(stream)).state.last_seq + 1
        await client.close()
    return first


async def _latency(running: RunningTiers, rate: float) -> dict[str, tuple[float, float]]:
    """p50/p99 with the reports paced at ``rate``, from the city's ingest to: the district hubs' ingest
    (``handed down``), their unified events (``district``), and the city's unified stream (``city``)."""
    first = await _first_sequences(running)
    ids, raws = city_wide("latency", max(2_000, int(rate * 4)))
    await _carry(running, ids, raws, pace_per_s=rate)
    times: dict[tuple[str, str], dict[str, float]] = {}
    for (code, stream), sequence in first.items():
        client = await running.connect(code)
        times[(code, stream)] = await stored_times(client.jetstream(), stream, sequence)
        await client.close()
    ingested = times.pop(("city", topology.INGEST_STREAM))
    legs = {"city": times.pop(("city", topology.EVENTS_STREAM))}
    for leg, stream in (("handed down", topology.INGEST_STREAM), ("district", topology.EVENTS_STREAM)):
        at_districts = {
            key: stored for (_, kind), stored_at in times.items() if kind == stream for key, stored in stored_at.items()
        }
        if at_districts:
            legs[leg] = at_districts
    return {
        leg: p50_p99([stored - ingested[key] for key, stored in unified.items() if key in ingested])
        for leg, unified in legs.items()
    }


_LEGS = {
    "handed down": "city ingest → district's ingest",
    "district": "city ingest → district's unified event",
    "city": "city ingest → visible at the city",
}


def _latency_note(rate: float, latencies: dict[str, tuple[float, float]], pace: str = "half the tiers' rate") -> str:
    legs = "; ".join(
        f"{_LEGS[leg]} p50 {latencies[leg][0] * 1000:.1f} ms, p99 {latencies[leg][1] * 1000:.1f} ms"
        for leg in _LEGS
        if leg in latencies
    )
    return f"latency at {rate:,.0f}/s ({pace}): {legs}"


def _cpu_note(cpu_us: dict[str, float]) -> str:
    return (
        "CPU per event: "
        + ", ".join(f"{name} {us:.0f} µs" for name, us in cpu_us.items())
        + f"; all processes {sum(cpu_us.values()):.0f} µs"
    )


@pytest.mark.timeout(900)  # eight processes on a shared machine
def test_tiers_city_and_three_districts(benchmark, tiers):
    places()  # start-up work, outside the rounds
    rate, cpu_us = _measure(benchmark, tiers)
    _tiers_rate["tiers"] = rate
    latencies = asyncio.run(_latency(tiers, rate / 2))
    label(
        benchmark,
        GROUP,
        "cityhub",
        EVENTS,
        f"city hub hands each report down, its district hub handles it, the city sees it sourced up; "
        f"{_latency_note(rate / 2, latencies)}; {_cpu_note(cpu_us)}",
    )


@pytest.mark.timeout(900)
def test_single_hub_same_load(benchmark, single_hub):
    places()
    rate, cpu_us = _measure(benchmark, single_hub)
    pace = _tiers_rate.get("tiers", rate) / 2
    latencies = asyncio.run(_latency(single_hub, pace))
    paced_as = "half the tiers' rate" if "tiers" in _tiers_rate else "half its own rate: the tiers did not run"
    label(
        benchmark,
        GROUP,
        "sanity",
        EVENTS,
        f"the baseline: one hub handles every report itself; "
        f"{_latency_note(pace, latencies, paced_as)}; {_cpu_note(cpu_us)}",
    )
