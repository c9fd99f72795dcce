"""The role loop of one hub: stand by and campaign for the lease, or hold it and renew it, and switch the
hub's active parts on and off to follow it.

Two loops, so a slow switch never delays a renewal: ``keep`` talks to the lease (a campaign every
``POLL_SHARE`` of the TTL while standing by, a renewal every third of it while active) on a thread of its own
(:mod:`.keeper`), and ``follow``, on the hub's event loop, compares what the hub runs with what the lease says
and calls ``activate`` / ``deactivate``, one switch at a time (and starts the active parts over when they ended
on the fence while the lease lapsed and came back). Deactivation happens when a renewal finds the lease moved,
or when the lease's validity runs out on this process's clock (paused, cut off from NATS) — whichever comes
first. ``keep`` renews and campaigns only while the hub's event loop runs (a heartbeat every ``BEAT_S``): a hub
whose loop is stuck loses its lease like a dead one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient

from hub.availability.keeper import LeaseThread
from hub.availability.lease import VALID_SHARE, Holder, Lease, LeaseLost
from hub.config import NatsConfig
from hub.errors import ConfigError, HubError
from hub.tasks import cancel_and_wait, stop_if_cancelled

log = logging.getLogger("cityhub.availability")

POLL_SHARE = 0.05  # of the lease TTL: how often a standby looks for an expired lease (a KV get)
FOLLOW_EVERY_S = 0.05  # how often ``follow`` compares the hub's role with the lease
RETRY_ACTIVATION_S = 1.0
BEAT_S = 0.1  # the hub's event loop says it runs
STALL_SHARE = 0.5  # of the lease TTL: an event loop silent this long is stuck; its hub renews nothing

Switch = Callable[[], Awaitable[None]]


class Elector:
    """Keeps this hub's role (``standby``, ``activating``, ``active``, ``stepping down``) in line with the
    lease. ``activate`` starts what only the active hub runs; ``deactivate`` stops it. The lease's calls go
    through a connection of their own made with ``nats``."""

    def __init__(
        self,
        lease: Lease,
        nats: NatsConfig,
        activate: Switch,
        deactivate: Switch,
        on_role: Callable[[str], None] | None = None,
        running: Callable[[], bool] = lambda: True,
    ):
        self.lease = lease
        self._thread = LeaseThread(nats)
        self._activate = activate
        self._deactivate = deactivate
        self._running = running  # whether the active parts still run (they end on the fence by themselves)
        self._on_role = on_role or (lambda role: None)
        self.role = "standby"
        self.activations = 0
        self.holder: Holder | None = None  # the holder as last seen while standing by (or this hub)
        self.trouble: str | None = None  # why the last lease call failed, until one succeeds
        self.became_active_at: float | None = None  # epoch seconds
        self._active = False
        self._beat_at = time.monotonic()  # when the hub's event loop last ran
        self._stalled = False
        self._beating: asyncio.Task[None] | None = None
        self._keeping: asyncio.Task[None] | None = None  # on the lease's thread
        self._following: asyncio.Task[None] | None = None

    async def join(self, wait_s: float = 30.0) -> None:
        """Connect the lease's thread, open the lease bucket, then raise :class:`ConfigError` when the current
        holder runs a pipeline config other than ours. JetStream not answering is retried for ``wait_s`` (a
        busy or electing cluster), then raised."""
        try:
            self._use(await self._thread.start(on_replaced=self._replaced))
            await self._thread.run(self._answer(self.lease.open, wait_s))
            current = await self._thread.run(self._answer(self.lease.current, wait_s))
        except BaseException:
            await self._thread.stop()
            raise
        if current is not None and current[0].fingerprint != self.lease.me.fingerprint:
            holder = current[0]
            await self._thread.stop()
            raise ConfigError(
                f"the active hub {holder.instance} (admin {holder.admin_url or 'off'}) runs a different pipeline "
                f"config (fingerprint {holder.fingerprint}, ours {self.lease.me.fingerprint}): rules, grids, "
                "dedup, merging, [pipeline], enabled plugins and [availability] must be the same on every hub of "
                "one NATS account; deploy the same cityhub.toml to every hub, then start this one again"
            )

    async def start(self) -> None:
        """Campaign once (a hub that finds no holder becomes active before this returns, its lease renewed
        meanwhile however long that takes), then keep the role in the background."""
        self._beating = asyncio.create_task(self._beat(), name="cityhub.availability.beat")
        await self._thread.run(self._step())
        self._keeping = await self._thread.background(self._keep())
        if self.lease.held:
            try:
                await self._switch(True)
            except BaseException:
                await self._stop_keeping()
                raise
        self._following = asyncio.create_task(self._follow(), name="cityhub.availability.follow")

    async def stop(self) -> None:
        """Stop following, step down while the lease is still renewed (so the last snapshot is fenced in),
        then release the lease so a standby takes over without waiting for the TTL. Once is enough."""
        if not self._thread.running:
            return
        await cancel_and_wait(self._following)
        if self._active:
            await self._switch(False)
        await self._stop_keeping()
        await cancel_and_wait(self._beating)
        self._following = self._beating = None
        await self._thread.run(self.lease.release())
        await self._thread.stop()

    def health(self) -> dict[str, Any]:
        holder = self.holder
        return {
            "role": self.role,
            "instance": self.lease.me.instance,
            "lease_revision": self.lease.revision if self.lease.held else None,
            "holder": {"instance": holder.instance, "admin_url": holder.admin_url} if holder else None,
            "activations": self.activations,
            "active_since": self.became_active_at,
            "trouble": self.trouble,
        }

    # talking to the lease (on the lease's thread)

    def _use(self, nc: NatsClient) -> None:
        self.lease.use_connection(nc.jetstream(timeout=self.lease.ttl_s / 3))

    async def _replaced(self, nc: NatsClient) -> None:
        self._use(nc)

    async def _stop_keeping(self) -> None:
        if self._keeping is not None:
            await self._thread.run(cancel_and_wait(self._keeping))
            self._keeping = None

    async def _keep(self) -> None:
        """Renewals every third of the TTL counted from when the last one was sent, campaigns every
        ``POLL_SHARE`` of it; neither while the hub's event loop is stuck."""
        renew_every = self.lease.ttl_s / 3
        sent = time.monotonic()
        while True:
            holding = self.lease.revision is not None
            due = sent + (renew_every if holding else self.lease.ttl_s * POLL_SHARE)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            sent = time.monotonic()
            if self._loop_stuck():
                continue
            await self._step()
            late, took = sent - due, time.monotonic() - sent
            if holding and late + took > renew_every:
                log.warning(
                    "the lease renewal was sent %.2f s late and answered after %.2f s (JetStream slow); "
                    "the lease lapses %.1f s after a renewal is sent",
                    late,
                    took,
                    self.lease.ttl_s * VALID_SHARE,
                )

    def _loop_stuck(self) -> bool:
        silent = time.monotonic() - self._beat_at
        stalled = silent > self.lease.ttl_s * STALL_SHARE
        if stalled != self._stalled:
            self._stalled = stalled
            if stalled:
                log.error(
                    "the hub's event loop has not run for %.1f s: this hub neither renews nor takes the lease "
                    "until it runs again",
                    silent,
                )
            else:
                log.warning("the hub's event loop runs again")
        return stalled

    async def _step(self) -> None:
        """One lease call: a campaign while standing by, a renewal while holding. Failures are recorded
        (``trouble``, shown by /ready), not raised: the lease's own validity decides meanwhile."""
        try:
            if self.lease.revision is None:
                await self._campaign()
            else:
                await self.lease.renew()
            self.trouble = None
        except LeaseLost as exc:
            log.warning("%s", exc)
        except Exception as exc:  # NATS away or JetStream without a leader
            stop_if_cancelled()  # a stop that nats-py's timeout swallowed: the loop must end, not retry
            self.trouble = f"{type(exc).__name__}: {exc}"
            log.warning("lease call failed (%s)", self.trouble)

    @staticmethod
    async def _answer(call: Callable[[], Awaitable[Any]], wait_s: float) -> Any:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return await call()
            except HubError:  # an answer, and a refusal
                raise
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("lease bucket not answering (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(0.5)

    async def _campaign(self) -> None:
        current = await self.lease.current()
        if current is not None:
            self.holder = current[0]
            return
        if await self.lease.acquire():
            self.holder = self.lease.me
            log.info("took the lease (revision %s): this hub becomes active", self.lease.revision)

    # following it (on the hub's event loop)

    async def _beat(self) -> None:
        while True:
            self._beat_at = time.monotonic()
            await asyncio.sleep(BEAT_S)

    async def _follow(self) -> None:
        while True:
            stop_if_cancelled()  # a stop that a step down swallowed (nats-py's timeouts do): end here
            wanted = self.lease.held
            if self._active and wanted and not self._running():
                log.warning("the active parts stopped by themselves (the lease lapsed and came back); restarting them")
                wanted = False  # step down now; the next round takes over again
            if wanted != self._active:
                try:
                    await self._switch(wanted)
                except Exception:
                    log.exception("switching to %s failed; retrying", "active" if wanted else "standby")
                    await asyncio.sleep(RETRY_ACTIVATION_S)
            await asyncio.sleep(FOLLOW_EVERY_S)

    async def _switch(self, active: bool) -> None:
        self._set_role("activating" if active else "stepping down")
        try:
            await (self._activate() if active else self._deactivate())
        except BaseException:
            if active:  # half started: stop what did start before trying again
                await self._deactivate()
            self._active = False
            self._set_role("standby")
            raise
        self._active = active
        if active:
            self.activations += 1
            self.became_active_at = time.time()
        self._set_role("active" if active else "standby")

    def _set_role(self, role: str) -> None:
        if role != self.role:
            log.info("role: %s → %s", self.role, role)
        self.role = role
        self._on_role(role)
