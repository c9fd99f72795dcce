"""HTTP plumbing shared by the webhook connectors: an embedded uvicorn server that the hub, not uvicorn, owns
(no signal handlers, stops on task cancellation), signed webhook intake, and signed POSTs outward."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import httpx
import uvicorn
from fastapi import FastAPI, Request

from hub import signing
from hub.connector import ConnectorContext


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The hub process owns SIGINT/SIGTERM; the server stops when its task is cancelled.
        yield


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves so a port in use is an ``OSError`` here, not uvicorn's exit."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until the calling task is cancelled, then shut down cleanly."""
    sock = listen_socket(host, port)
    server = _EmbeddedServer(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        sock.close()


class WebhookRejected(Exception):
    """A webhook request refused before it became an event: HTTP status for the sender, reason for the DLQ."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def signed_body(request: Request, *, secret: str, tolerance_s: float, max_bytes: int) -> bytes:
    """The request body once its size and HMAC signature are checked; :class:`WebhookRejected` otherwise."""
    body = await request.body()
    if len(body) > max_bytes:
        raise WebhookRejected(413, f"body of {len(body)} bytes exceeds the limit of {max_bytes}")
    try:
        signing.verify(
            secret,
            request.headers.get(signing.TIMESTAMP_HEADER),
            request.headers.get(signing.SIGNATURE_HEADER),
            body,
            tolerance_s=tolerance_s,
        )
    except signing.SignatureError as error:
        raise WebhookRejected(401, f"bad signature: {error}") from None
    return body


async def dead_letter(ctx: ConnectorContext, body: bytes, rejection: WebhookRejected, max_bytes: int) -> dict[str, str]:
    """Put a refused request on the DLQ (oversized bodies cut to ``max_bytes``) and return the sender's error body."""
    await ctx.reject(body[:max_bytes], rejection.reason)
    return {"error": rejection.reason}


async def post_signed(client: httpx.AsyncClient, url: str, body: bytes, secret: str) -> httpx.Response:
    """POST JSON ``body`` with the signing headers."""
    headers = {"content-type": "application/json", **signing.signed_headers(secret, body)}
    return await client.post(url, content=body, headers=headers)
