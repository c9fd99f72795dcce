"""Escalation up: an incident of this hub goes to the hub one tier up, by policy. It is a change of the
incident — ``escalated``, with ``escalated_to`` (the parent's scope) and ``escalation_cause`` — published on
this hub's incidents stream, which the parent sources: the parent sees it with the incident's whole history,
which it already holds. Causes (:class:`hub.models.EscalationCause`):

- ``severity``: the incident opens or grows to ``[tier] escalate_severity``;
- ``deadline``: its orders ran through the escalator's whole ladder unanswered (an ``escalated`` change
  with no next deadline);
- ``cross_scope``: the parent linked it with an incident of another scope (:mod:`hub.federation.linking`):
  one incident across a border is the common tier's to coordinate;
- ``operator``: an operator asks (``POST /incidents/{id}/escalate``).

An incident goes up once: a KV bucket remembers which went up, so neither a restart nor a second cause sends
it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hub import topology, wire
from hub.backoff import Backoff, retry
from hub.config import HubConfig
from hub.federation.sourcing import from_below
from hub.models import EscalationCause, IncidentChange, Severity
from hub.nats.fetcher import Delivered
from hub.nats.follower import NATS_TROUBLE, Follower, Start, next_sequence
from hub.nats.streams import has_key
from hub.pipeline import incident_output
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.escalation.up")

BUCKET = "CITYHUB_ESCALATED_UP"
CONSUMER = "cityhub-escalation-up"
LINKS_CONSUMER = "cityhub-escalation-up-links"


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
    """Follows this hub's own incident changes and the parent's links of them (durable consumers
    ``cityhub-escalation-up`` and ``cityhub-escalation-up-links``, which start, the first time, at what comes
    after them) and escalates to ``parent`` by the policy above. A link names an incident by id: its data is
    the latest this process has seen of it (an incident that changed only before a restart is not known)."""

    def __init__(self, nc: NatsClient, scope: str, parent: str, threshold: Severity | None):
        self.scope = scope
        self.parent = parent
        self.threshold = threshold
        self.escalated = 0
        self.followers: list[Follower] = []
        self._kv: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._latest: dict[str, dict[str, Any]] = {}  # this hub's open incidents, by id
        self.nc = nc

    @classmethod
    def from_config(cls, config: HubConfig, nc: NatsClient) -> UpwardEscalation | None:
        """The hub's upward escalation (None for a hub with no parent)."""
        tier = config.tier
        return cls(nc, tier.scope, tier.parent.scope, tier.escalate_severity) if tier.parent is not None else None

    async def start(self) -> None:
        js = self.nc.jetstream(timeout=10.0)
        self._kv = await js.create_key_value(bucket=BUCKET, history=1)
        links = f"{topology.PREFIX}.links.{topology.token(self.parent)}.{topology.token(self.scope)}.*"
        self.followers = [
            Follower(
                self.nc,
                topology.INCIDENTS_STREAM,
                f"{topology.PREFIX}.incidents.>",
                Start(seq=await next_sequence(self.nc, topology.INCIDENTS_STREAM)),
                name="escalation-up",
                durable=CONSUMER,
                batch=100,
            ),
            Follower(
                self.nc,
                topology.LINKS_STREAM,
                links,
                Start(seq=await next_sequence(self.nc, topology.LINKS_STREAM)),
                name="escalation-up-links",
                durable=LINKS_CONSUMER,
                batch=100,
            ),
        ]
        self._tasks = [
            asyncio.create_task(self._follow(follower, observe), name=f"cityhub.{follower.name}")
            for follower, observe in zip(self.followers, (self._observe, self._observe_link), strict=True)
        ]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    async def use_connection(self, nc: NatsClient) -> None:
        await self.stop()
        self.nc = nc
        await self.start()

    def health(self) -> dict[str, Any]:
        return {
            "parent": self.parent,
            "escalated": self.escalated,
            "consumers": [follower.health() for follower in self.followers],
        }

    async def escalate(self, incident: dict[str, Any], cause: EscalationCause) -> bool:
        """Send ``incident`` (its latest data) up for ``cause``; False when it went up before. Published first
        and remembered after: a crash between the two publishes again on the next try, with the same id."""
        assert self._kv is not None
        key = _key(incident["id"])
        if await has_key(self._kv, key):
            return False
        now = datetime.now(UTC)
        data = {**incident, "escalated_to": self.parent, "escalation_cause": cause.value, "updated_at": now.isoformat()}
        output = incident_output(
            data,
            incident["id"],
            incident["category"],
            incident["severity"],
            district_of(incident),
            IncidentChange.ESCALATED,
            f"{incident['id']}:up",
            now,
        )
        await self.nc.jetstream(timeout=10.0).publish(output.subject, output.data, headers=output.all_headers())
        with contextlib.suppress(KeyWrongLastSequenceError):  # remembered by a concurrent request already
            await self._kv.create(key, cause.value.encode())
        self.escalated += 1
        log.warning("incident %s escalated to %s (%s)", incident["id"], self.parent, cause.value)
        return True

    @staticmethod
    async def _follow(follower: Follower, observe: Callable[[Delivered], Awaitable[None]]) -> None:
        async for message in follower.messages():
            await retry(
                functools.partial(observe, message), retry_on=NATS_TROUBLE, backoff=Backoff(initial_s=0.2, max_s=5.0)
            )

    async def _observe(self, message: Delivered) -> None:
        if from_below(message.msg.headers):  # a lower tier's incident: that tier escalates it
            return
        incident = wire.decode(message.data)["data"]
        change = message.subject.rsplit(".", 1)[-1]
        self._remember(change, incident)
        cause = cause_of(change, incident, self.threshold)
        if cause is not None:
            await self.escalate(incident, cause)

    def _remember(self, change: str, incident: dict[str, Any]) -> None:
        if change in (IncidentChange.OPENED, IncidentChange.MERGED):
            self._latest[incident["id"]] = incident
        elif change == IncidentChange.CLOSED:
            self._latest.pop(incident["id"], None)

    async def _observe_link(self, message: Delivered) -> None:
        link = wire.decode(message.data)["data"]
        for linked in link["incidents"]:
            if linked["scope"] != self.scope:
                continue
            incident = self._latest.get(linked["id"])
            if incident is None:
                log.warning(
                    "cross-scope incident %s links %s, which this hub does not know (changed only before a "
                    "restart, or closed): not escalated for it",
                    link["id"],
                    linked["id"],
                )
                continue
            await self.escalate(incident, EscalationCause.CROSS_SCOPE)
