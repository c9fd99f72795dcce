"""Escalation up: an incident of this hub goes to the hub one tier up, by policy. It is a change of the
incident — ``escalated``, with ``escalated_to`` (the parent's scope) and ``escalation_cause`` — published on
this hub's incidents stream, which the parent sources: the parent sees it with the incident's whole history,
which it already holds. Causes (:class:`hub.models.EscalationCause`):

- ``severity``: the incident opens or grows to ``[tier] escalate_severity``;
- ``deadline``: its orders ran through the escalator's whole ladder unanswered (an ``escalated`` change
  with no next deadline);
- ``operator``: an operator asks (``POST /incidents/{id}/escalate``).

An incident goes up once: a KV bucket remembers which went up, so neither a restart nor a second cause sends
it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import datetime, timezone
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hub import topology, wire
from hub.backoff import Backoff, retry
from hub.config import HubConfig
from hub.federation.sourcing import from_below
from hub.fetcher import Delivered
from hub.follower import NATS_TROUBLE, Follower, Start, next_sequence
from hub.models import EscalationCause, IncidentChange, Severity
from hub.pipeline import incident_output
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.escalation.up")

BUCKET = "CITYHUB_ESCALATED_UP"
CONSUMER = "cityhub-escalation-up"


def cause_of(change: str, incident: dict[str, Any], threshold: Severity | None) -> EscalationCause | None:
    """Why an incident change of this hub sends the incident up, if it does."""
    if change in (IncidentChange.OPENED, IncidentChange.MERGED) and threshold is not None:
        if Severity(incident["severity"]).rank >= threshold.rank:
            return EscalationCause.SEVERITY
    if change == IncidentChange.ESCALATED and incident.get("escalate_at") is None and not incident.get("escalated_to"):
        return EscalationCause.DEADLINE
    return None


def district_of(incident: dict[str, Any]) -> str | None:
    return next((cell["id"] for cell in incident.get("grid_path") or [] if cell.get("level") == "district"), None)


def _key(incident_id: str) -> str:
    return incident_id.replace("~", "_")  # KV keys take no '~'


class UpwardEscalation:
    """Follows this hub's own incident changes (durable consumer ``cityhub-escalation-up``) and escalates to
    ``parent`` by the policy above."""

    def __init__(self, nc: NatsClient, parent: str, threshold: Severity | None):
        self.parent = parent
        self.threshold = threshold
        self.escalated = 0
        self.follower: Follower | None = None
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self.nc = nc

    @classmethod
    def from_config(cls, config: HubConfig, nc: NatsClient) -> UpwardEscalation | None:
        """The hub's upward escalation (None for a hub with no parent)."""
        parent = config.tier.parent
        return cls(nc, parent.scope, config.tier.escalate_severity) if parent is not None else None

    async def start(self) -> None:
        js = self.nc.jetstream(timeout=10.0)
        self._kv = await js.create_key_value(bucket=BUCKET, history=1)
        start = Start(seq=await next_sequence(self.nc, topology.INCIDENTS_STREAM))  # a new consumer: from now on
        self.follower = Follower(self.nc, topology.INCIDENTS_STREAM, f"{topology.PREFIX}.incidents.>", start,
                                 name="escalation-up", durable=CONSUMER, batch=100)
        self._task = asyncio.create_task(self._follow(), name="cityhub.escalation.up")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def use_connection(self, nc: NatsClient) -> None:
        await self.stop()
        self.nc = nc
        await self.start()

    def health(self) -> dict[str, Any]:
        return {"parent": self.parent, "escalated": self.escalated,
                "consumer": self.follower.health() if self.follower else None}

    async def escalate(self, incident: dict[str, Any], cause: EscalationCause) -> bool:
        """Send ``incident`` (its latest data) up for ``cause``; False when it went up before. Published first
        and remembered after: a crash between the two publishes again on the next try, with the same id."""
        assert self._kv is not None
        key = _key(incident["id"])
        if await self._went_up(key):
            return False
        now = datetime.now(timezone.utc)
        data = {**incident, "escalated_to": self.parent, "escalation_cause": cause.value, "updated_at": now.isoformat()}
        output = incident_output(data, incident["id"], incident["category"], incident["severity"], district_of(incident),
                                 IncidentChange.ESCALATED, f"{incident['id']}:up", now)
        await self.nc.jetstream(timeout=10.0).publish(output.subject, output.data, headers=output.all_headers())
        with contextlib.suppress(KeyWrongLastSequenceError):  # remembered by a concurrent request already
            await self._kv.create(key, cause.value.encode())
        self.escalated += 1
        log.warning("incident %s escalated to %s (%s)", incident["id"], self.parent, cause.value)
        return True

    async def _went_up(self, key: str) -> bool:
        assert self._kv is not None
        try:
            await self._kv.get(key)
        except KeyNotFoundError:
            return False
        return True

    async def _follow(self) -> None:
        assert self.follower is not None
        async for message in self.follower.messages():
            await retry(functools.partial(self._observe, message), retry_on=NATS_TROUBLE,
                        backoff=Backoff(initial_s=0.2, max_s=5.0))

    async def _observe(self, message: Delivered) -> None:
        if from_below(message.msg.headers):  # a lower tier's incident: that tier escalates it
            return
        envelope = wire.decode(message.data)
        change = message.subject.rsplit(".", 1)[-1]
        cause = cause_of(change, envelope["data"], self.threshold)
        if cause is not None:
            await self.escalate(envelope["data"], cause)
