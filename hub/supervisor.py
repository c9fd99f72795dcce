"""Runs each connector in its own process, so a connector that blocks its event loop, leaks memory or
crashes cannot stall the pipeline: connectors reach the hub only through NATS.

The supervisor starts one ``spawn``-ed child per connector (the connector object is pickled into it), reads
the health reports the child sends once a second over a pipe (counters, ``Connector.health()``), restarts a
child that exits with exponential backoff, and kills and restarts one whose reports stop for
``hang_timeout_s`` (a blocked event loop sends none).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from nats.aio.client import Client as NatsClient

from hub.config import NatsConfig, StreamsConfig
from hub.connector import Connector
from hub.backoff import Backoff
from hub.connector_runtime import open_context, serve_connector
from hub.logs import configure_logging
from hub.nats.natsconn import connect
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.supervisor")

REPORT_INTERVAL_S = 1.0
STABLE_AFTER_S = 30.0
_SPAWN = multiprocessing.get_context("spawn")


# --- the child ---------------------------------------------------------------------------------------


def _child_main(connector: Connector, nats: NatsConfig, streams: StreamsConfig, reports: Connection) -> None:
    configure_logging(logging.INFO, process=connector.source)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop (SIGTERM)
    asyncio.run(_child_async(connector, nats, streams, reports))


async def _child_async(connector: Connector, nats: NatsConfig, streams: StreamsConfig, reports: Connection) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    serving = True

    async def closed_by_server(client: NatsClient) -> None:
        if serving:  # not our own close(): end the process, the supervisor restarts it with a new connection
            log.error("nats-server closed the connection of connector %s (%s); exiting", connector.source,
                      client.last_error)
            main.cancel()

    nc = await connect(nats.model_copy(update={"name": f"cityhub-connector-{connector.source}"}),
                       on_closed=closed_by_server)
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

    def __init__(self, nats: NatsConfig, streams: StreamsConfig | None = None, *, hang_timeout_s: float = 30.0,
                 startup_timeout_s: float = 60.0, on_counters: Any = None):
        self.nats = nats
        self.streams = streams or StreamsConfig()
        self.hang_timeout_s = hang_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.on_counters = on_counters
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

    def _spawn(self, child: ConnectorProcess) -> None:
        receiver, sender = _SPAWN.Pipe(duplex=False)
        process = _SPAWN.Process(
            target=_child_main, args=(child.connector, self.nats, self.streams, sender),
            name=f"cityhub-connector-{child.name}", daemon=True,
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
            child.last_exit = child.last_exit if hung else f"exit code {process.exitcode}"
            self._close_reports(child)
            child.restarts += 1
            delay = restarts.next_delay()
            log.error("connector %s stopped (%s); restart %d in %.1fs", child.name, child.last_exit, child.restarts, delay)
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
