"""The nats-server configuration of every hub of a deployment, generated from the grid hierarchy
(``cityhub nats-config``): one JetStream domain per hub, the leafnode link of each hub to the one a tier up,
and users whose permissions (:mod:`hub.federation.permissions`) keep each scope's credentials to its own. A
hub's server may be a cluster (three nodes or more: the city's, in production), and may listen for MQTT (the
devices of a district or street: IoT sensors, recycling stations) with a password user of its own.

Credentials are NKeys: the servers' configs hold public keys only, except the seed of each hub's own leafnode
link and the passwords of MQTT devices and cluster routes (so a hub's config file is written readable by its
owner alone). Seeds and passwords already in the output folder are kept, so generating again after adding a hub
leaves every issued credentials file valid.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nkeys

from hub.connector_kit.mqtt import outside_the_unified_namespace
from hub.errors import ConfigError
from hub.federation.permissions import Permissions, link_permissions, viewer_name, viewer_permissions
from hub.federation.scope import GridHierarchy, Scope, parent_code

ACCOUNT = "CITYHUB"


MIN_CLUSTER = 3  # a JetStream cluster keeps its quorum with one node down only from three nodes on


@dataclass(frozen=True)
class Placement:
    """Where one nats-server of a hub listens: clients on ``port``, the children's leafnode links on
    ``leafnode_port``, and, as a node of a cluster, the other nodes' routes on ``cluster_port``."""

    scope: Scope
    host: str
    port: int
    leafnode_port: int
    cluster_port: int | None = None

    @classmethod
    def parse(cls, text: str, hierarchy: GridHierarchy) -> Placement:
        """``SCOPE=HOST:PORT:LEAFNODE_PORT[:CLUSTER_PORT]``, e.g. ``510104=10.1.0.5:4222:7422``."""
        try:
            code, address = text.split("=", 1)
            host, *ports = address.split(":")
            if len(ports) not in (2, 3):
                raise ValueError(f"{len(ports)} ports")
            return cls(hierarchy.scope(code), host, *(int(port) for port in ports))
        except ValueError as exc:
            raise ConfigError(
                f"--hub {text!r}: {exc} (write SCOPE=HOST:PORT:LEAFNODE_PORT[:CLUSTER_PORT], "
                "e.g. 510104=10.1.0.5:4222:7422)"
            ) from None


@dataclass(frozen=True)
class MqttListener:
    """A hub's MQTT listener on ``port`` of each of its nodes, for devices that publish under ``topics``
    (MQTT topic prefixes: a/b is the NATS subject a.b)."""

    port: int
    topics: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> tuple[str, MqttListener]:
        """``SCOPE=PORT:TOPIC[,TOPIC...]``, e.g. ``510104=1883:cityhub/raw/iot,recycling``."""
        try:
            code, listener = text.split("=", 1)
            port, topics = listener.split(":", 1)
            prefixes = tuple(topic.strip("/") for topic in topics.split(","))
            for prefix in prefixes:
                if not prefix or any(wildcard in prefix for wildcard in "+#"):
                    raise ValueError(f"topic prefix {prefix!r}: a topic without wildcards")
                outside_the_unified_namespace(prefix)
            return code, cls(int(port), prefixes)
        except ValueError as exc:
            raise ConfigError(
                f"--mqtt {text!r}: {exc} (write SCOPE=PORT:TOPIC[,TOPIC...], "
                "e.g. 510104=1883:cityhub/raw/iot,recycling)"
            ) from None

    def subjects(self) -> list[str]:
        """The NATS subjects of the topics: each prefix and everything under it (an MQTT ``prefix/#`` is
        both ``prefix`` and ``prefix.>`` in NATS)."""
        return [
            subject for prefix in self.topics for subject in (prefix.replace("/", "."), f"{prefix.replace('/', '.')}.>")
        ]


class Deployment:
    """The hubs of one city, each linked to the deployed hub one tier up. A scope placed more than once is a
    cluster of those nodes; ``mqtt`` gives the hubs whose servers listen for MQTT devices."""

    def __init__(
        self, placements: Iterable[Placement], hierarchy: GridHierarchy, mqtt: dict[str, MqttListener] | None = None
    ):
        self.nodes: dict[str, list[Placement]] = {}
        for placement in placements:
            self.nodes.setdefault(placement.scope.code, []).append(placement)
        self.placements = {code: nodes[0] for code, nodes in self.nodes.items()}  # where its clients connect first
        self.hierarchy = hierarchy
        self.mqtt = mqtt or {}
        for code, nodes in self.nodes.items():
            self._check_parent(nodes[0].scope)
            self._check_cluster(code, nodes)
        for code in self.mqtt:
            if code not in self.nodes:
                raise ConfigError(f"--mqtt {code}: no hub of that scope (add --hub {code}=HOST:PORT:LEAFNODE_PORT)")

    def _check_parent(self, scope: Scope) -> None:
        code = parent_code(scope)
        if scope.level == "street" and code not in self.placements:
            raise ConfigError(
                f"street {scope.code} has a hub but its district {code} has none: a street hub links "
                f"to its district's (add --hub {code}=HOST:PORT:LEAFNODE_PORT)"
            )

    @staticmethod
    def _check_cluster(code: str, nodes: list[Placement]) -> None:
        if len(nodes) == 1:
            return
        if len(nodes) < MIN_CLUSTER:
            raise ConfigError(
                f"{code} is placed on {len(nodes)} nodes: a JetStream cluster needs {MIN_CLUSTER} or more "
                "to keep a quorum with one node down (or place it once)"
            )
        if any(node.cluster_port is None for node in nodes):
            raise ConfigError(
                f"{code} is a cluster: give every node its cluster port (SCOPE=HOST:PORT:LEAFNODE_PORT:CLUSTER_PORT)"
            )

    def clustered(self, code: str) -> bool:
        return len(self.nodes[code]) > 1

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

    def password(self, user: str) -> str:
        """The password of a user that cannot sign with an NKey (MQTT devices, cluster routes), in
        ``<user>.password``."""
        path = self.folder / f"{user}.password"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_private(path, secrets.token_urlsafe(24).encode())
        return path.read_text().strip()


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def hub_user(scope: Scope) -> str:
    """The user of a hub process and its connectors: anything on its own server, nothing on the others."""
    return f"hub-{scope.code}"


def link_user(scope: Scope) -> str:
    return f"link-{scope.code}"


def devices_user(scope: Scope) -> str:
    """The MQTT devices of a hub's scope, and its MQTT connectors (``broker_url = "mqtt://devices-<scope>:…"``)."""
    return f"devices-{scope.code}"


def route_user(scope: Scope) -> str:
    return f"route-{scope.code}"


def _user(keys: Keys, name: str, what: str, permissions: Permissions | None = None) -> list[str]:
    fields = {"nkey": keys.public_key(name)} | ({"permissions": permissions} if permissions else {})
    return [f"  # {name}: {what}", f"  {json.dumps(fields, ensure_ascii=False)},"]  # the config format reads JSON


def _devices(keys: Keys, scope: Scope, mqtt: MqttListener) -> list[str]:
    """The MQTT devices' user: a password (MQTT has no NKey signing), MQTT connections only, its topics only."""
    subjects = mqtt.subjects()
    fields = {
        "user": devices_user(scope),
        "password": keys.password(devices_user(scope)),
        "allowed_connection_types": ["MQTT"],
        "permissions": {"publish": {"allow": subjects}, "subscribe": {"allow": subjects}},
    }
    return [
        f"  # {devices_user(scope)}: the {scope.level} {scope.code}'s MQTT devices and its MQTT connectors",
        f"  {json.dumps(fields, ensure_ascii=False)},",
    ]


def server_config(deployment: Deployment, placement: Placement, keys: Keys, store_dir: Path, node: int = 0) -> str:
    """The nats-server config of one hub (of its ``node``-th server, in a cluster): its JetStream domain, its
    users, its leafnode listener and link, its cluster routes and MQTT listener where it has them."""
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
    mqtt = deployment.mqtt.get(scope.code)
    if mqtt is not None:
        users += _devices(keys, scope, mqtt)
    clustered = deployment.clustered(scope.code)
    lines = [
        f"# nats-server config of the {scope.level} hub {scope.code}"
        + (f", node {node + 1} of its cluster" if clustered else "")
        + ", written by `cityhub nats-config`",
        f'server_name: "cityhub-{scope.code}' + (f'-{node + 1}"' if clustered else '"'),
        f'listen: "{placement.host}:{placement.port}"',
        f'jetstream {{ store_dir: {json.dumps(str(store_dir))}, domain: "{scope.domain}" }}',
        f"accounts {{ {ACCOUNT} {{ jetstream: enabled, users: [",
        *users,
        "] } }",
        *(_cluster(deployment, placement, keys) if clustered else []),
        *([f'mqtt {{ listen: "{placement.host}:{mqtt.port}" }}'] if mqtt is not None else []),
        *_leafnodes(deployment, placement, keys),
    ]
    return "\n".join(lines) + "\n"


def _cluster(deployment: Deployment, placement: Placement, keys: Keys) -> list[str]:
    """The routes between the nodes of a hub's cluster, authenticated by a password of the cluster's own."""
    scope = placement.scope
    user, password = route_user(scope), keys.password(route_user(scope))
    routes = [
        f"nats-route://{user}:{password}@{node.host}:{node.cluster_port}"
        for node in deployment.nodes[scope.code]
        if node != placement
    ]
    block = {
        "name": f"cityhub-{scope.code}",
        "listen": f"{placement.host}:{placement.cluster_port}",
        "authorization": {"user": user, "password": password},
        "routes": routes,
    }
    return [f"cluster: {json.dumps(block)}"]


def _leafnodes(deployment: Deployment, placement: Placement, keys: Keys) -> list[str]:
    parts = [f'listen: "{placement.host}:{placement.leafnode_port}"']
    parent = deployment.parent_of(placement.scope)
    if parent is not None:
        seed = keys.seed(link_user(placement.scope)).decode()
        urls = [f"nats-leaf://{node.host}:{node.leafnode_port}" for node in deployment.nodes[parent.scope.code]]
        remote = {"urls": urls, "account": ACCOUNT, "nkey": seed}
        parts.append(f"remotes: [ {json.dumps(remote)} ]")
    return ["leafnodes {", *(f"  {part}" for part in parts), "}"]


def node_config_name(nodes: int, index: int) -> str:
    return f"nats-server-{index + 1}.conf" if nodes > 1 else "nats-server.conf"


def node_store(store_root: Path, code: str, nodes: int, index: int) -> Path:
    """A server's JetStream store: ``<store_root>/<scope>``, ``<store_root>/<scope>-<n>`` for the nodes of a
    cluster (so they can share a machine)."""
    return store_root / (f"{code}-{index + 1}" if nodes > 1 else code)


def write_deployment(deployment: Deployment, out: Path, store_root: Path) -> list[Path]:
    """Write ``<out>/<scope>/nats-server.conf`` for every hub (``nats-server-<n>.conf`` for the nodes of a
    cluster) and ``<out>/creds/<user>.nk`` (or ``.password``) for every user."""
    keys = Keys(out / "creds")
    written = []
    for code, nodes in deployment.nodes.items():
        folder = out / code
        folder.mkdir(parents=True, exist_ok=True)
        for index, placement in enumerate(nodes):
            path = folder / node_config_name(len(nodes), index)
            _write_private(
                path,
                server_config(
                    deployment, placement, keys, node_store(store_root, code, len(nodes), index), index
                ).encode(),
            )
            written.append(path)
    return written
