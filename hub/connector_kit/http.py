"""HTTP plumbing shared by the webhook connectors and their simulators: an embedded uvicorn server that the hub,
not uvicorn, owns (no signal handlers) — run as a task (:func:`serve`) or started and stopped (:class:`HttpServer`) —,
signed webhook intake with size limits and DLQ answers, and signed POSTs outward, once or retried with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Generator
from typing import Any, NoReturn

import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from hub import signing
from hub.backoff import BackoffSettings
from hub.connector import ConnectorContext
from hub.errors import DeliveryError, DeliveryRejected, HubError

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Answers that say "try again later" rather than "this item is wrong".
RETRYABLE_STATUS = frozenset({408, 425, 429})

log = logging.getLogger(__name__)


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


async def _client_gone(request: Request, _exc: Exception) -> JSONResponse:
    # A phone that lost its signal mid-upload, a sender shutting down: nothing arrived, so nothing is lost,
    # and the sender, having no answer, sends again. The answer below reaches no one.
    log.info("%s %s: the client went away before its request body was complete", request.method, request.url.path)
    return JSONResponse({"error": "request body incomplete"}, status_code=400)


def _embedded_server(app: FastAPI, tls: ssl.SSLContext | None = None) -> _EmbeddedServer:
    """The uvicorn server every embedded app runs on: quiet, no lifespan, and a client that disconnects
    mid-request logged rather than a traceback."""
    app.add_exception_handler(ClientDisconnect, _client_gone)
    return _EmbeddedServer(
        uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
        )
    )


async def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until the calling task is cancelled, then shut down cleanly; a client
    that disconnects mid-request is logged, not a traceback."""
    sock = listen_socket(host, port)
    server = _embedded_server(app)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        sock.close()


class HttpServer:
    """Serve a FastAPI app with :meth:`start` / :meth:`stop`, on a free port when ``port`` is 0 (its ``url`` is
    known after start), over TLS when given a server ``ssl.SSLContext``; like :func:`serve`, a client that
    disconnects mid-request is logged, not a traceback."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None):
        self.app = app
        self.host = host
        self.requested_port = port
        self.tls = tls
        self.port: int | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("HttpServer.url is known only after start()")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> HttpServer:
        """Bind (an ``OSError`` if the port is taken) and serve until :meth:`stop`; a restart keeps the port."""
        sock = listen_socket(self.host, self.port or self.requested_port)
        self.port = sock.getsockname()[1]
        self._server = _embedded_server(self.app, self.tls)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"http:{self.port}")
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = None
        self._task = None


# The DLQ kind (CityHub-Reason-Kind) of a refused request, by its HTTP status; any other refusal is "invalid".
KIND_OF_STATUS = {
    401: "unauthorized",
    403: "unauthorized",
    413: "oversized",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class WebhookRejected(HubError, ValueError):
    """A webhook request refused before it became an event: HTTP status for the sender, reason (in the
    sender's words) and kind for the DLQ; the kind follows the status unless given."""

    def __init__(self, status: int, reason: str, kind: str | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.kind = kind or KIND_OF_STATUS.get(status, "invalid")


def _refuse_declared_size(request: Request, max_bytes: int) -> None:
    """413 from the Content-Length header alone, before any byte of an oversized body is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise WebhookRejected(413, f"body of {declared} bytes exceeds the limit of {max_bytes}")


async def signed_body(request: Request, *, secret: str, tolerance_s: float, max_bytes: int) -> bytes:
    """The request body once its size and HMAC signature are checked; :class:`WebhookRejected` otherwise."""
    _refuse_declared_size(request, max_bytes)
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


async def read_body(request: Request, max_bytes: int) -> bytes:
    """An unsigned request body read in chunks, refused (413) as soon as it passes ``max_bytes``: for uploads
    (photos) where reading a too-large body whole would already be the damage."""
    _refuse_declared_size(request, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise WebhookRejected(413, f"body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def dead_letter(ctx: ConnectorContext, body: bytes, rejection: WebhookRejected, max_bytes: int) -> dict[str, str]:
    """Put a refused request on the DLQ (oversized bodies cut to ``max_bytes``) and return the sender's error body."""
    await ctx.reject(body[:max_bytes], rejection.reason, rejection.kind)
    return {"error": rejection.reason}


def oversize_summary(request: Request, read: int = 0) -> bytes:
    """What the DLQ keeps of a body refused for its size: a description, not the bytes that were the problem."""
    return orjson.dumps(
        {
            "summary": "body refused for its size and not kept",
            "content_type": request.headers.get("content-type"),
            "content_length": request.headers.get("content-length"),
            "bytes_read": read,
        }
    )


async def refuse(
    ctx: ConnectorContext, request: Request, rejection: WebhookRejected, max_bytes: int, body: bytes | None = None
) -> JSONResponse:
    """The 4xx answer to a refused request, after its DLQ entry is stored (``body``, by default the request's
    bytes, or a summary when it was refused for its size); 503 when even the DLQ is unreachable, so the sender
    keeps the request and retries — nothing is lost either way."""
    if body is None:
        body = oversize_summary(request) if rejection.status == 413 else await request.body()
    try:
        content = await dead_letter(ctx, body, rejection, max_bytes)
    except Exception as exc:  # NATS down: the sender must keep the request
        return unavailable(ctx, exc)
    return JSONResponse(content, status_code=rejection.status)


def unavailable(ctx: ConnectorContext, exc: BaseException) -> JSONResponse:
    """503 with Retry-After: the hub could not store the request, the sender should send it again."""
    ctx.count("unavailable")
    ctx.log.warning("could not store a request, answered 503: %s: %s", type(exc).__name__, exc)
    return JSONResponse(
        {"error": "hub temporarily unavailable, retry later"}, status_code=503, headers={"Retry-After": "5"}
    )


async def post_signed(
    client: httpx.AsyncClient, url: str, body: bytes, secret: str, *, extra_headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST JSON ``body`` with the signing headers."""
    headers = {"content-type": "application/json", **signing.signed_headers(secret, body), **(extra_headers or {})}
    return await client.post(url, content=body, headers=headers)


class ListenSettings(BaseModel):
    """Where an HTTP endpoint of a connector listens."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 to accept from other machines.")
    port: int = Field(0, ge=0, le=65535, description="TCP port; 0 picks a free one (tests).")

    def url(self, path: str) -> str:
        """The plain-HTTP address of ``path`` on this endpoint, as a local simulator reaches it."""
        return f"http://{self.host}:{self.port}{path}"


class RetrySettings(BackoffSettings):
    """Backoff plus how long to insist on one outbound item before handing it back to JetStream."""

    attempts: int = Field(
        4, ge=1, description="Attempts per outbound item before deliver() gives it back to JetStream for redelivery."
    )
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per request; a slower answer counts as a failure.")


async def post_signed_with_retry(
    client: httpx.AsyncClient, url: str, body: bytes, *, secret: str, idempotency_key: str, retry: RetrySettings
) -> httpx.Response:
    """:func:`post_signed` with an ``Idempotency-Key``, retrying transport errors, timeouts, 5xx and 408/425/429
    with backoff (each attempt signed afresh). Raises :class:`DeliveryRejected` on any other 4xx and
    :class:`DeliveryError` once ``retry.attempts`` are used up — from ``deliver`` that means JetStream redelivers."""
    backoff = retry.make()
    failure = "no attempt made"
    for attempt in range(1, retry.attempts + 1):
        try:
            response = await post_signed(client, url, body, secret, extra_headers={IDEMPOTENCY_HEADER: idempotency_key})
        except httpx.TransportError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        else:
            if response.is_success:
                return response
            if response.status_code < 500 and response.status_code not in RETRYABLE_STATUS:
                raise DeliveryRejected(f"{url} refused the item: HTTP {response.status_code} {response.text[:300]}")
            failure = f"HTTP {response.status_code}"
        if attempt < retry.attempts:
            await backoff.wait()
    raise DeliveryError(f"{url} not reached after {retry.attempts} attempts, last: {failure}")


async def send_demo_traffic(
    interval_s: float,
    sample: Callable[[], Any],
    send: Callable[[Any], Awaitable[httpx.Response]],
    resend: Callable[[httpx.Response], bool],
    log: logging.Logger,
) -> NoReturn:
    """A simulator's demo loop: every ``interval_s`` send one ``sample()``; one the receiver did not take
    (unreachable, or ``resend(response)``) is kept and sent again on the next tick instead of a new one."""
    pending: Any = None
    while True:
        await asyncio.sleep(interval_s)
        item = pending if pending is not None else sample()
        try:
            response = await send(item)
        except httpx.HTTPError as exc:
            log.info("receiver unreachable (%s), will resend", exc)
            pending = item
            continue
        pending = item if resend(response) else None
