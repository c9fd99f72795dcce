"""A hub's leafnode link up to its parent, taken down and brought back by the child's own nats-server: the
remote of its generated config marked ``"disabled": true`` (nats-server >= 2.12) and the config reloaded
(SIGHUP). The server closes the link and does not try again until the remote is enabled and reloaded; both
servers, their clients and their JetStream keep running meanwhile."""

from __future__ import annotations

import json
import signal

import nats

from hub.federation.local import LocalTiers

_REMOTES = "  remotes: [ "


class LeafnodeLink:
    """The link of the hub ``child`` of ``tiers`` to its parent's server."""

    def __init__(self, tiers: LocalTiers, child: str):
        self.tiers = tiers
        self.child = child
        self.parent = tiers.deployment.parent_of(tiers.scope(child)).scope.code

    def cut(self) -> None:
        self._set_disabled(True)

    def restore(self) -> None:
        self._set_disabled(False)

    def _set_disabled(self, disabled: bool) -> None:
        server = self.tiers.servers[self.child]
        lines = server.config_file.read_text().splitlines()
        at = next(index for index, line in enumerate(lines) if line.startswith(_REMOTES))
        remote = json.loads(lines[at].removeprefix(_REMOTES).removesuffix(" ]"))
        lines[at] = f"{_REMOTES}{json.dumps(remote | {'disabled': disabled})} ]"
        server.config_file.write_text("\n".join(lines) + "\n")
        server.process.send_signal(signal.SIGHUP)

    async def is_up(self) -> bool:
        return await self._reaches_child() is True

    async def is_cut(self) -> bool:
        return await self._reaches_child() is False

    async def _reaches_child(self) -> bool | None:
        """Whether the parent's server reaches the child's JetStream: True when it answers, False when nothing
        there listens (no link), None when the answer is late (a loaded machine: neither is known)."""
        client = await self.tiers.connect_hub(self.parent)
        try:
            await client.request(f"$JS.{self.tiers.scope(self.child).domain}.API.INFO", b"", timeout=2)
            return True
        except nats.errors.NoRespondersError:
            return False
        except nats.errors.TimeoutError:
            return None
        finally:
            await client.close()
