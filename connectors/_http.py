"""HTTP plumbing shared by the HTTP-speaking connectors and their simulators: an embedded uvicorn server that
starts and stops inside the caller's event loop, retry with exponential backoff, signed outbound POSTs, and the
settings for them.

Signing itself lives in :mod:`hub.signing` (it is part of the public webhook contract, not connector plumbing).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
from collections.abc import Iterator

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.connector import ConnectorContext
from hub.errors import DeliveryError, DeliveryRejected, HubError
from hub.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, sign_headers, verify

# Answers that say "try again later" rather than "this item is wrong".
RETRYABLE_STATUS = frozenset({408, 425, 429})


class HttpRejection(HubError, ValueError):
    """Input refused at an HTTP intake: ``status`` is the 4xx answer, ``reason`` goes to the sender and the DLQ."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing (413) more than ``max_bytes`` before reading it all into memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HttpRejection(413, f"body of {declared} bytes exceeds the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HttpRejection(413, f"body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def verify_request(request: Request, body: bytes, secret: str, window_s: float) -> None:
    """Check the HMAC headers of a signed request (see hub.signing); 401 when they do not hold."""
    try:
        verify(secret, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER), body, window_s)
    except SignatureError as exc:
        raise HttpRejection(401, str(exc)) from None


async def refuse(ctx: ConnectorContext, raw: bytes, rejection: HttpRejection) -> JSONResponse:
    """Answer a refused request with its 4xx and reason, after recording the original bytes in the DLQ.
    If even the DLQ is unreachable the sender gets 503 and retries, so nothing is lost either way."""
    try:
        await ctx.reject(raw, f"HTTP {rejection.status}: {rejection.reason}")
    except Exception as exc:  # NATS down: the sender must keep the request and retry
        return unavailable(ctx, exc)
    return JSONResponse({"error": rejection.reason}, status_code=rejection.status)


def unavailable(ctx: ConnectorContext, exc: BaseException) -> JSONResponse:
    """503 with Retry-After: the hub could not store the request, the sender should send it again."""
    ctx.count("unavailable")
    ctx.log.warning("could not store a request, answered 503: %s", exc)
    return JSONResponse({"error": "hub temporarily unavailable, retry later"}, status_code=503, headers={"Retry-After": "5"})


def describe(exc: ValidationError) -> str:
    """A pydantic validation error as one line a sender can act on: ``field.path: problem; ...``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
    )


class ListenSettings(BaseModel):
    """Where an HTTP endpoint of a connector listens."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 to accept from other machines.")
    port: int = Field(0, ge=0, le=65535, description="TCP port; 0 picks a free one (tests, demo).")


class RetrySettings(BaseModel):
    """Exponential backoff when the external system is down or slow."""

    model_config = ConfigDict(extra="forbid")

    initial_s: float = Field(0.5, gt=0, description="First pause after a failure.")
    max_s: float = Field(30.0, gt=0, description="Longest pause between attempts.")
    factor: float = Field(2.0, ge=1, description="Each failure multiplies the pause by this.")
    attempts: int = Field(
        4, ge=1, description="Attempts per outbound item before deliver() gives it back to JetStream for redelivery."
    )
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per request; a slower answer counts as a failure.")


class Backoff:
    """Pauses that grow by ``factor`` up to ``max_s`` after each failure, with ±10 % jitter so many
    connectors do not retry in lockstep; :meth:`reset` after a success."""

    def __init__(self, settings: RetrySettings, rng: random.Random | None = None):
        self.settings = settings
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.settings.max_s, self.settings.initial_s * self.settings.factor**self.failures)
        self.failures += 1
        return base * self._rng.uniform(0.9, 1.1)

    async def wait(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0


async def post_signed(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    secret: str,
    idempotency_key: str,
    retry: RetrySettings,
) -> httpx.Response:
    """POST ``body`` as JSON with HMAC signature and ``Idempotency-Key`` headers, retrying transport errors,
    timeouts, 5xx and 408/425/429 with backoff. Raises :class:`DeliveryRejected` on any other 4xx and
    :class:`DeliveryError` once ``retry.attempts`` are used up. Each attempt is signed afresh (new timestamp)."""
    backoff = Backoff(retry)
    failure = "no attempt made"
    for attempt in range(1, retry.attempts + 1):
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: idempotency_key, **sign_headers(secret, body)}
        try:
            response = await client.post(url, content=body, headers=headers, timeout=retry.timeout_s)
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


class _HostedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host (the hub or the test runner)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Serve a FastAPI app on ``host:port`` (0 = a free port) inside the running event loop."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None):
        self.app = app
        self.host = host
        self.requested_port = port
        self.tls = tls
        self.port: int | None = None
        self._server: _HostedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("HttpServer.url is known only after start()")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> HttpServer:
        """Bind (raising OSError if the port is taken) and serve until :meth:`stop`."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port or self.requested_port))
        self.port = sock.getsockname()[1]
        tls = self.tls
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
        )
        self._server = _HostedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"http:{self.port}")
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        """Stop serving; a later :meth:`start` binds the same port again (outage tests rely on it)."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = None
        self._task = None
