"""Cross-scope incidents. Reports of one incident on both sides of a district (or street) border open one
incident on each side, each at its own hub. The lowest hub whose scope holds both sides sees both (its
incidents stream sources its children's) and merges the incidents its children open with the same merge
policy the pipeline uses (:class:`hub.incidents.IncidentMerger`): incidents of different children that
merge are one real incident. It publishes the link — a :class:`hub.models.CrossScopeIncident` — on its
links stream, once per side (``cityhub.links.<maker>.<side>.<category>``), and each side's hub sources its
own, so both sides see it. A link grows when a third side's incident joins.

On start the linker re-reads the incidents opened within the longest merge window, so it links across its
own restart; each publication has a ``Nats-Msg-Id`` of its link, size and side, and a KV bucket remembers
what was published, so re-reading never publishes a link twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hub import topology, wire
from hub.backoff import Backoff, retry
from hub.config import HubConfig
from hub.federation.sourcing import from_below
from hub.incidents import IncidentMerger, MergePolicy
from hub.models import CrossScopeIncident, LinkedIncident
from hub.nats.fetcher import Delivered
from hub.nats.follower import NATS_TROUBLE, Follower, Start
from hub.nats.streams import has_key
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.linking")

BUCKET = "CITYHUB_LINKS_PUBLISHED"


def side_of(incident: dict[str, Any], children_level: str) -> str | None:
    """The child scope holding an incident: its district at the city, its street at a district."""
    return next((cell["id"] for cell in incident.get("grid_path") or [] if cell.get("level") == children_level), None)


class CrossScopeLinker:
    """Links the incidents this hub's children open (see the module docstring)."""

    def __init__(self, nc: NatsClient, scope: str, children_level: str, policy: MergePolicy, replay: timedelta):
        self.nc = nc
        self.scope = scope
        self.children_level = children_level
        self.policy = policy
        self.replay = replay
        self.linked = 0
        self.follower: Follower | None = None
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self._merger = IncidentMerger(policy)
        self._watermark = float("-inf")
        self._members: dict[str, list[LinkedIncident]] = defaultdict(list)  # by the merger's incident
        self._seen: set[str] = set()

    @classmethod
    def from_config(cls, config: HubConfig, nc: NatsClient) -> CrossScopeLinker | None:
        """The linker of a hub with children (None otherwise)."""
        tier = config.tier
        if not tier.children:
            return None
        level = "district" if tier.scope == "city" else "street"
        longest = max([config.merge.window, *(rule.window for rule in config.merge.per_category.values())])
        return cls(nc, tier.scope, level, config.merge.policy(), longest)

    async def start(self) -> None:
        self._kv = await self.nc.jetstream(timeout=10.0).create_key_value(bucket=BUCKET, history=1)
        since = datetime.now(UTC) - self.replay
        self.follower = Follower(
            self.nc,
            topology.INCIDENTS_STREAM,
            f"{topology.PREFIX}.incidents.*.*.opened",
            Start(time=since),
            name="linking",
        )
        self._task = asyncio.create_task(self._follow(), name="cityhub.linking")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def use_connection(self, nc: NatsClient) -> None:
        await self.stop()
        self.nc = nc
        self._merger, self._watermark = IncidentMerger(self.policy), float("-inf")
        self._members, self._seen = defaultdict(list), set()
        await self.start()

    def health(self) -> dict[str, Any]:
        return {"linked": self.linked, "consumer": self.follower.health() if self.follower else None}

    async def _follow(self) -> None:
        assert self.follower is not None
        async for message in self.follower.messages():
            await retry(
                functools.partial(self._observe, message),
                retry_on=NATS_TROUBLE,
                backoff=Backoff(initial_s=0.2, max_s=5.0),
            )

    async def _observe(self, message: Delivered) -> None:
        if not from_below(message.msg.headers):
            return
        incident = wire.decode(message.data)["data"]
        side = side_of(incident, self.children_level)
        if side is None or incident["id"] in self._seen:
            return
        self._seen.add(incident["id"])
        group = self._merge(incident)
        members = self._members[group]
        members.append(LinkedIncident(id=incident["id"], scope=side))
        if len({member.scope for member in members}) > 1:
            await self._publish(
                CrossScopeIncident(
                    id=f"xs-{members[0].id}",
                    category=incident["category"],
                    linked_by=self.scope,
                    incidents=list(members),
                    updated_at=datetime.now(UTC),
                )
            )

    def _merge(self, incident: dict[str, Any]) -> str:
        """The merger's incident for a child's incident: the same for incidents that are one real incident."""
        location = incident.get("location") or {}
        merge = self._merger.add_columns_expiring(
            [incident["id"]],
            [datetime.fromisoformat(incident["opened_at"]).timestamp()],
            [incident["category"]],
            [location.get("lon")],
            [location.get("lat")],
            [incident.get("address")],
            [None],
            self._watermark,
        )
        self._watermark = merge.watermark
        for _, closed_id, _ in zip(*merge.closed, strict=True):
            for member in self._members.pop(closed_id, []):
                self._seen.discard(member.id)
        return merge.merge.incident_ids[0]

    async def _publish(self, link: CrossScopeIncident) -> None:
        assert self._kv is not None
        js = self.nc.jetstream(timeout=10.0)
        for side in dict.fromkeys(member.scope for member in link.incidents):
            msg_id = f"{link.id}:{len(link.incidents)}:{side}"
            key = msg_id.replace("~", "_").replace(":", ".")
            if await has_key(self._kv, key):  # before a restart: the re-read after it links it again
                continue
            subject = topology.link_subject(self.scope, side, link.category)
            raw = wire.encode(
                type_=wire.TYPE_LINK,
                id_=msg_id,
                source=f"/cityhub/{self.scope}",
                time=link.updated_at,
                data=link,
                subject=subject,
                extensions={"category": link.category, "incidentid": link.id},
            )
            await js.publish(subject, raw, headers={topology.HEADER_MSG_ID: msg_id})
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self._kv.create(key, b"")
        self.linked += 1
        log.info("cross-scope incident %s links %s", link.id, ", ".join(f"{m.id} ({m.scope})" for m in link.incidents))
