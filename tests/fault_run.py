"""The fault test's scenario with real processes, and what it leaves behind (:class:`FaultOutcome`).

A nats-server of its own (stopped and started again on its port and store), the hub as ``cityhub run`` in a
child process (killed with SIGKILL mid-stream and started again), and an outside publisher that sends the
:class:`~tests.fault_load.FaultLoad`. Waits are bounded and never fail: a wait that runs out is written into
``notes``, and the checks of tests/test_fault_injection.py report what it left undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import orjson
import pytest
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from hub import topology
from hub.availability import terms
from hub.nats.embedded import EmbeddedNats, free_port
from hub.pipeline import PIPELINE_CONSUMER, PipelineOptions
from hub.plugins import ALLOW_LIST_ENV
from tests.fault_load import FaultLoad, Sent, Shadow, ValidInput, probe
from tests.pipeline_support import hub_toml, read_stream
from tests.waiting import holds_within

REPO = Path(__file__).resolve().parents[1]
HUB_PLUGINS = "redaction"  # the pipeline's default transform; no connectors (they would listen on fixed ports)
ADMIN_TOKEN = "fault-test-token"
VALID_EVENTS = 3000
DUPLICATE_WINDOW_S = 10  # of the ingest stream: the early events are sent again after it
RESENT_EARLY = 100
RESEND_S = 3 * DUPLICATE_WINDOW_S  # JetStream forgets a message id some time after the window, not at once
MAX_MESSAGE_BYTES = PipelineOptions().max_message_bytes  # [pipeline] max_message_bytes: the config leaves the default
KILL_AFTER_UNIFIED = 300  # SIGKILL once this many events are in the unified stream, while the load still comes
RESTART_AFTER_UNIFIED = 200  # restart nats-server once the restarted hub has published this many more
HUB_START_S = 90.0  # generous bounds on a shared machine; nothing asserts on speed
PROGRESS_S = 30.0
STALL_S = 20.0  # a drain wait gives up when the pipeline acknowledged nothing new for this long
DASHBOARD_S = 20.0
HUB_LOG_PROBLEM = re.compile(
    r"\b(WARNING|ERROR|CRITICAL)\b|^\s*Traceback|^\s*\w+(Error|Exception|Group):|^\s*File \".*/(hub|plugins)/"
)
LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ ")

RULES_AND_STREAMS = f"""
[[rules]]
id = "gas-to-grid-worker"
when = 'category == "gas_leak"'
actions = {{ severity = "critical", route = ["gridworker"] }}

[nats.streams.ingest]
max_age = "1d"
duplicate_window = "{DUPLICATE_WINDOW_S}s"
"""


class HubProcess:
    """``cityhub run -c <config>`` in a child process, its output in ``<config>.log``."""

    def __init__(self, config: Path):
        self.config = config
        self.log = config.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environment = {**os.environ, ALLOW_LIST_ENV: HUB_PLUGINS}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "run", "-c", str(self.config)],
                cwd=REPO,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no snapshot, no acknowledgement, nothing flushed."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM; the exit code, or None when it did not exit within ``timeout`` (then it is killed)."""
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self.process = None

    def problems(self, limit: int = 16) -> list[str]:
        """The last ``limit`` distinct warning, error and exception lines of the log, each with its count."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        counts = Counter(LOG_TIME.sub("", line)[:300] for line in lines if HUB_LOG_PROBLEM.search(line))
        return [f"{line} (x{count})" if count > 1 else line for line, count in counts.items()][-limit:]


@dataclass
class DlqCopy:
    """One message of the DLQ stream; ``original`` is its data, or the object its header names."""

    subject: str
    kind: str | None
    reason: str | None
    original: bytes | None
    object_ref: str | None = None
    object_problem: str | None = None


@dataclass
class OverLimitPublish:
    """What became of a publish above the server's max_payload: the client's refusal, and the raw connection
    that sent it anyway (what the server answered, whether it closed that connection)."""

    client_refused: bool
    server_reply: bytes
    raw_connection_closed: bool
    publisher_connected_after: bool


@dataclass
class FaultOutcome:
    """Everything the checks look at, gathered while the processes still ran."""

    load: FaultLoad
    probe: ValidInput
    unified: list[dict[str, Any]] = field(default_factory=list)  # CloudEvents of the unified stream
    dlq: list[DlqCopy] = field(default_factory=list)
    opened: Counter[str] = field(default_factory=Counter)  # incident id → its "opened" changes
    shadow_acks: dict[Shadow, PubAck] = field(default_factory=dict)
    resend_acks: dict[ValidInput, PubAck] = field(default_factory=dict)
    resends_dropped: int | None = None  # by the pipeline's dedup: its count in /health rose by this much
    over_limit: OverLimitPublish | None = None
    ready_status: int | None = None
    health: dict[str, Any] | None = None
    probe_incident: str | None = None
    dashboard_status: int | None = None
    hub_exit: int | None = None
    ack_floor: int = 0  # of the pipeline's consumer at the end: the input it has processed
    notes: list[str] = field(default_factory=list)
    hub_problems: list[str] = field(default_factory=list)

    def unified_by_key(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for envelope in self.unified:
            data = envelope.get("data", {})
            by_key.setdefault((data.get("source"), data.get("source_event_id")), []).append(envelope)
        return by_key

    def context(self) -> str:
        """What went wrong while the scenario ran, for failure messages."""
        parts = [
            f"scenario notes: {'; '.join(self.notes)}" if self.notes else "",
            "hub log (warnings and errors):\n  " + "\n  ".join(self.hub_problems) if self.hub_problems else "",
        ]
        return "\n".join(part for part in parts if part)


def fault_config(nats_url: str, admin_port: int) -> str:
    return hub_toml(nats_url, RULES_AND_STREAMS, token=ADMIN_TOKEN, admin_port=admin_port)


def run_fault_scenario(workdir: Path) -> FaultOutcome:
    """Run the whole scenario; the nats-server and the hub are stopped whatever happens."""
    server = EmbeddedNats(store_dir=workdir / "nats")
    server.start()
    admin_port = free_port()
    config = workdir / "cityhub.toml"
    config.write_text(fault_config(server.url, admin_port))
    hub = HubProcess(config)
    try:
        return asyncio.run(Scenario(server, hub, f"http://127.0.0.1:{admin_port}").run())
    finally:
        hub.kill()
        server.stop()


class Scenario:
    """The outside world's side of the fault test, step by step."""

    def __init__(self, server: EmbeddedNats, hub: HubProcess, admin_url: str):
        self.server, self.hub = server, hub
        self.http = httpx.AsyncClient(
            base_url=admin_url, timeout=10.0, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        self.notes: list[str] = []

    async def run(self) -> FaultOutcome:
        async with self.http:
            self.hub.start()
            if not await holds_within(self.ready, HUB_START_S, interval=0.25):
                pytest.fail("the hub never became ready; its log:\n  " + "\n  ".join(self.hub.problems()))
            nc = await nats.connect(self.server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            try:
                return await self.drive(nc, nc.jetstream())
            finally:
                await nc.close()

    async def drive(self, nc: nats.NATS, js: JetStreamContext) -> FaultOutcome:
        now = datetime.now(UTC)
        load = FaultLoad.build(now, VALID_EVENTS, nc.max_payload, MAX_MESSAGE_BYTES)
        outcome = FaultOutcome(load, probe(now), notes=self.notes)
        first_sent_at, acks = await self.send_through_faults(nc, js, load)
        outcome.shadow_acks = {sent: ack for sent, ack in acks.items() if isinstance(sent, Shadow)}
        outcome.over_limit = await publish_over_limit(nc, self.server.port)
        await self.drain(js, "the load")
        await asyncio.sleep(max(0.0, first_sent_at + DUPLICATE_WINDOW_S + 1 - time.monotonic()))
        duplicates_before = await self.duplicates_dropped()
        outcome.resend_acks = await resend_after_window(js, load.early(RESENT_EARLY))
        await publish(js, [outcome.probe])
        await self.drain(js, "the re-sent early events and the probe")
        outcome.resends_dropped = _difference(await self.duplicates_dropped(), duplicates_before)
        await self.gather(js, outcome)
        outcome.hub_exit = self.hub.stop()
        outcome.hub_problems = self.hub.problems()
        return outcome

    async def send_through_faults(
        self, nc: nats.NATS, js: JetStreamContext, load: FaultLoad
    ) -> tuple[float, dict[Any, PubAck]]:
        """The first two fifths of the load with a SIGKILL of the hub while they come in, the next two while
        the hub is down, a nats-server restart while the restarted hub catches up, then the rest. When the
        first part was sent, and every ack."""
        first, second = len(load.order) * 2 // 5, len(load.order) * 4 // 5
        sending = asyncio.create_task(publish(js, load.order[:first]))
        await self.kill_hub_mid_stream(js)
        acks = await sending
        first_sent_at = time.monotonic()
        acks |= await publish(js, load.order[first:second])
        await self.restart_hub()
        await self.restart_server_mid_stream(js, nc)
        acks |= await publish(js, load.order[second:])
        return first_sent_at, acks

    async def ready(self) -> bool:
        return await self.status("/ready") == 200

    async def answers(self) -> bool:
        return await self.status("/ready") is not None

    async def status(self, path: str) -> int | None:
        try:
            return (await self.http.get(path)).status_code
        except httpx.HTTPError:
            return None

    async def health(self) -> dict[str, Any] | None:
        try:
            return (await self.http.get("/health")).json()
        except (httpx.HTTPError, ValueError):
            return None

    async def duplicates_dropped(self) -> int | None:
        """The pipeline's count of input its dedup dropped (in /health), since the hub started."""
        health = await self.health() or {}
        return (((health.get("runtime") or {}).get("pipeline") or {}).get("counts") or {}).get("duplicates")

    async def kill_hub_mid_stream(self, js: JetStreamContext) -> None:
        if not await holds_within(lambda: unified_count(js, KILL_AFTER_UNIFIED), PROGRESS_S, interval=0.05):
            self.notes.append(f"fewer than {KILL_AFTER_UNIFIED} unified events {PROGRESS_S:g} s into the load")
        self.hub.kill()
        unified, drained = await stream_messages(js, topology.EVENTS_STREAM), await ingest_drained(js)
        self.notes.append(
            f"hub killed (SIGKILL) at {unified} unified events, "
            f"{'with nothing' if drained else 'with input'} left to process"
        )

    async def restart_hub(self) -> None:
        """Start the hub again and wait until its admin API answers (whether it is ready is checked at the end)."""
        self.hub.start()
        if not await holds_within(self.answers, HUB_START_S, interval=0.25):
            self.notes.append(f"the restarted hub's admin API did not answer within {HUB_START_S:g} s")
        elif not await self.ready():
            self.notes.append("the restarted hub answered /ready with 503")

    async def restart_server_mid_stream(self, js: JetStreamContext, nc: nats.NATS) -> None:
        target = await stream_messages(js, topology.EVENTS_STREAM) + RESTART_AFTER_UNIFIED
        if not await holds_within(lambda: unified_count(js, target), PROGRESS_S, interval=0.05):
            self.notes.append(
                f"the restarted hub published fewer than {RESTART_AFTER_UNIFIED} events in {PROGRESS_S:g} s"
            )
        drained_before = await ingest_drained(js)
        await asyncio.to_thread(self.server.stop)
        self.server.launch()  # from this thread, which lives as long as the server should (see EmbeddedNats)
        await asyncio.to_thread(self.server.wait_listening)
        if not await holds_within(lambda: nc.is_connected, PROGRESS_S, interval=0.1):
            self.notes.append("the publisher did not reconnect after the nats-server restart")
        self.notes.append(f"nats-server restarted {'after' if drained_before else 'while'} the hub drained ingest")

    async def drain(self, js: JetStreamContext, what: str) -> None:
        """Wait until the pipeline acknowledged all of ingest, giving up when it stalls for :data:`STALL_S`."""
        last_floor, moved_at = -1, time.monotonic()
        while not await ingest_drained(js):
            floor = await ack_floor(js)
            if floor != last_floor:
                last_floor, moved_at = floor, time.monotonic()
            elif time.monotonic() - moved_at > STALL_S:
                last = (await js.stream_info(topology.INGEST_STREAM)).state.last_seq
                self.notes.append(f"the pipeline stalled on {what}: ack floor {floor} of {last} for {STALL_S:g} s")
                return
            await asyncio.sleep(0.25)

    async def gather(self, js: JetStreamContext, outcome: FaultOutcome) -> None:
        """Read the streams and ask the admin API, while everything still runs."""
        url = self.server.url
        outcome.ack_floor = await ack_floor(js)
        outcome.unified = [orjson.loads(message.data) for message in await read_stream(url, topology.EVENTS_STREAM)]
        outcome.dlq = [await dlq_copy(js, message) for message in await read_stream(url, topology.DLQ_STREAM)]
        outcome.opened = Counter(
            orjson.loads(message.data).get("incidentid")
            for message in await read_stream(url, topology.INCIDENTS_STREAM)
            if message.subject.endswith(".opened")
        )
        outcome.ready_status = await self.status("/ready")
        outcome.health = await self.health()
        probe_copies = outcome.unified_by_key().get(outcome.probe.key, [])
        outcome.probe_incident = probe_copies[0].get("incidentid") if probe_copies else None
        if outcome.probe_incident is not None:
            path = f"/api/incidents/{outcome.probe_incident}"
            await holds_within(lambda: self.dashboard_shows(path, outcome), DASHBOARD_S, interval=0.25)

    async def dashboard_shows(self, path: str, outcome: FaultOutcome) -> bool:
        outcome.dashboard_status = await self.status(path)
        return outcome.dashboard_status == 200


async def publish(js: JetStreamContext, items: Sequence[Sent], chunk: int = 500) -> dict[Any, PubAck]:
    """Publish in order, ``chunk`` acknowledgements in flight; each item's PubAck."""
    acks: dict[Any, PubAck] = {}
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        futures = [await js.publish_async(sent.subject, sent.data, headers=_headers(sent)) for sent in part]
        acks.update(zip(part, await asyncio.gather(*futures), strict=True))
    return acks


async def resend_after_window(js: JetStreamContext, early: Sequence[ValidInput]) -> dict[Any, PubAck]:
    """Send ``early`` again until JetStream stores each (it has forgotten their message ids), for at most
    :data:`RESEND_S`; a re-send it drops is not stored, so sending it once more is harmless. The last ack of each."""
    acks: dict[Any, PubAck] = {}
    waiting, deadline = list(early), time.monotonic() + RESEND_S
    while True:
        acks |= await publish(js, waiting)
        waiting = [sent for sent in waiting if acks[sent].duplicate]
        if not waiting or time.monotonic() > deadline:
            return acks
        await asyncio.sleep(1.0)


def _difference(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def _headers(sent: Sent) -> dict[str, str] | None:
    return {topology.HEADER_MSG_ID: sent.msg_id} if sent.msg_id else None


async def publish_over_limit(nc: nats.NATS, port: int) -> OverLimitPublish:
    """One byte over max_payload: the client must refuse it; sent over a raw socket instead, the server must
    answer -ERR and close that connection, and only that one."""
    subject = topology.ingest_subject("fault_a")
    try:
        await nc.publish(subject, b"x" * (nc.max_payload + 1))
        client_refused = False
    except nats.errors.MaxPayloadError:
        client_refused = True
    reply, closed = await raw_hpub(port, subject, nc.max_payload + 1)
    with contextlib.suppress(nats.errors.Error):
        await nc.flush(timeout=5)
    return OverLimitPublish(client_refused, reply, closed, nc.is_connected)


OVER_LIMIT_HEADERS = b"NATS/1.0\r\nNats-Msg-Id: fault_a:bad-over_max_payload-0\r\n\r\n"


async def raw_hpub(port: int, subject: str, size: int) -> tuple[bytes, bool]:
    """Start an HPUB of ``size`` bytes (headers included) over a plain socket; the server judges the size on
    the HPUB line, before any payload. What it sent after its INFO, and whether it closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    reply = b""
    try:
        await reader.readline()  # INFO
        writer.write(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n'
            + f"HPUB {subject} {len(OVER_LIMIT_HEADERS)} {size}\r\n".encode()
            + OVER_LIMIT_HEADERS
        )
        await writer.drain()
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                reply += chunk
        return reply, True
    except ConnectionError:
        return reply, True
    except TimeoutError:
        return reply, False
    finally:
        writer.close()


async def dlq_copy(js: JetStreamContext, message: Any) -> DlqCopy:
    headers = message.headers or {}
    copy = DlqCopy(
        message.subject,
        headers.get(topology.HEADER_REASON_KIND),
        headers.get(topology.HEADER_REASON),
        message.data,
        headers.get(topology.HEADER_ORIGINAL_OBJECT),
    )
    if copy.object_ref is not None:
        bucket, _, name = copy.object_ref.partition("/")
        try:
            copy.original = (await (await js.object_store(bucket)).get(name)).data
        except Exception as exc:  # any failure to fetch it is what the check reports
            copy.original, copy.object_problem = None, f"{type(exc).__name__}: {exc}"
    return copy


async def stream_messages(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def unified_count(js: JetStreamContext, at_least: int) -> bool:
    try:
        return await stream_messages(js, topology.EVENTS_STREAM) >= at_least
    except nats.errors.Error:
        return False


async def ack_floor(js: JetStreamContext) -> int:
    """Where the pipeline's acknowledgements end (its consumer is named after the hub's lease term)."""
    try:
        return await terms.acknowledged(js, topology.INGEST_STREAM, PIPELINE_CONSUMER)
    except (NotFoundError, nats.errors.Error):
        return -1


async def ingest_drained(js: JetStreamContext) -> bool:
    """The pipeline has acknowledged everything in the ingest stream."""
    try:
        last = (await js.stream_info(topology.INGEST_STREAM)).state.last_seq
    except nats.errors.Error:
        return False
    return await ack_floor(js) >= last
