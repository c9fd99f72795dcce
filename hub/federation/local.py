"""A whole deployment on this machine: every hub's nats-server, from the configs ``cityhub nats-config``
generates, on free loopback ports (``cityhub demo --tiers`` and the tests run the tiers this way)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from hub.config import TierConfig, TierParent
from hub.federation.deployment import (
    Deployment,
    Keys,
    MqttListener,
    Placement,
    devices_user,
    hub_user,
    write_deployment,
)
from hub.federation.permissions import inbox_prefix, viewer_name
from hub.federation.scope import GridHierarchy, Scope
from hub.nats.embedded import EmbeddedNats, free_port


class LocalTiers:
    """The nats-servers of the hubs ``codes`` under ``root``: configs in ``root/config``, stores in ``root/store``;
    the hubs of ``mqtt`` listen for MQTT devices publishing under its topic prefixes, on a free port each."""

    def __init__(
        self, root: Path, hierarchy: GridHierarchy, codes: Iterable[str], mqtt: dict[str, tuple[str, ...]] | None = None
    ):
        self.root = root
        placements = [Placement(hierarchy.scope(code), "127.0.0.1", free_port(), free_port()) for code in codes]
        listeners = {code: MqttListener(free_port(), topics) for code, topics in (mqtt or {}).items()}
        self.deployment = Deployment(placements, hierarchy, listeners)
        self.keys = Keys(root / "config" / "creds")
        write_deployment(self.deployment, root / "config", root / "store")
        self.servers = {
            code: EmbeddedNats(
                store_dir=root / "store" / code,
                port=placement.port,
                config_file=root / "config" / code / "nats-server.conf",
            )
            for code, placement in self.deployment.placements.items()
        }

    def scope(self, code: str) -> Scope:
        return self.deployment.placements[code].scope

    def tier_config(self, code: str) -> TierConfig:
        """The ``[tier]`` of the hub ``code``: its parent and children in this deployment."""
        scope = self.scope(code)
        parent = self.deployment.parent_of(scope)
        return TierConfig(
            scope=code,
            parent=TierParent(scope=parent.scope.code) if parent else None,
            children=[child.scope.code for child in self.deployment.children_of(scope)],
        )

    def url(self, code: str) -> str:
        return self.servers[code].url

    def hub_credentials(self, code: str) -> Path:
        return self.keys.path(hub_user(self.scope(code)))

    def mqtt_url(self, code: str) -> str:
        """``mqtt://devices-<scope>:<password>@host:port`` of the hub's MQTT listener (a connector's broker_url)."""
        user = devices_user(self.scope(code))
        return f"mqtt://{user}:{self.keys.password(user)}@127.0.0.1:{self.deployment.mqtt[code].port}"

    def viewer_credentials(self, code: str) -> Path:
        return self.keys.path(viewer_name(self.deployment.hierarchy.scope(code)))

    def start(self) -> LocalTiers:
        for server in self.servers.values():
            server.launch()
        for server in self.servers.values():
            server.wait_listening()
        return self

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()

    async def connect_hub(self, code: str, **options: Any) -> Client:
        return await nats.connect(self.url(code), nkeys_seed=str(self.hub_credentials(code)), **options)

    async def connect_viewer(self, viewer: str, server: str, **options: Any) -> Client:
        """A client of ``server``'s nats-server with ``viewer``'s credentials and inbox prefix."""
        scope = self.deployment.hierarchy.scope(viewer)
        return await nats.connect(
            self.url(server),
            nkeys_seed=str(self.viewer_credentials(viewer)),
            inbox_prefix=inbox_prefix(scope),
            **options,
        )

    async def wait_linked(self, timeout: float = 60.0) -> None:
        """Until every hub's JetStream answers through its parent's server (the leafnode links are up)."""
        async with asyncio.timeout(timeout):
            for placement in self.deployment.placements.values():
                parent = self.deployment.parent_of(placement.scope)
                if parent is not None:
                    await self._wait_api(parent.scope.code, placement.scope.domain)

    async def _wait_api(self, via: str, domain: str) -> None:
        client = await self.connect_hub(via)
        try:
            while True:
                try:
                    await client.request(f"$JS.{domain}.API.INFO", b"", timeout=1)
                    return
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                    await asyncio.sleep(0.1)
        finally:
            await client.close()
