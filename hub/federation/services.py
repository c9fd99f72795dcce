"""What a hub among tiers runs beside its pipeline: escalation up (a hub with a parent) and the cross-scope
linker (a hub with children), started, moved to a new connection and stopped together."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NatsClient

from hub.config import HubConfig
from hub.errors import HubError
from hub.federation.escalating_up import UpwardEscalation
from hub.federation.linking import CrossScopeLinker
from hub.models import EscalationCause


class TierServices:
    def __init__(self, config: HubConfig, nc: NatsClient):
        self.escalating_up = UpwardEscalation.from_config(config, nc)
        self.linker = CrossScopeLinker.from_config(config, nc)

    def _running(self) -> list[UpwardEscalation | CrossScopeLinker]:
        return [service for service in (self.escalating_up, self.linker) if service is not None]

    async def start(self) -> None:
        for service in self._running():
            await service.start()

    async def stop(self) -> None:
        for service in self._running():
            await service.stop()

    async def use_connection(self, nc: NatsClient) -> None:
        for service in self._running():
            await service.use_connection(nc)

    def health(self) -> dict[str, Any]:
        return {
            "escalation_up": self.escalating_up.health() if self.escalating_up else None,
            "linking": self.linker.health() if self.linker else None,
        }

    async def escalate(self, incident: dict[str, Any] | None, incident_id: str) -> bool:
        """Escalate ``incident`` (what the dashboard knows of ``incident_id``) up at an operator's request."""
        if self.escalating_up is None:
            raise HubError(f"cannot escalate {incident_id}: this hub has no parent hub ([tier.parent])")
        if incident is None:
            raise HubError(f"cannot escalate {incident_id}: no such incident here")
        return await self.escalating_up.escalate(incident, EscalationCause.OPERATOR)
