"""The active hub's lease: the key ``pipeline`` of the JetStream KV bucket ``CITYHUB_LEASE``.

NATS does the election: the bucket's ``max_age`` is the lease TTL, so a key its holder stops renewing
disappears by itself; a standby takes the lease with ``create`` (stored only while the key is absent) and
the holder renews it with ``update(last=revision)`` (stored only while the key is still at the holder's
revision, JetStream's expected-last-subject-sequence check). Two hubs can never both succeed, and a holder
whose lease moved learns it from the first renewal it sends.

The lease is also the fence (:meth:`Lease.check`). The holder counts its lease as valid until
``lease_ttl × VALID_SHARE`` after it *sent* the renewal that the server stored: the server expires the key
``lease_ttl`` after *storing* it, which is later, so the holder's own view ends first. A holder that was
paused (SIGSTOP, a long GC, a frozen VM) or cut off finds its lease expired on its monotonic clock the
moment it runs again, before any other check, and every write the pipeline gates on :meth:`Lease.check`
is refused from then on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass

import nats.errors
import orjson
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from hub.errors import HubError

log = logging.getLogger("cityhub.availability")

LEASE_BUCKET = "CITYHUB_LEASE"
LEASE_KEY = "pipeline"
VALID_SHARE = 0.8  # of lease_ttl after a renewal was sent: the holder's view of its lease ends before the server's


class LeaseLost(HubError, RuntimeError):
    """This hub does not hold the active lease (it expired or moved to another hub): it must not publish,
    acknowledge or snapshot. The hub steps down to standby by itself."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or wants) the lease: the value stored under the lease key."""

    instance: str  # host:pid:random, unique per process
    fingerprint: str  # hub.availability.fingerprint.pipeline_fingerprint of its config
    admin_url: str | None = None

    @classmethod
    def of_this_process(cls, fingerprint: str, admin_url: str | None = None) -> Holder:
        return cls(f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}", fingerprint, admin_url)

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> Holder:
        document = orjson.loads(raw)
        return cls(str(document["instance"]), str(document["fingerprint"]), document.get("admin_url"))


class Lease:
    """One process's view of the lease: whether it holds it (and at which revision), and the KV calls that
    take, renew and give it back. ``ttl_s`` and ``replicas`` configure the bucket when it is (re)created."""

    def __init__(self, js: JetStreamContext | None, me: Holder, ttl_s: float, replicas: int = 1):
        self.js = js  # None until a connection is given (use_connection)
        self.me = me
        self.ttl_s = ttl_s
        self.replicas = replicas
        self.revision: int | None = None  # the revision of our lease key while we believe we hold it
        self.term: int | None = None  # the revision at which we took the lease last (hub.availability.terms)
        self._valid_until = 0.0  # monotonic
        self._kv: KeyValue | None = None
        self._recreated_at: float | None = None  # monotonic: when this process recreated a vanished bucket

    def use_connection(self, js: JetStreamContext) -> None:
        """Make the KV calls through ``js`` (the hub replaced a connection the server closed); the bucket is
        bound again on the next call."""
        self.js = js
        self._kv = None

    def _jetstream(self) -> JetStreamContext:
        if self.js is None:
            raise HubError("the lease has no NATS connection yet")
        return self.js

    # the fence

    @property
    def held(self) -> bool:
        return time.monotonic() < self.valid_until

    @property
    def valid_until(self) -> float:
        """The monotonic moment this hub's own view of its lease ends (0 while it holds none)."""
        return self._valid_until if self.revision is not None else 0.0

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this hub holds the lease now. The pipeline calls it right before
        every publish, acknowledgement, snapshot and fetch."""
        if not self.held:
            raise LeaseLost(
                f"hub {self.me.instance} does not hold the lease {LEASE_BUCKET}/{LEASE_KEY} "
                "(expired or taken by another hub); standing by"
            )

    # the KV calls

    async def open(self) -> None:
        """Create the bucket (or bind to it): max_age = lease TTL, one revision kept per key."""
        try:
            self._kv = await self._jetstream().create_key_value(
                bucket=LEASE_BUCKET,
                history=1,
                ttl=self.ttl_s,
                replicas=self.replicas,
                description="CityHub active hub lease",
            )
        except nats.js.errors.BadRequestError as exc:
            raise HubError(
                f"the lease bucket {LEASE_BUCKET} exists with other settings ({exc.description}): every "
                "hub on these streams needs the same [availability] lease_ttl and [nats.buckets] "
                "replicas; delete the bucket (nats kv rm) once all hubs run the new config"
            ) from None

    async def current(self) -> tuple[Holder, int] | None:
        """The lease's holder and revision, or None when nobody holds it."""
        try:
            entry = await (await self._bucket()).get(LEASE_KEY)
        except NotFoundError:  # key absent, expired or deleted
            return None
        return (Holder.decode(entry.value), entry.revision or 0) if entry.value else None

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this hub now holds it."""
        if self._recreated_at is not None and time.monotonic() - self._recreated_at < self.ttl_s:
            return False  # the bucket vanished: a holder we cannot see may still count on its lease
        sent = time.monotonic()
        try:
            revision = await (await self._bucket()).create(LEASE_KEY, self.me.encode())
        except KeyWrongLastSequenceError:
            return False
        self.term = revision
        self._hold(revision, sent)
        return True

    async def renew(self) -> None:
        """Extend the lease; raises :class:`LeaseLost` when it is no longer ours."""
        if self.revision is None:
            raise LeaseLost("renew without holding the lease")
        sent = time.monotonic()
        try:
            revision = await (await self._bucket()).update(LEASE_KEY, self.me.encode(), last=self.revision)
        except KeyWrongLastSequenceError:
            if await self.current() is None:  # expired, or its bucket was recreated, and nobody took it since
                await self._retake(sent)
                return
            self.revision = None
            raise LeaseLost(f"the lease {LEASE_BUCKET}/{LEASE_KEY} moved to another hub") from None
        self._hold(revision, sent)

    async def release(self) -> None:
        """Give the lease back (on a clean stop) so a standby takes over at once instead of after the TTL."""
        revision, self.revision = self.revision, None
        if revision is None or self._kv is None:
            return
        try:
            await self._kv.delete(LEASE_KEY, last=revision)
        except Exception as exc:  # it expires by itself within the TTL
            log.warning(
                "could not release the lease (%s: %s); it expires within %g s", type(exc).__name__, exc, self.ttl_s
            )

    def _hold(self, revision: int, sent: float) -> None:
        self.revision = revision
        self._valid_until = sent + self.ttl_s * VALID_SHARE

    async def _retake(self, sent: float) -> None:
        try:
            revision = await (await self._bucket()).create(LEASE_KEY, self.me.encode())
        except KeyWrongLastSequenceError:
            self.revision = None
            raise LeaseLost(f"the lease {LEASE_BUCKET}/{LEASE_KEY} lapsed and another hub took it") from None
        self.term = revision
        self._hold(revision, sent)

    async def _bucket(self) -> KeyValue:
        """The bucket, recreated when somebody deleted it (a standby then waits one TTL before it campaigns)."""
        if self._kv is not None:
            try:
                await self._jetstream().stream_info(f"KV_{LEASE_BUCKET}")
                return self._kv
            except (BucketNotFoundError, NotFoundError):
                log.warning("the lease bucket %s was deleted; recreating it", LEASE_BUCKET)
                self._recreated_at = time.monotonic()
        await self.open()
        assert self._kv is not None
        return self._kv
