"""Following a stream through a nats-server restart, a deleted consumer and a restart of the follower itself:
every message once, in stream order (hub.nats.follower)."""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest

from hub import topology
from hub.nats.follower import Follower, Start
from tests.waiting import wait_until

SUBJECT = "cityhub.events.510104.510104-01.gas_leak.critical"


@pytest.fixture
async def client(nats_url):
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    yield nc
    await nc.close()


class Reader:
    """A follower's messages collected in the background, as a caller would take them."""

    def __init__(self, follower: Follower):
        self.follower = follower
        self.seen: list[bytes] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.follower.messages():
            self.seen.append(message.data)

    async def wait_for(self, count: int) -> None:
        await wait_until(lambda: len(self.seen) >= count, f"{count} messages followed (have {len(self.seen)})")

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def publish(nc, numbers: range) -> list[bytes]:
    js = nc.jetstream()
    sent = [f"m{n}".encode() for n in numbers]
    for data in sent:
        await js.publish(SUBJECT, data, timeout=10)
    return sent


async def test_following_across_a_nats_restart_and_a_deleted_consumer_gives_every_message_once_in_order(
    nc, client, restart_nats
):
    follower = Follower(client, topology.EVENTS_STREAM, "cityhub.events.>", Start(seq=1), name="test")
    reader = Reader(follower)
    sent = await publish(client, range(0, 50))
    await reader.wait_for(50)

    await restart_nats()
    sent += await publish(client, range(50, 100))
    await reader.wait_for(100)
    assert follower.health()["recoveries"] >= 1 and follower.health()["last_error"]

    await client.jetstream().delete_consumer(topology.EVENTS_STREAM, follower.health()["consumer"])
    sent += await publish(client, range(100, 150))
    await reader.wait_for(150)
    await asyncio.sleep(0.5)  # room for a message handed out twice to show up
    await reader.stop()
    assert reader.seen == sent
    assert follower.health()["recoveries"] >= 2 and "gone" in follower.health()["last_error"]


async def test_a_durable_follower_takes_over_where_the_acknowledgements_end(nc, client):
    sent = await publish(client, range(0, 20))
    first = Follower(client, topology.EVENTS_STREAM, "cityhub.events.>", Start(seq=1), name="test", durable="t")
    taken = []
    async with contextlib.aclosing(first.messages()) as messages:
        async for message in messages:
            taken.append(message.data)
            if len(taken) == 12:
                break  # the 12th is not taken: the caller never asked for the 13th
    second = Follower(client, topology.EVENTS_STREAM, "cityhub.events.>", Start(seq=1), name="test", durable="t")
    rest = [message.data async for message in second.messages(until_caught_up=True)]
    assert taken + rest[1:] == sent and rest[0] == taken[-1]
