"""Reading what a connector left in JetStream, for the connector contract tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import nats
from nats.js.errors import NotFoundError

from hub import topology, wire
from hub.models import Event


async def stream_messages(nats_url: str, stream: str, subject: str | None = None) -> list[Any]:
    """Every message stored in ``stream`` (optionally only on ``subject``), oldest first."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return []
        if info.state.messages == 0:
            return []
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(stream, seq)
            if subject is None or message.subject == subject:
                messages.append(message)
        return messages
    finally:
        await nc.close()


async def ingested(nats_url: str, source: str) -> list[tuple[str, Event]]:
    """``(Nats-Msg-Id, event)`` of everything a connector published to ingest."""
    messages = await stream_messages(nats_url, topology.INGEST_STREAM, topology.ingest_subject(source))
    return [(m.headers[topology.HEADER_MSG_ID], Event.model_validate(wire.decode(m.data)["data"])) for m in messages]


async def dlq(nats_url: str, source: str) -> list[tuple[bytes, str]]:
    """``(original bytes, reason)`` of everything a connector rejected."""
    messages = await stream_messages(nats_url, topology.DLQ_STREAM, topology.dlq_subject(source))
    return [(m.data, str(m.headers[topology.HEADER_REASON])) for m in messages]


async def publish_outbound(nats_url: str, subject: str, type_: str, id_: str, time: datetime, data: Any) -> None:
    """Publish one CloudEvent where the hub would (dispatch orders, incidents) for a connector's deliver()."""
    nc = await nats.connect(nats_url)
    try:
        raw = wire.encode(type_=type_, id_=id_, source="/cityhub/test", time=time, data=data)
        await nc.jetstream().publish(subject, raw, headers={topology.HEADER_MSG_ID: id_})
    finally:
        await nc.close()


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait until ``condition()`` holds (a generous timeout only guards against hanging, it asserts nothing)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
