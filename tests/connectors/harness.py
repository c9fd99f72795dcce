"""Helpers of the connector contract tests: read what a connector put on NATS and publish what the hub would
send it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import orjson

from hub import topology, wire
from hub.models import DispatchOrder


async def stream_messages(nats_url: str, stream: str, subject: str) -> list[Any]:
    """Every stored message of ``stream`` on ``subject``, oldest first."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found = []
        if info.state.messages == 0:
            return found
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(stream, seq)
            if message.subject == subject:
                found.append(message)
        return found
    finally:
        await nc.close()


async def ingested(nats_url: str, source: str) -> list[dict[str, Any]]:
    """The canonical events a connector published (CloudEvent ``data``), oldest first."""
    messages = await stream_messages(nats_url, topology.INGEST_STREAM, topology.ingest_subject(source))
    return [wire.decode(message.data)["data"] for message in messages]


async def dead_letters(nats_url: str, source: str) -> list[tuple[bytes, str]]:
    """``(original bytes, reason)`` of every DLQ entry of ``source``."""
    messages = await stream_messages(nats_url, topology.DLQ_STREAM, topology.dlq_subject(source))
    return [(message.data, message.headers[topology.HEADER_REASON]) for message in messages]


async def dispatch_updates(nats_url: str, source: str) -> list[dict[str, Any]]:
    messages = await stream_messages(nats_url, topology.DISPATCH_STREAM, topology.dispatch_update_subject(source))
    return [wire.decode(message.data)["data"] for message in messages]


async def send_order(nats_url: str, order: DispatchOrder, connector: str) -> None:
    """Publish a dispatch order for ``connector`` the way the pipeline does (CloudEvent, msg id)."""
    raw = wire.encode(type_=wire.TYPE_DISPATCH_ORDER, id_=order.id, source="/cityhub/pipeline",
                      time=order.created_at, data=order, extensions={"incidentid": order.incident_id})
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(topology.dispatch_order_subject(connector), raw,
                                     headers={topology.HEADER_MSG_ID: f"order:{order.id}"})
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def wiretap(nats_url: str) -> AsyncIterator[list[bytes]]:
    """Every message published on the server while the block runs (subject, data and headers), for leak checks."""
    nc = await nats.connect(nats_url)
    seen: list[bytes] = []

    async def note(message: Any) -> None:
        seen.append(message.subject.encode() + b" " + message.data + orjson.dumps(message.headers or {}))

    await nc.subscribe(">", cb=note)
    try:
        yield seen
    finally:
        await nc.drain()
