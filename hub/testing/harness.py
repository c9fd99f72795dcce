"""The hub harness of connector tests: read what a connector put on NATS (its events, dead letters and status
updates), publish what the hub would send it (dispatch orders, incidents), and run its simulator for the length
of a block. Every function takes the URL of a real nats-server (the ``nats_url`` fixture of
:mod:`hub.testing.pytest_plugin`)."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Protocol

import nats
import orjson

from hub import topology, wire
from hub.models import DispatchOrder, Event
from hub.plugins import demo_section_file, installed_plugins


class Simulator(Protocol):
    """What ``register_simulators`` returns: a stand-in for the external system, started and stopped."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def stream_messages(nats_url: str, stream: str, subject: str) -> list[Any]:
    """Every stored message of ``stream`` on ``subject``, oldest first."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found: list[Any] = []
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


async def ingested_events(nats_url: str, source: str) -> list[tuple[str, Event]]:
    """``(Nats-Msg-Id, event)`` of everything a connector published to ingest, oldest first."""
    messages = await stream_messages(nats_url, topology.INGEST_STREAM, topology.ingest_subject(source))
    return [(m.headers[topology.HEADER_MSG_ID], Event.model_validate(wire.decode(m.data)["data"])) for m in messages]


async def dead_letter_messages(nats_url: str, source: str) -> list[Any]:
    """Every DLQ entry of ``source`` as stored (data and all headers), oldest first."""
    return await stream_messages(nats_url, topology.DLQ_STREAM, topology.dlq_subject(source))


async def dead_letters(nats_url: str, source: str) -> list[tuple[bytes, str]]:
    """``(original bytes, reason)`` of every DLQ entry of ``source``; a reason in Chinese comes back from
    nats-py's header parser as an ``email.header.Header``, hence ``str``."""
    return [(m.data, str(m.headers[topology.HEADER_REASON])) for m in await dead_letter_messages(nats_url, source)]


async def dispatch_updates(nats_url: str, source: str) -> list[dict[str, Any]]:
    """The dispatch status updates a connector published (CloudEvent ``data``), oldest first."""
    messages = await stream_messages(nats_url, topology.DISPATCH_STREAM, topology.dispatch_update_subject(source))
    return [wire.decode(message.data)["data"] for message in messages]


async def send_order(nats_url: str, order: DispatchOrder, connector: str) -> None:
    """Publish a dispatch order for ``connector`` the way the pipeline does (CloudEvent, msg id)."""
    raw = wire.encode(
        type_=wire.TYPE_DISPATCH_ORDER,
        id_=order.id,
        source="/cityhub/pipeline",
        time=order.created_at,
        data=order,
        extensions={"incidentid": order.incident_id},
    )
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            topology.dispatch_order_subject(connector), raw, headers={topology.HEADER_MSG_ID: f"order:{order.id}"}
        )
    finally:
        await nc.close()


async def publish_outbound(nats_url: str, subject: str, type_: str, id_: str, time: datetime, data: Any) -> None:
    """Publish one CloudEvent where the hub would (dispatch orders, incidents) for a connector's deliver()."""
    nc = await nats.connect(nats_url)
    try:
        raw = wire.encode(type_=type_, id_=id_, source="/cityhub/test", time=time, data=data)
        await nc.jetstream().publish(subject, raw, headers={topology.HEADER_MSG_ID: id_})
    finally:
        await nc.close()


def demo_section(plugin: str) -> dict[str, Any]:
    """The ``[plugins.<plugin>]`` section the installed plugin ships for the demo (its package's ``demo.toml``)."""
    return tomllib.loads(demo_section_file(installed_plugins()[plugin]).read_text(encoding="utf-8"))["plugins"][plugin]


@contextlib.asynccontextmanager
async def simulating(*simulators: Simulator) -> AsyncIterator[None]:
    """Run the simulators for the length of the block; they stop, the last started first, however it ends."""
    async with contextlib.AsyncExitStack() as stack:
        for simulator in simulators:
            await simulator.start()
            stack.push_async_callback(simulator.stop)
        yield


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
