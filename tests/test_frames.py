"""Messages written as frames built in the core (:func:`hub._core.fast_ingest_frames`, :mod:`hub.nats.frames`)
reach a real nats-server's subscribers exactly as the same messages published with nats-py's own ``publish``:
subject, reply subject, headers and payload, for any header values and payloads (hypothesis); what would inject
protocol commands is refused before anything is written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hub import _core, topology
from hub.nats.embedded import EmbeddedNats
from hub.nats.frames import can_write_frames, write_frames
from hub.nats.publisher import Message, Publisher
from hub.nats.streams import ensure_streams

_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
_HEADER_NAME = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~", min_size=1
)
_HEADER_VALUE = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)


@st.composite
def messages(draw: st.DrawFn) -> list[Message]:
    count = draw(st.integers(min_value=1, max_value=5))
    return [
        Message(
            f"frames.{draw(_TOKEN)}.{n}",
            draw(st.binary(max_size=300)),
            f"id-{n}-{draw(_TOKEN)}",
            draw(
                st.none()
                | st.dictionaries(
                    _HEADER_NAME.filter(lambda name: name.lower() != "nats-msg-id"), _HEADER_VALUE, max_size=3
                )
            ),
        )
        for n in range(count)
    ]


class _Seen:
    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.arrived = asyncio.Event()
        self.expected = 0

    async def take(self, msg: Msg) -> None:
        self.messages.append(msg)
        if len(self.messages) >= self.expected:
            self.arrived.set()

    async def wait_for(self, count: int) -> list[tuple[str, str, dict[str, str] | None, bytes]]:
        self.expected = count
        if len(self.messages) < count:
            await asyncio.wait_for(self.arrived.wait(), 10)
        taken, self.messages = self.messages[:count], self.messages[count:]
        self.arrived.clear()
        return [(msg.subject.split(".", 1)[1], msg.reply, msg.headers, msg.data) for msg in taken]


async def _listening(nats_url: str) -> tuple[NatsClient, _Seen]:
    listener, seen = await nats.connect(nats_url), _Seen()
    await listener.subscribe("frames.>", cb=seen.take)
    await listener.subscribe("published.>", cb=seen.take)
    await listener.flush()
    return listener, seen


async def _by_frames(nc: NatsClient, batch: list[Message], conditions: dict[str, str] | None) -> None:
    frames = _core.fast_ingest_frames(batch, "_INBOX.x.100.fail.", 1, len(batch), conditions)
    await write_frames(nc, frames, len(batch), sum(len(message.data) for message in batch))


async def _by_publish(nc: NatsClient, batch: list[Message], conditions: dict[str, str] | None) -> None:
    for sequence, message in enumerate(batch, start=1):
        operation = 2 if sequence == len(batch) else 0 if sequence == 1 else 1
        await nc.publish(
            message.subject.replace("frames.", "published.", 1),
            message.data,
            reply=f"_INBOX.x.100.fail.{sequence}.{operation}.$FI",
            headers=message.all_headers(conditions if sequence == 1 else None),
        )


def test_the_installed_nats_py_takes_frames(nc: NatsClient) -> None:
    assert can_write_frames(nc)  # else every publication goes message by message, and the frames go untested


async def test_frames_arrive_as_nats_py_would_publish_them(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    listener, seen = await _listening(nats_url)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(batch=messages(), conditions=st.none() | st.just({"Nats-Expected-Last-Subject-Sequence": "7"}))
    def same_on_the_wire(batch: list[Message], conditions: dict[str, str] | None) -> None:
        async def both() -> None:
            await _by_frames(nc, batch, conditions)
            await _by_publish(nc, batch, conditions)
            await nc.flush()
            framed, published = await seen.wait_for(len(batch)), await seen.wait_for(len(batch))
            assert framed == published

        asyncio.run_coroutine_threadsafe(both(), loop).result(30)

    loop = asyncio.get_running_loop()
    try:
        await asyncio.to_thread(same_on_the_wire)
    finally:
        await nc.close()
        await listener.close()


@pytest.mark.parametrize(
    ("subject", "headers"),
    [("frames.a b", None), ("frames.a\r\nPUB evil 0\r\n", None), ("", None), ("frames.ok", {"Bad:Name": "v"})],
)
def test_what_could_inject_protocol_commands_is_refused(subject: str, headers: dict[str, str] | None) -> None:
    with pytest.raises(ValueError, match="not a"):
        _core.fast_ingest_frames([Message(subject, b"{}", "id", headers)], "_INBOX.x.", 1, 1)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in 10 s")


async def test_a_batch_written_while_the_server_is_away_is_stored_when_it_is_back(
    nats_server: EmbeddedNats, nats_url: str
) -> None:
    nc = await nats.connect(nats_url, pending_size=64 * 1024, reconnect_time_wait=0.2, max_reconnect_attempts=-1)
    await ensure_streams(nc.jetstream())
    await asyncio.to_thread(nats_server.stop)
    await _until(lambda: nc.is_reconnecting)
    too_large = _core.fast_ingest_frames([Message("frames.a", b"x" * 70_000, "id")], "_INBOX.x.", 1, 1)
    with pytest.raises(nats.errors.OutboundBufferLimitError):  # beyond the reconnection buffer: refused, not lost
        await write_frames(nc, too_large, 1, 70_000)
    batch = [Message(f"cityhub.events.d{n}._.fire.high", b'{"n": %d}' % n, f"away-{n}") for n in range(50)]
    publication = asyncio.create_task(Publisher(nc).publish(batch))
    await asyncio.sleep(0.5)
    nats_server.launch()
    await asyncio.to_thread(nats_server.wait_listening)
    try:
        assert await publication == ([], None)
        assert (await nc.jetstream().stream_info(topology.EVENTS_STREAM)).state.messages == 50
    finally:
        await nc.close()
