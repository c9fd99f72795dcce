"""The consume loop: :class:`Pipeline` runs the batch processor over the durable ingest consumer, publishes
every batch's outputs and acknowledges its input once they are stored, snapshots the state, recovers it
after a crash (:mod:`.recovery`), and restarts itself (with backoff, loudly) when anything in the loop fails.
A standby hub's pipeline keeps its state current without consuming (:meth:`Pipeline.stand_by`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import time
import traceback
from typing import Any, Literal

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from hub import topology
from hub.availability import terms
from hub.availability.lease import LeaseLost
from hub.backoff import Backoff
from hub.federation.handoff import OUT_OF_SCOPE
from hub.metrics import Metrics
from hub.nats.fetcher import ConsumerGone, Delivered, Fetcher
from hub.nats.publisher import UNFENCED, Fence, Publisher
from hub.nats.streams import SNAPSHOT_BUCKET, open_object_store
from hub.pipeline.decode import source_of
from hub.pipeline.engines import Engines, PipelineOptions, TransformOutcome
from hub.pipeline.isolation import IsolatingProcessor
from hub.pipeline.processor import BatchProcessor, BatchResult
from hub.pipeline.recovery import INGEST_FILTER, SNAPSHOT_NAME, StateRebuild, ingest_message, snapshot_meta
from hub.pipeline.state import PipelineState
from hub.pipeline.stored import StoredOutputs
from hub.tasks import cancel_and_wait, stop_if_cancelled

log = logging.getLogger("cityhub.pipeline")

PIPELINE_CONSUMER = "cityhub-pipeline"
YOUNG_COLLECTION_EVERY = 50_000  # container allocations between young-generation garbage collections
RESTART_BACKOFF = (1.0, 60.0)  # first and longest delay before the pipeline is restarted after a failure
STANDBY_LOOK_EVERY_S = 0.2  # how often a standby's pipeline looks for newly acknowledged input
RESTORE_AHEAD_BATCHES = 10  # a snapshot is restored only when it covers more than this many batches beyond the
# state (fewer are processed sooner than a large state restored); a standby that is behind catches up in such steps

Status = Literal["standing by", "starting", "running", "restarting", "stopped"]


def _tune_garbage_collector() -> None:
    """A batch allocates tens of thousands of short-lived containers (documents, models, output dicts), almost
    none of them in reference cycles, so reference counting frees them and the cycle collector finds nothing.
    With CPython's default threshold it still ran every 700 allocations and its older generations walked every
    long-lived object (open incidents, grid cells, rules): a third of the pipeline's CPU per event
    (docs/runtime.md). What is alive once the state is restored is frozen out of collection, and young
    collections run every ``YOUNG_COLLECTION_EVERY`` allocations; cycles are still collected. Once tuned (a
    standby's pipeline tuned it when it began standing by) a takeover only freezes: a full collection of a
    hub's heap would hold its event loop for a noticeable part of the takeover."""
    if gc.get_threshold()[0] != YOUNG_COLLECTION_EVERY:
        gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 20, 20)


class Pipeline:
    """Runs :class:`BatchProcessor` over the durable ingest consumer, with snapshots and crash recovery."""

    def __init__(
        self,
        nc: NatsClient,
        engines: Engines,
        metrics: Metrics,
        options: PipelineOptions | None = None,
        on_transform_outcome: TransformOutcome | None = None,
        fence: Fence = UNFENCED,
    ):
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.fence = fence  # checked before every fetch, publish, ack and snapshot (hub.availability)
        self.publisher = Publisher(nc, fence=fence)
        self.metrics = metrics
        self.options = options or PipelineOptions()
        self.processor = BatchProcessor(engines, self.options, on_transform_outcome)
        self.isolation = IsolatingProcessor(self.processor)
        self.rebuild = StateRebuild(nc, self.isolation, self.options.batch_size)
        self._restore_ahead = RESTORE_AHEAD_BATCHES * self.options.batch_size
        self.counts: dict[str, int] = {
            "in": 0,
            "out": 0,
            "dlq": 0,
            "duplicates": 0,
            "merged": 0,
            "closed": 0,
            "handed_down": 0,
            "batches": 0,
        }
        self.last_batch_at: float | None = None
        self.status: Status = "stopped"
        self.restarts = 0
        self.last_error: str | None = None  # the failure that made the pipeline restart last, with its time
        self._task: asyncio.Task[None] | None = None
        self._standing_by: asyncio.Task[None] | None = None
        self._standby_trouble: str | None = None  # why the standby's last look failed, until one succeeds
        self._publishing: asyncio.Task[None] | None = None  # the latest batch's outputs on their way
        self._stopping = asyncio.Event()
        self._last_snapshot = time.monotonic()
        self._fresh_consumer = True
        self._consumer: Fetcher | None = None
        self.consumer_name = PIPELINE_CONSUMER  # per lease term on a hub among several (hub.availability.terms)
        self.stored = StoredOutputs()  # outputs stored before an outage longer than the duplicate window
        self._look_for_stored = False  # at the first input after a recovery
        self._acknowledged_at: float | None = None  # when the server took the last acknowledgement (recovery)

    @property
    def engines(self) -> Engines:
        return self.processor.engines

    @property
    def state(self) -> PipelineState:
        return self.rebuild.state

    @state.setter
    def state(self, state: PipelineState) -> None:
        self.rebuild.state = state

    def swap_engines(self, engines: Engines) -> None:
        """Use new rules / grids / merge policy / transforms from the next batch on (the loop is between
        batches whenever other coroutines run, so no batch sees half of each)."""
        if engines.merge_policy != self.engines.merge_policy:
            self.state.merger.update_policy(engines.merge_policy)
        self.processor.engines = engines
        self.isolation.checkpoint(self.state)  # batches before the swap are not processed again with new engines

    async def use_connection(self, nc: NatsClient) -> None:
        """Carry on with ``nc`` (the hub replaced a connection the server closed, :mod:`hub.nats.natslink`):
        outputs not yet stored are published on it, the ingest consumer is read through it. Deliveries lost
        with the closed client show as a gap, which re-reads from the next unprocessed sequence."""
        self.nc, self.js = nc, nc.jetstream(timeout=10.0)
        self.publisher.use_connection(nc)
        self.rebuild.use_connection(nc)
        if self._consumer is not None:
            self._consumer = await Fetcher(nc, topology.INGEST_STREAM, self.consumer_name, prefetch=True).start()

    async def stand_by(self) -> None:
        """Keep the state current while another hub's pipeline consumes: restore each snapshot that covers more
        input than the state, and process the input that pipeline acknowledges, without publishing."""
        _tune_garbage_collector()
        self.status = "standing by"
        self._standing_by = asyncio.create_task(self._stand_by(), name="cityhub.pipeline.standby")

    async def start(self, term: int | None = None) -> None:
        """Recover the state and consume; ``term``: the lease term this hub holds, which names its consumer."""
        self.consumer_name = terms.named(PIPELINE_CONSUMER, term)
        await self._stop_standing_by(keep_reading=True)
        self.status = "starting"
        self._publishing = None
        await self._recover()
        _tune_garbage_collector()
        self._stopping.clear()
        self.status = "running"
        self._task = asyncio.create_task(self._supervised(), name="cityhub.pipeline")

    async def stop(self) -> None:
        """Finish the batch in hand, snapshot, and stop (a standby just stops). A pipeline whose lease is gone
        stops at once: nothing it would still write could be stored."""
        await self._stop_standing_by()
        task = self._task
        if task is None:
            return
        self._stopping.set()
        if self._deposed():
            self._task, self.status = None, "stopped"
            await cancel_and_wait(task)
            self.fence.check()  # raises: the caller says why there is no final snapshot
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.options.fetch_timeout_s + 15)
        except TimeoutError:
            task.cancel()
        self._task = None
        if self.status == "running":  # a pipeline that failed and did not recover has no state worth keeping
            await self._snapshot_retrying()
        self.status = "stopped"

    def _deposed(self) -> bool:
        """The lease this pipeline writes under is gone (an unfenced pipeline is never deposed)."""
        try:
            self.fence.check()
        except LeaseLost:
            return True
        return False

    @property
    def running(self) -> bool:
        """Processing input: started, not stopped, not waiting to restart after a failure."""
        return self._task is not None and not self._task.done() and self.status == "running"

    def health(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "status": self.status,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "poisoned_messages": self.isolation.poisoned,
        }

    def standby_health(self) -> dict[str, Any]:
        """A standby's view: the input its state covers, and why its last look failed (None when it did not)."""
        return {
            "status": self.status,
            "last_sequence": self.state.last_seq,
            "open_incidents": len(self.state.incidents),
            "trouble": self._standby_trouble,
        }

    # standing by

    async def _stand_by(self) -> None:
        """Look every ``STANDBY_LOOK_EVERY_S``; while behind, in steps of ``RESTORE_AHEAD_BATCHES`` batches, each
        after a look for a snapshot more than a step ahead: a standby far behind (just started, while the active
        hub works off a backlog) jumps ahead by the snapshots instead of chasing the active hub at the same speed,
        and one a little behind processes on rather than restoring every snapshot."""
        step = self._restore_ahead
        while True:
            behind = False
            try:
                await self.rebuild.restore_newer_snapshot(ahead_by=step)
                ack_floor = await self._ack_floor()
                await self.rebuild.catch_up(min(ack_floor, self.state.last_seq + step))
                behind = self.state.last_seq < ack_floor
                self._standby_trouble = None
            except Exception as exc:  # NATS away, a stream electing its leader: look again
                stop_if_cancelled()
                if self._standby_trouble is None:
                    log.warning(
                        "the standby could not follow the active pipeline (%s: %s); trying again",
                        type(exc).__name__,
                        exc,
                    )
                self._standby_trouble = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0 if behind else STANDBY_LOOK_EVERY_S)

    async def _stop_standing_by(self, keep_reading: bool = False) -> None:
        """Stop following the active pipeline; ``keep_reading`` keeps the reader for the catch-up of a takeover."""
        if self._standing_by is not None:
            await cancel_and_wait(self._standing_by)
            self._standing_by = None
            if not keep_reading:
                await self.rebuild.close()

    # supervision

    async def _supervised(self) -> None:
        """Run the loop; when it fails, say so at once (ERROR, ``status`` and ``/health``) and restart it from
        the stored state with growing delays until it runs again."""
        backoff = Backoff(*RESTART_BACKOFF)
        while True:
            batches_before = self.counts["batches"]
            try:
                await self._run()
                return
            except LeaseLost:
                raise  # another hub is active now: this one stands down, it does not restart (hub.availability)
            except Exception as exc:
                if self.counts["batches"] > batches_before:
                    backoff.reset()  # it ran between two failures: start the delays over
                await self._restart_after(exc, backoff.next_delay())
                if self._stopping.is_set():
                    return

    async def _restart_after(self, exc: Exception, delay: float) -> None:
        self.status = "restarting"
        self.restarts += 1
        self.last_error = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {type(exc).__name__}: {exc}"
        log.error(
            "the pipeline stopped: %s; restarting it in %.1f s\n%s",
            self.last_error,
            delay,
            "".join(traceback.format_exception(exc)),
        )
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                return
            try:
                await self._recover_afresh()
            except Exception as again:  # NATS still away, say: keep trying, never give up
                log.error(
                    "restarting the pipeline failed (%s: %s); trying again in %.1f s",
                    type(again).__name__,
                    again,
                    delay,
                )
                continue
            self.status = "running"
            log.warning("the pipeline runs again from stream sequence %d", self.state.last_seq + 1)
            return

    async def _recover_afresh(self) -> None:
        """Drop what the failed loop held (its unstored outputs are published again after recovery) and
        rebuild the state from the snapshot and the acknowledged input."""
        if self._publishing is not None:
            self._publishing.cancel()
            with contextlib.suppress(BaseException):
                await self._publishing
            self._publishing = None
        await self.rebuild.reset()
        await self._recover()

    # recovery

    async def _snapshot(self) -> None:
        self.fence.check()
        blob = self.state.snapshot()
        self.isolation.checkpoint(self.state, blob)
        store = await open_object_store(self.js, SNAPSHOT_BUCKET)
        await store.put(SNAPSHOT_NAME, blob, meta=snapshot_meta(self.state.last_seq, self.nc.max_payload))
        self._last_snapshot = time.monotonic()

    async def _recover(self) -> None:
        """The state up to the ack floor (the stored snapshot, if the state is behind it, and the acknowledged
        input after it), then the durable consumer from the next sequence."""
        started, before = time.monotonic(), self.state.last_seq
        restored, (ack_floor, self._acknowledged_at) = await asyncio.gather(
            self.rebuild.restore_newer_snapshot(ahead_by=self._restore_ahead),
            terms.last_acknowledgement(self.js, topology.INGEST_STREAM, PIPELINE_CONSUMER),
        )
        replayed = await self.rebuild.catch_up(ack_floor)
        self._consumer, _ = await asyncio.gather(self._durable_consumer(self.state.last_seq + 1), self.rebuild.close())
        self._last_snapshot = time.monotonic()
        self._look_for_stored = True
        log.info(
            "pipeline state at ingest sequence %d in %.2f s: %s, then %d acknowledged messages processed again",
            self.state.last_seq,
            time.monotonic() - started,
            "snapshot restored" if restored else f"kept from sequence {before}",
            replayed,
        )

    async def _ack_floor(self) -> int:
        """Where the acknowledgements of the pipeline consumers of every term end (their outputs are stored)."""
        return await terms.acknowledged(self.js, topology.INGEST_STREAM, PIPELINE_CONSUMER)

    async def _durable_consumer(self, first_seq: int) -> Fetcher:
        """The durable consumer, re-created to deliver from ``first_seq`` in stream order. A consumer left by
        a crashed process would first deliver past the messages that process had in flight (those come back
        only after ack_wait), and processing out of order would change dedup and merge results."""
        if self._consumer is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._consumer.stop()
        await terms.retire(self.js, topology.INGEST_STREAM, PIPELINE_CONSUMER, keep=self.consumer_name)
        try:
            await self.js.delete_consumer(topology.INGEST_STREAM, self.consumer_name)
        except NotFoundError:
            pass
        self._fresh_consumer = True
        await self.js.add_consumer(
            topology.INGEST_STREAM,
            ConsumerConfig(
                durable_name=self.consumer_name,
                filter_subject=INGEST_FILTER,
                ack_policy=AckPolicy.ALL,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=first_seq,
                ack_wait=self.options.ack_wait_s,
                max_deliver=-1,
                max_ack_pending=max(10_000, self.options.batch_size * 4),
                max_waiting=16,
            ),
        )
        return await Fetcher(self.nc, topology.INGEST_STREAM, self.consumer_name, prefetch=True).start()

    # the loop

    async def _run(self) -> None:
        """Fetch and process batch k+1 while JetStream stores batch k's outputs; acknowledge k once they are
        stored. Input is acknowledged in order, so the ack floor never passes unstored output."""
        in_flight: tuple[list[Delivered], Any, float] | None = None
        while not self._stopping.is_set():
            msgs = await self._fetch()
            if msgs and self._skipped_ahead(msgs):
                if in_flight is not None:
                    await self._complete(*in_flight)
                    in_flight = None
                log.warning(
                    "ingest delivery skipped past sequence %d (messages lost in flight, e.g. by a server "
                    "restart); re-reading from there",
                    self.state.last_seq + 1,
                )
                await self._reopen_consumer()
                continue
            unprocessed = [msg.stored_at for msg in msgs if msg.seq > self.state.last_seq]
            if unprocessed and self._look_for_stored:
                self._look_for_stored = False
                await self.stored.look(self.nc, min(unprocessed), self._acknowledged_at)
            started = time.monotonic()
            publishing = self._process(msgs) if msgs else None
            if in_flight is not None:
                await self._complete(*in_flight)
            in_flight = (msgs, publishing, started) if msgs else None
            if time.monotonic() - self._last_snapshot >= self.options.snapshot_interval_s:
                if in_flight is not None:  # a snapshot covers only input whose outputs are all stored
                    await self._complete(*in_flight)
                    in_flight = None
                await self._snapshot_retrying()
        if in_flight is not None:
            await self._complete(*in_flight)

    def _skipped_ahead(self, msgs: list[Delivered]) -> bool:
        """True when deliveries were lost in flight (e.g. across a reconnect): the batch starts past the next
        unprocessed sequence, or its consumer sequences are not consecutive. Lost messages come back only
        after ack_wait — too late for in-order processing, and AckAll on the batch would acknowledge them.
        Right after the consumer is (re)created a gap before the batch is genuine (messages aged out of the
        stream) and accepted."""
        fresh, self._fresh_consumer = self._fresh_consumer, False
        consecutive = all(later.consumer_seq == earlier.consumer_seq + 1 for earlier, later in itertools.pairwise(msgs))
        return not consecutive or (not fresh and msgs[0].seq > self.state.last_seq + 1)

    async def _reopen_consumer(self) -> None:
        """Re-create the durable consumer from the next unprocessed sequence, retrying while NATS is away."""
        while True:
            try:
                self._consumer = await self._durable_consumer(self.state.last_seq + 1)
                return
            except Exception as exc:  # not connected, or JetStream not answering yet
                log.warning("re-creating the ingest consumer failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    async def _fetch(self) -> list[Delivered]:
        assert self._consumer is not None, "start() creates the consumer"
        self.fence.check()
        try:
            msgs = await self._consumer.fetch(self.options.batch_size, timeout=self.options.fetch_timeout_s)
        except ConsumerGone as exc:
            log.warning(
                "the ingest consumer is gone (%s); re-creating it from sequence %d", exc, self.state.last_seq + 1
            )
            await self._reopen_consumer()
            msgs = []
        except Exception as exc:  # connection trouble: nats-py reconnects; try again shortly
            log.warning("fetch failed (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(0.5)
            msgs = []
        stop_if_cancelled()
        return msgs

    def _process(self, msgs: list[Delivered]) -> tuple[asyncio.Task[None], BatchResult, int] | None:
        """Process a batch (skipping what was processed before) and start publishing its outputs."""
        batch = [ingest_message(msg) for msg in msgs if msg.seq > self.state.last_seq]
        if not batch:
            return None
        self.state, result = self.isolation.process(self.state, batch)
        self.state.last_seq = max(self.state.last_seq, batch[-1].seq)
        self._publishing = asyncio.create_task(self._publish_all(result, batch[-1].seq, after=self._publishing))
        return self._publishing, result, len(batch)

    async def _complete(
        self, msgs: list[Delivered], publishing: tuple[asyncio.Task[None], BatchResult, int] | None, started: float
    ) -> None:
        """Wait until the batch's outputs are stored, then acknowledge its input."""
        if publishing is not None:
            task, result, received = publishing
            await task
            self._count(result, received, started, msgs)
        await self._ack(msgs)
        self.last_batch_at = time.time()

    async def _publish_all(self, result: BatchResult, last_seq: int, after: asyncio.Task[None] | None) -> None:
        """Publish every output and wait until JetStream has stored them all; retry the ones not known to
        be stored (same msg ids, so nothing is stored twice), however long NATS is away. Starts once the
        previous batch's outputs (``after``) are stored, so an incident's changes reach the stream in order
        even when a batch needs retries."""
        if after is not None:
            await after
        with result.timed("publish"):
            await self.publisher.publish_until_stored(self.stored.unpublished(result.outputs, last_seq))

    async def _ack(self, msgs: list[Delivered]) -> None:
        """AckAll: acknowledging the highest sequence acknowledges the whole batch; wait for the server."""
        last = max(msgs, key=lambda msg: msg.seq)
        self.fence.check()
        try:
            await last.msg.ack_sync(timeout=5.0)
        except Exception as exc:  # the batch is redelivered and skipped as already processed
            log.warning("ack failed (%s: %s); the batch will be redelivered and skipped", type(exc).__name__, exc)

    async def _snapshot_retrying(self) -> None:
        try:
            await self._snapshot()
        except Exception as exc:  # a later snapshot covers the same state; recovery replays the gap
            log.warning("snapshot failed (%s: %s)", type(exc).__name__, exc)
            self._last_snapshot = time.monotonic()

    def _count(self, result: BatchResult, received: int, started: float, msgs: list[Delivered]) -> None:
        now = time.time()
        self.counts["in"] += received
        self.counts["out"] += result.accepted
        self.counts["dlq"] += len(result.rejected) + len(result.outside_scope)
        self.counts["duplicates"] += result.duplicates
        self.counts["merged"] += result.merged
        self.counts["closed"] += result.closed
        self.counts["handed_down"] += result.handed_down
        self.counts["batches"] += 1
        self.metrics.stage_batch("pipeline", received, result.accepted, time.monotonic() - started)
        for stage, seconds in result.stage_seconds.items():
            self.metrics.stage_batch(stage, *self._stage_counts(stage, result, received), seconds)
        self.metrics.merged(result.merged)
        for rejection in result.rejected:
            self.metrics.dead_letter(source_of(rejection.subject), rejection.kind, rejection.reason)
        for source, reason in result.outside_scope:
            self.metrics.dead_letter(source, OUT_OF_SCOPE, reason)
        self.metrics.latency("end_to_end", (now - msg.stored_at for msg in msgs))

    @staticmethod
    def _stage_counts(stage: str, result: BatchResult, received: int) -> tuple[int, int]:
        """Events into and out of ``stage``: decode drops rejected input, dedup drops duplicates, tiers drops
        what it hands down or refuses, publish emits every output message; the other stages emit what they
        receive."""
        decoded = received - len(result.rejected)
        located = result.accepted + result.handed_down + len(result.outside_scope)
        if stage == "decode":
            return received, decoded
        if stage == "dedup":
            return decoded, located
        if stage == "geo":
            return located, located
        if stage == "tiers":
            return located, result.accepted
        if stage == "publish":
            return result.accepted, len(result.outputs)
        return result.accepted, result.accepted
