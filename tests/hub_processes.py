"""``cityhub run`` processes for failover tests: started with the same config, each with its own admin port
(``--admin-port``) and its own NATS client name (the environment variable ``HUB_NAME``, which the test
config reads as ``[nats] name = "${HUB_NAME}"``), read through their admin API."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from hub.nats.embedded import free_port

REPO = Path(__file__).resolve().parents[1]


def with_client_name(toml: str) -> str:
    """A test config whose NATS client name comes from ``HUB_NAME`` (process-local, like the admin port)."""
    return toml.replace("[nats]\n", '[nats]\nname = "${HUB_NAME:-cityhub}"\n', 1)


class HubProcess:
    """One ``cityhub run`` child process."""

    def __init__(self, config: Path, name: str):
        self.config = config
        self.name = name
        self.admin_port = free_port()
        self.log = config.with_name(f"{name}.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> HubProcess:
        code = (
            "import sys; from hub.cli import main; "
            f"sys.exit(main(['run', '-c', {str(self.config)!r}, '--admin-port', '{self.admin_port}']))"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),
            env={**os.environ, "HUB_NAME": self.name},
        )
        return self

    async def health(self) -> dict[str, Any] | None:
        """The runtime part of ``/health``; None while the admin API does not answer."""
        try:
            async with httpx.AsyncClient(base_url=self.admin_url, timeout=2.0) as client:
                return (await client.get("/health")).json()["runtime"]
        except httpx.HTTPError:
            return None

    async def role(self) -> str | None:
        health = await self.health()
        return health["availability"]["role"] if health else None

    async def wait_for_role(self, role: str, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while await self.role() != role:
                assert self.alive, f"{self.name} exited with {self.process and self.process.returncode}; see {self.log}"
                await asyncio.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGCONT (in case it is paused) and SIGTERM; SIGKILL if it does not end."""
        if not self.alive:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


async def active_of(hubs: list[HubProcess]) -> HubProcess:
    """The hub that is active now (waits until one is)."""
    while True:
        for hub in hubs:
            if hub.alive and await hub.role() == "active":
                return hub
        await asyncio.sleep(0.05)
