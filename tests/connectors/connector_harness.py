"""Reading what a connector left in JetStream as typed values with their message ids, on top of harness.py."""

from __future__ import annotations

import tomllib
from datetime import datetime
from typing import Any

import nats
from harness import stream_messages

from hub import topology, wire
from hub.models import Event
from hub.plugins import demo_section_file, installed_plugins


def demo_section(plugin: str) -> dict[str, Any]:
    """The ``[plugins.<plugin>]`` section the installed plugin ships for the demo (its package's ``demo.toml``)."""
    return tomllib.loads(demo_section_file(installed_plugins()[plugin]).read_text(encoding="utf-8"))["plugins"][plugin]


async def ingested_events(nats_url: str, source: str) -> list[tuple[str, Event]]:
    """``(Nats-Msg-Id, event)`` of everything a connector published to ingest, oldest first."""
    messages = await stream_messages(nats_url, topology.INGEST_STREAM, topology.ingest_subject(source))
    return [(m.headers[topology.HEADER_MSG_ID], Event.model_validate(wire.decode(m.data)["data"])) for m in messages]


async def dlq(nats_url: str, source: str) -> list[tuple[bytes, str]]:
    """``(original bytes, reason)`` of everything a connector rejected; a reason in Chinese comes back from
    nats-py's header parser as an ``email.header.Header``, hence ``str``."""
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
