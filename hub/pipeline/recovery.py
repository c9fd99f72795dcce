"""Rebuilding the pipeline's state without publishing: the latest snapshot from the object store
``CITYHUB_PIPELINE``, then the ingest input acknowledged after it, processed again (its outputs are stored).

A hub that takes over, or restarts after a crash, does it once before it consumes. A standby does it all
along (:meth:`hub.pipeline.Pipeline.stand_by`): it restores a snapshot only when one covers more input than its
own state, and processes the input the active hub acknowledges as it goes, so taking over costs the lease wait
plus the input acknowledged since the standby's last look.

Each stored snapshot names the ingest sequence it covers in its object headers (``CityHub-Last-Sequence``), so
a standby that is ahead of it does not download it.
"""

from __future__ import annotations

import contextlib
import itertools

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ObjectMeta
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from hub import topology
from hub.nats.fetcher import ConsumerGone, Delivered, Fetcher
from hub.nats.sizes import object_meta
from hub.nats.streams import SNAPSHOT_BUCKET, open_object_store
from hub.pipeline.decode import IngestMessage
from hub.pipeline.engines import Engines
from hub.pipeline.isolation import IsolatingProcessor
from hub.pipeline.state import PipelineState

SNAPSHOT_NAME = "state"
COVERS_HEADER = "CityHub-Last-Sequence"  # object header: the ingest stream sequence a snapshot covers
INGEST_FILTER = topology.STREAM_SUBJECTS[topology.INGEST_STREAM][0]
FETCH_TIMEOUT_S = 5.0
READER_INACTIVE_S = 30.0  # the server removes a reader its hub no longer fetches from (a crashed standby's)


def snapshot_meta(covers: int, max_payload: int) -> ObjectMeta:
    """The object metadata of a snapshot covering the ingest input up to stream sequence ``covers``."""
    meta = object_meta(SNAPSHOT_NAME, max_payload)
    meta.headers = {COVERS_HEADER: [str(covers)]}  # header values are lists, as every NATS client reads them
    return meta


def ingest_message(msg: Delivered) -> IngestMessage:
    return IngestMessage(msg.seq, msg.subject, msg.data, msg.stored_at)


class StateRebuild:
    """The pipeline state rebuilt from the stored snapshot and the acknowledged input after it. ``state`` is
    the result so far; :meth:`restore_newer_snapshot` and :meth:`catch_up` move it forward."""

    def __init__(self, nc: NatsClient, isolation: IsolatingProcessor, batch_size: int):
        self.isolation = isolation
        self.batch_size = batch_size
        self.state = PipelineState.fresh(self.engines)
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self._looked_at: str | None = None  # the stored snapshot (its nuid) last restored or found not ahead
        self._store: ObjectStore | None = None
        self._reader: Fetcher | None = None  # an ephemeral consumer delivering from just after `_ahead`
        self._reader_name: str | None = None
        self._ahead: list[IngestMessage] = []  # read, not yet acknowledged by the active pipeline

    @property
    def engines(self) -> Engines:
        return self.isolation.processor.engines

    def use_connection(self, nc: NatsClient) -> None:
        """Read through ``nc`` (the hub replaced a connection the server closed); the reader is created anew."""
        self.nc, self.js = nc, nc.jetstream(timeout=10.0)
        self._store = None
        self._forget_reader()

    async def reset(self) -> None:
        """Start over from nothing (a pipeline that failed rebuilds its state from what is stored)."""
        await self.close()
        self.state = PipelineState.fresh(self.engines)
        self.isolation.checkpoint(self.state)
        self._looked_at = None

    async def restore_newer_snapshot(self, ahead_by: int = 0) -> bool:
        """Restore the stored snapshot when it covers more than ``ahead_by`` messages of input beyond the state
        (fewer are processed sooner than a large state is restored); True when it did."""
        if self._store is None:
            self._store = await open_object_store(self.js, SNAPSHOT_BUCKET)
        store = self._store
        try:
            info = await store.get_info(SNAPSHOT_NAME)
        except (ObjectNotFoundError, NotFoundError):
            return False
        if info.nuid == self._looked_at or _covers(info.headers) <= self.state.last_seq + ahead_by:
            self._looked_at = info.nuid
            return False
        try:
            blob = (await store.get(SNAPSHOT_NAME)).data
        except (ObjectNotFoundError, NotFoundError):  # replaced meanwhile: the next look takes the new one
            return False
        if blob is None:
            return False
        state = PipelineState.restore(blob, self.engines)
        self._looked_at = info.nuid
        if state.last_seq <= self.state.last_seq:
            return False
        self.state = state
        self.isolation.checkpoint(state, blob)
        await self.close()  # the reader delivers from before the snapshot
        return True

    async def catch_up(self, up_to: int) -> int:
        """Process the input after the state up to stream sequence ``up_to`` (acknowledged, so its outputs are
        stored) without publishing; returns how many messages were processed."""
        processed = 0
        while self.state.last_seq < up_to:
            batch = await self._next(up_to)
            if batch:
                self.state, _ = self.isolation.process(self.state, batch)
                processed += len(batch)
            self.state.last_seq = batch[-1].seq if batch else up_to  # nothing stored in between: covered
        return processed

    async def close(self) -> None:
        """Delete the reader's consumer (a crashed process's goes away by itself after READER_INACTIVE_S)."""
        name = self._reader_name
        if self._reader is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._reader.stop()
        self._forget_reader()
        if name is not None:
            with contextlib.suppress(nats.errors.Error, NotFoundError):
                await self.js.delete_consumer(topology.INGEST_STREAM, name)

    async def _next(self, up_to: int) -> list[IngestMessage]:
        """The next messages up to ``up_to``; an empty list when the stream holds none up to there (they aged
        out, or were purged)."""
        while not self._ahead:
            self._ahead = await self._read(up_to - self.state.last_seq)
            if not self._ahead and await self._first_stored() > up_to:
                return []
        taken = list(itertools.takewhile(lambda message: message.seq <= up_to, self._ahead))
        self._ahead = self._ahead[len(taken) :]
        return taken

    async def _first_stored(self) -> int:
        return (await self.js.stream_info(topology.INGEST_STREAM)).state.first_seq

    async def _read(self, wanted: int) -> list[IngestMessage]:
        reader = self._reader or await self._new_reader(self.state.last_seq + 1)
        try:
            msgs = await reader.fetch(min(self.batch_size, wanted), timeout=FETCH_TIMEOUT_S)
        except ConsumerGone:
            await self.close()
            return []
        if any(later.consumer_seq != earlier.consumer_seq + 1 for earlier, later in itertools.pairwise(msgs)):
            await self.close()  # deliveries lost in flight (a reconnect): read again from the next sequence
            return []
        return [ingest_message(msg) for msg in msgs if msg.seq > self.state.last_seq]

    async def _new_reader(self, first_seq: int) -> Fetcher:
        info = await self.js.add_consumer(
            topology.INGEST_STREAM,
            ConsumerConfig(
                filter_subject=INGEST_FILTER,
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=first_seq,
                inactive_threshold=READER_INACTIVE_S,
            ),
        )
        self._reader_name = info.name
        self._reader = await Fetcher(self.nc, topology.INGEST_STREAM, info.name).start()
        return self._reader

    def _forget_reader(self) -> None:
        self._reader = self._reader_name = None
        self._ahead = []


def _covers(headers: dict | None) -> float:
    """The ingest sequence a stored snapshot covers, from its headers (infinite when it does not say)."""
    value = (headers or {}).get(COVERS_HEADER)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(str(value)) if value is not None else float("inf")
    except ValueError:
        return float("inf")
