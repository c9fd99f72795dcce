"""Request bodies above ``[admin].max_body_bytes`` are answered 413 before they are read: a real uvicorn server
serving the admin app, spoken to by httpx and, to send headers without the body they announce, a raw socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter

from hub.admin import create_admin_app
from hub.config import AdminConfig, PipelineConfig
from hub.hookspecs import hookimpl
from hub.nats.embedded import free_port
from standin_hub import StandInHub
from tests.waiting import wait_until

LIMIT = 4096
TOKEN = "limit-token"
INCIDENT = "inc-01M83RDEXVGSK35WXJH6BQ1DDC"
EVENT = {"source": "iot_mqtt", "category": "gas_leak", "time": "2026-05-01T08:00:00+08:00"}
ROUTES_WITH_A_BODY = ["/dry-run", f"/incidents/{INCIDENT}/close", "/plugins/echo/echo"]


class Echo:
    """A plugin whose route takes a body: plugin routes share the admin app's limit."""

    @hookimpl
    def register_routes(self, hub):
        router = APIRouter()

        @router.post("/echo")
        def echo(body: dict[str, Any]) -> dict[str, Any]:
            return body

        return router


@pytest.fixture
async def admin_url(tmp_path) -> AsyncIterator[str]:
    config = tmp_path / "cityhub.toml"
    config.write_text(f'[admin]\ntoken = "{TOKEN}"\nmax_body_bytes = {LIMIT}\n')
    app = create_admin_app(StandInHub(config, {"echo": Echo()}))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    serving = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, "uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


def test_the_default_limit_is_the_pipelines_message_limit():
    assert AdminConfig().max_body_bytes == PipelineConfig().max_message_bytes == 256 * 1024


async def test_a_body_within_the_limit_is_taken(admin_url):
    padded = {**EVENT, "text": "x" * (LIMIT - 200)}
    async with httpx.AsyncClient(base_url=admin_url) as client:
        dry_run = await client.post("/dry-run", json=padded)
        echoed = await client.post("/plugins/echo/echo", json={"text": "x" * (LIMIT - 20)})
    assert dry_run.status_code == 200 and dry_run.json()["matched_rules"] == []
    assert echoed.status_code == 200 and len(echoed.json()["text"]) == LIMIT - 20


@pytest.mark.parametrize("path", ROUTES_WITH_A_BODY)
async def test_a_content_length_above_the_limit_is_answered_413_without_sending_the_body(admin_url, path):
    port = int(admin_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head(path, f"Content-Length: {16 * 1024 * 1024}"))  # 16 MiB announced, none of it sent
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), timeout=30)
    writer.close()
    assert status.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("path", ROUTES_WITH_A_BODY)
async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(admin_url, path):
    port = int(admin_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head(path, "Transfer-Encoding: chunked"))
    chunk = b"x" * 1024
    for _ in range(LIMIT // len(chunk) + 1):  # one chunk past the limit, and the body never ends
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), timeout=30)
    writer.close()
    assert status.startswith(b"HTTP/1.1 413 ")


async def _chunks(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b" " * 1024


@pytest.mark.parametrize("body", [lambda: b" " * (1024 * 1024), lambda: _chunks(1024)], ids=["sized", "chunked"])
async def test_httpx_sending_a_large_body_gets_413(admin_url, body):
    async with httpx.AsyncClient(base_url=admin_url, timeout=30) as client:
        response = await client.post("/dry-run", content=body(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "Content Too Large" in response.text


def _head(path: str, length_header: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\n{length_header}\r\n\r\n"
    ).encode()
