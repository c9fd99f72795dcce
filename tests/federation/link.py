"""A leafnode link the test can cut and restore: a TCP forwarder between a child's nats-server and its parent's
leafnode listener (the servers themselves keep running)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from hub.nats.embedded import free_port


class CuttableLink:
    def __init__(self, target_port: int):
        self.port = free_port()
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._up = False

    @staticmethod
    def route(config: Path, parent_leafnode_port: int, link_port: int) -> None:
        """Point the leafnode remote of a generated server config at ``link_port`` instead of the parent."""
        text = config.read_text()
        config.write_text(text.replace(f"nats-leaf://127.0.0.1:{parent_leafnode_port}", f"nats-leaf://127.0.0.1:{link_port}"))

    async def restore(self) -> None:
        self._up = True
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop accepting and drop every connection, as a broken line would."""
        assert self._server is not None
        self._up = False
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if not self._up:  # cut while this connection was being made
            writer.transport.abort()
            upstream_writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            self._writers -= {writer, upstream_writer}

    @property
    def is_cut(self) -> bool:
        """No connection passes: none is open and none is accepted."""
        return not self._up and not self._writers


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
