"""Runs each connector in its own process, so a connector that blocks its event loop, leaks memory or
crashes cannot stall the pipeline: connectors reach the hub only through NATS.

The supervisor starts one ``spawn``-ed child per connector (the connector object is pickled into it), reads
the health reports the child sends once a second over a pipe (counters, ``Connector.health()``), restarts a
child that exits with exponential backoff, and kills and restarts one whose reports stop for
``hang_timeout_s`` (a blocked event loop sends none).

On a hub among several (:mod:`hub.availability`) the children follow the lease through a gate
(:mod:`hub.availability.gate`): a standby's children are started ahead, imported and waiting; they run their
connector while the gate is open and exit as soon as it closes — when the hub steps down, and by themselves
when the hub is paused or killed and its lease runs out — and the supervisor starts them again, waiting.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from nats.aio.client import Client as NatsClient

from hub.availability import gate
from hub.backoff import Backoff
from hub.config import NatsConfig, StreamsConfig
from hub.connector import Connector
from hub.connector_runtime import open_context, serve_connector
from hub.logs import configure_logging
from hub.nats.natsconn import connect
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.supervisor")

REPORT_INTERVAL_S = 1.0
STABLE_AFTER_S = 30.0
STOOD_DOWN = 3  # a child's exit code after the gate closed on its connector
_SPAWN = multiprocessing.get_context("spawn")


# --- the child ---------------------------------------------------------------------------------------


def _child_main(
    connector: Connector, nats: NatsConfig, streams: StreamsConfig, reports: Connection, shared_gate: object
) -> None:
    configure_logging(logging.INFO, process=connector.source)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop (SIGTERM)
    asyncio.run(_child_async(connector, nats, streams, reports, shared_gate))
    if not gate.is_open(shared_gate):
        sys.exit(STOOD_DOWN)


async def _child_async(
    connector: Connector, nats: NatsConfig, streams: StreamsConfig, reports: Connection, shared_gate: object
) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        await gate.opened(shared_gate, waiting=lambda: reports.send({"counters": {}, "health": {"waiting": "lease"}}))
    except asyncio.CancelledError:
        return
    watching = asyncio.create_task(_stand_down_when_closed(connector, shared_gate, main))
    try:
        await _serve(connector, nats, streams, reports)
    finally:
        watching.cancel()


async def _stand_down_when_closed(connector: Connector, shared_gate: object, main: asyncio.Task) -> None:
    await gate.closed(shared_gate)
    log.warning("connector %s stops: its hub no longer holds the active lease", connector.source)
    main.cancel()


async def _serve(connector: Connector, nats: NatsConfig, streams: StreamsConfig, reports: Connection) -> None:
    main = asyncio.current_task()
    assert main is not None
    serving = True

    async def closed_by_server(client: NatsClient) -> None:
        if serving:  # not our own close(): end the process, the supervisor restarts it with a new connection
            log.error(
                "nats-server closed the connection of connector %s (%s); exiting", connector.source, client.last_error
            )
            main.cancel()

    # named after the hub's own client name: the server's connection list says whose connector it is
    nc = await connect(
        nats.model_copy(update={"name": f"{nats.name}-connector-{connector.source}"}), on_closed=closed_by_server
    )
    try:
        ctx = await open_context(connector, nc, streams)
        _send_report(connector, ctx, reports)  # ready: from here on the hang timeout applies
        reporter = asyncio.create_task(_report_loop(connector, ctx, reports))
        try:
            await serve_connector(connector, ctx, nc)
        finally:
            reporter.cancel()
    except asyncio.CancelledError:
        pass
    finally:
        serving = False
        await nc.close()


async def _report_loop(connector: Connector, ctx: Any, reports: Connection) -> None:
    while True:
        await asyncio.sleep(REPORT_INTERVAL_S)
        _send_report(connector, ctx, reports)


def _send_report(connector: Connector, ctx: Any, reports: Connection) -> None:
    try:
        details = connector.health()
    except Exception as exc:  # a broken health() is itself health information
        details = {"health_error": f"{type(exc).__name__}: {exc}"}
    reports.send({"counters": dict(ctx.counters), "health": details})


# --- the parent --------------------------------------------------------------------------------------


@dataclass
class ConnectorProcess:
    """One supervised connector and what is known about its process."""

    connector: Connector
    process: Any = None
    reports: Connection | None = None
    started_at: float = 0.0
    last_report_at: float = 0.0
    restarts: int = 0
    last_exit: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.connector.source

    def public(self) -> dict[str, Any]:
        alive = self.process is not None and self.process.is_alive()
        return {
            "pid": self.process.pid if alive else None,
            "alive": alive,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "seconds_since_report": round(time.monotonic() - self.last_report_at, 1) if self.last_report_at else None,
            "counters": dict(self.counters),
            "details": self.details,
        }


class Supervisor:
    """Starts, watches and restarts connector processes."""

    def __init__(
        self,
        nats: NatsConfig,
        streams: StreamsConfig | None = None,
        *,
        hang_timeout_s: float = 30.0,
        startup_timeout_s: float = 60.0,
        on_counters: Any = None,
        until: Callable[[], float] | None = None,
    ):
        """``until``: the monotonic moment until which connectors may run (:mod:`hub.availability.gate`);
        without it they always may."""
        self.nats = nats
        self.streams = streams or StreamsConfig()
        self.hang_timeout_s = hang_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.on_counters = on_counters
        self.gate = gate.Gate(until)
        self._children: dict[str, ConnectorProcess] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}

    def names(self) -> list[str]:
        return sorted(self._children)

    def health(self) -> dict[str, dict[str, Any]]:
        return {name: child.public() for name, child in sorted(self._children.items())}

    async def start(self, connector: Connector) -> None:
        """Run ``connector`` in a new process and keep it running until :meth:`stop`."""
        if connector.source in self._children:
            raise ValueError(f"connector {connector.source!r} is already supervised")
        if not self._children:
            self.gate.start()
        child = self._children[connector.source] = ConnectorProcess(connector)
        self._spawn(child)
        self._watchers[child.name] = asyncio.create_task(self._watch(child), name=f"supervise.{child.name}")

    async def stop(self, name: str, timeout: float = 10.0) -> None:
        await cancel_and_wait(self._watchers.pop(name, None))
        child = self._children.pop(name, None)
        if child is not None:
            self._close_reports(child)
            await asyncio.to_thread(_terminate, child.process, timeout)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self._children)))
        self.gate.stop()

    async def stand_down(self) -> None:
        """Close the gate now (``until`` says 0 by now), stop every connector and start them again, waiting for
        the gate to open (the hub stepped down)."""
        self.gate.refresh()
        connectors = [child.connector for child in self._children.values()]
        await self.stop_all()
        for connector in connectors:
            await self.start(connector)

    def _spawn(self, child: ConnectorProcess) -> None:
        receiver, sender = _SPAWN.Pipe(duplex=False)
        process = _SPAWN.Process(
            target=_child_main,
            args=(child.connector, self.nats, self.streams, sender, self.gate.shared),
            name=f"cityhub-connector-{child.name}",
            daemon=True,
        )
        process.start()
        sender.close()
        child.process, child.reports = process, receiver
        child.started_at, child.last_report_at = time.monotonic(), 0.0
        asyncio.get_running_loop().add_reader(receiver.fileno(), self._receive, child)
        log.info("connector %s started (pid %s)", child.name, process.pid)

    def _receive(self, child: ConnectorProcess) -> None:
        assert child.reports is not None
        try:
            report = child.reports.recv()
        except (EOFError, OSError):
            self._close_reports(child)
            return
        child.last_report_at = time.monotonic()
        if self.on_counters is not None:
            self.on_counters(child.name, child.counters, report["counters"])
        child.counters, child.details = report["counters"], report["health"]

    def _close_reports(self, child: ConnectorProcess) -> None:
        if child.reports is not None:
            asyncio.get_running_loop().remove_reader(child.reports.fileno())
            child.reports.close()
            child.reports = None

    async def _watch(self, child: ConnectorProcess) -> None:
        restarts = Backoff(initial_s=0.5, max_s=30.0)
        while True:
            await asyncio.sleep(0.2)
            process = child.process
            hung = self._hung(child)
            if process.is_alive() and not hung:
                if time.monotonic() - child.started_at > STABLE_AFTER_S:
                    restarts.reset()
                continue
            if hung and process.is_alive():
                log.error("connector %s sent no health report in time (event loop blocked?): killing it", child.name)
                process.kill()
                child.last_exit = "killed: no health report (hung)"
            await asyncio.to_thread(process.join)
            self._close_reports(child)
            if process.exitcode == STOOD_DOWN:  # the lease ran out under it: start it again, waiting
                log.info("connector %s stood down (its hub's lease ran out); waiting for the lease", child.name)
                self._spawn(child)
                continue
            child.last_exit = child.last_exit if hung else f"exit code {process.exitcode}"
            child.restarts += 1
            delay = restarts.next_delay()
            log.error(
                "connector %s stopped (%s); restart %d in %.1fs", child.name, child.last_exit, child.restarts, delay
            )
            await asyncio.sleep(delay)
            self._spawn(child)

    def _hung(self, child: ConnectorProcess) -> bool:
        """No report within the hang timeout (or, before the first report, within the start-up timeout:
        a spawned child imports the hub first)."""
        now = time.monotonic()
        if child.last_report_at:
            return now - child.last_report_at > self.hang_timeout_s
        return now - child.started_at > self.startup_timeout_s


def _terminate(process: Any, timeout: float) -> None:
    """SIGTERM (the child cancels its connector and closes NATS), SIGKILL after ``timeout``."""
    if process is None or not process.is_alive():
        return
    process.terminate()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
