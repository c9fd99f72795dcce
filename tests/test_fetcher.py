"""Fetching batches from a pull consumer (hub.fetcher) against a real nats-server."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from hub.fetcher import ConsumerGone, Fetcher


@pytest.fixture
async def consumer(nats_url):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="IN", subjects=["in.>"]))
    await js.add_consumer("IN", ConsumerConfig(durable_name="worker", ack_policy=AckPolicy.ALL, filter_subject="in.>"))
    fetcher = await Fetcher(nc, "IN", "worker").start()
    yield js, fetcher
    await fetcher.stop()
    await nc.close()


async def _publish(js, count: int, first: int = 0) -> None:  # noqa: ANN001
    for n in range(first, first + count):
        await js.publish(f"in.{n % 3}", b"%d" % n)


async def test_batches_come_in_stream_order_with_their_sequence_and_store_time(consumer):
    js, fetcher = consumer
    await _publish(js, 25)
    batches = [await fetcher.fetch(10, timeout=1.0) for _ in range(3)]
    got = [message for batch in batches for message in batch]
    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert [m.seq for m in got] == list(range(1, 26)) and [m.data for m in got] == [b"%d" % n for n in range(25)]
    for message in (got[0], got[-1]):  # agrees with nats-py's own reading of the ack subject
        assert message.msg.metadata.sequence.stream == message.seq
        assert abs(message.msg.metadata.timestamp.timestamp() - message.stored_at) < 1e-3


async def test_an_empty_consumer_gives_an_empty_batch_and_then_what_arrives_while_waiting(consumer):
    js, fetcher = consumer
    assert await fetcher.fetch(10, timeout=0.2) == []
    waiting = asyncio.create_task(fetcher.fetch(10, timeout=5.0))
    await asyncio.sleep(0.3)  # the fetch is now waiting on the server
    await _publish(js, 4)
    assert [m.seq for m in await waiting] == [1, 2, 3, 4]


async def test_acknowledging_the_last_of_a_batch_acknowledges_all_of_it(consumer):
    js, fetcher = consumer
    await _publish(js, 8)
    batch = await fetcher.fetch(8, timeout=1.0)
    await batch[-1].msg.ack_sync(timeout=5.0)
    info = await js.consumer_info("IN", "worker")
    assert info.ack_floor.stream_seq == 8 and info.num_ack_pending == 0


async def test_a_deleted_consumer_is_reported_not_waited_on(consumer):
    js, fetcher = consumer
    await _publish(js, 3)
    await js.delete_consumer("IN", "worker")
    with pytest.raises(ConsumerGone):
        await fetcher.fetch(10, timeout=0.5)
