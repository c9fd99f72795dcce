"""The nats-server configuration of every hub of a deployment, generated from the grid hierarchy
(``cityhub nats-config``): one JetStream domain per hub, the leafnode link of each hub to the one a tier up,
and users whose permissions (:mod:`hub.federation.permissions`) keep each scope's credentials to its own.

Credentials are NKeys: the servers' configs hold public keys only, except the seed of each hub's own leafnode
link (so a hub's config file is written readable by its owner alone). Seeds already in the output folder are
kept, so generating again after adding a hub leaves every issued credentials file valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nkeys

from hub.errors import ConfigError
from hub.federation.permissions import Permissions, link_permissions, viewer_name, viewer_permissions
from hub.federation.scope import GridHierarchy, Scope, parent_code

ACCOUNT = "CITYHUB"


@dataclass(frozen=True)
class Placement:
    """Where one hub's nats-server listens: clients on ``port``, the children's leafnode links on ``leafnode_port``."""

    scope: Scope
    host: str
    port: int
    leafnode_port: int

    @classmethod
    def parse(cls, text: str, hierarchy: GridHierarchy) -> Placement:
        """``SCOPE=HOST:PORT:LEAFNODE_PORT``, e.g. ``510104=10.1.0.5:4222:7422``."""
        try:
            code, address = text.split("=", 1)
            host, port, leafnode_port = address.rsplit(":", 2)
            return cls(hierarchy.scope(code), host, int(port), int(leafnode_port))
        except ValueError as exc:
            raise ConfigError(
                f"--hub {text!r}: {exc} (write SCOPE=HOST:PORT:LEAFNODE_PORT, e.g. 510104=10.1.0.5:4222:7422)"
            ) from None


class Deployment:
    """The hubs of one city, each linked to the deployed hub one tier up."""

    def __init__(self, placements: Iterable[Placement], hierarchy: GridHierarchy):
        self.placements = {placement.scope.code: placement for placement in placements}
        self.hierarchy = hierarchy
        for placement in self.placements.values():
            self._check_parent(placement.scope)

    def _check_parent(self, scope: Scope) -> None:
        code = parent_code(scope)
        if scope.level == "street" and code not in self.placements:
            raise ConfigError(
                f"street {scope.code} has a hub but its district {code} has none: a street hub links "
                f"to its district's (add --hub {code}=HOST:PORT:LEAFNODE_PORT)"
            )

    def parent_of(self, scope: Scope) -> Placement | None:
        code = parent_code(scope)
        return self.placements.get(code) if code else None

    def children_of(self, scope: Scope) -> list[Placement]:
        return [
            placement
            for placement in self.placements.values()
            if (parent := self.parent_of(placement.scope)) is not None and parent.scope == scope
        ]

    def viewers_of(self, scope: Scope) -> list[Scope]:
        """Every scope whose viewer may use ``scope``'s server: itself and every district and street inside it."""
        inside = [
            self.hierarchy.scope(code) for level in ("district", "street") for code in self.hierarchy.codes_on(level)
        ]
        return [scope, *(other for other in inside if other != scope and _within(other, scope))]


def _within(inner: Scope, outer: Scope) -> bool:
    return outer.level == "city" or (outer.level == "district" and inner.district == outer.code)


class Keys:
    """The NKey seed of every user, kept in ``folder`` (one ``<user>.nk`` file each) and reused when present."""

    def __init__(self, folder: Path):
        self.folder = folder

    def seed(self, user: str) -> bytes:
        path = self.folder / f"{user}.nk"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_private(path, nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
        return path.read_bytes().strip()

    def public_key(self, user: str) -> str:
        return nkeys.from_seed(bytearray(self.seed(user))).public_key.decode()

    def path(self, user: str) -> Path:
        self.seed(user)
        return self.folder / f"{user}.nk"


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def hub_user(scope: Scope) -> str:
    """The user of a hub process and its connectors: anything on its own server, nothing on the others."""
    return f"hub-{scope.code}"


def link_user(scope: Scope) -> str:
    return f"link-{scope.code}"


def _user(keys: Keys, name: str, what: str, permissions: Permissions | None = None) -> list[str]:
    fields = {"nkey": keys.public_key(name)} | ({"permissions": permissions} if permissions else {})
    return [f"  # {name}: {what}", f"  {json.dumps(fields, ensure_ascii=False)},"]  # the config format reads JSON


def server_config(deployment: Deployment, placement: Placement, keys: Keys, store_dir: Path) -> str:
    """The nats-server config of one hub: its JetStream domain, its users, its leafnode listener and link."""
    scope = placement.scope
    users = _user(keys, hub_user(scope), "this hub and its connectors, anything on this server")
    for viewer in deployment.viewers_of(scope):
        users += _user(
            keys,
            viewer_name(viewer),
            f"the {viewer.level} centre {viewer.code}'s screens and systems",
            viewer_permissions(viewer, scope),
        )
    for child in deployment.children_of(scope):
        users += _user(
            keys,
            link_user(child.scope),
            f"the leafnode link of the {child.scope.level} hub {child.scope.code}",
            link_permissions(child.scope, scope),
        )
    lines = [
        f"# nats-server config of the {scope.level} hub {scope.code}, written by `cityhub nats-config`",
        f'server_name: "cityhub-{scope.code}"',
        f'listen: "{placement.host}:{placement.port}"',
        f'jetstream {{ store_dir: {json.dumps(str(store_dir))}, domain: "{scope.domain}" }}',
        f"accounts {{ {ACCOUNT} {{ jetstream: enabled, users: [",
        *users,
        "] } }",
        *_leafnodes(deployment, placement, keys),
    ]
    return "\n".join(lines) + "\n"


def _leafnodes(deployment: Deployment, placement: Placement, keys: Keys) -> list[str]:
    parts = [f'listen: "{placement.host}:{placement.leafnode_port}"']
    parent = deployment.parent_of(placement.scope)
    if parent is not None:
        seed = keys.seed(link_user(placement.scope)).decode()
        remote = {"url": f"nats-leaf://{parent.host}:{parent.leafnode_port}", "account": ACCOUNT, "nkey": seed}
        parts.append(f"remotes: [ {json.dumps(remote)} ]")
    return ["leafnodes {", *(f"  {part}" for part in parts), "}"]


def write_deployment(deployment: Deployment, out: Path, store_root: Path) -> list[Path]:
    """Write ``<out>/<scope>/nats-server.conf`` for every hub and ``<out>/creds/<user>.nk`` for every user."""
    keys = Keys(out / "creds")
    written = []
    for code, placement in deployment.placements.items():
        folder = out / code
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "nats-server.conf"
        _write_private(path, server_config(deployment, placement, keys, store_root / code).encode())
        written.append(path)
    return written
