"""Fetching batches from a pull consumer (hub.nats.fetcher) against a real nats-server."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from hub.nats.fetcher import ConsumerGone, Fetcher


@pytest.fixture(params=[False, True], ids=["on_demand", "prefetch"])
async def consumer(nats_url, request):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="IN", subjects=["in.>"]))
    await js.add_consumer("IN", ConsumerConfig(durable_name="worker", ack_policy=AckPolicy.ALL, filter_subject="in.>"))
    fetcher = await Fetcher(nc, "IN", "worker", prefetch=request.param).start()
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


async def test_with_prefetch_the_next_batch_is_delivered_while_the_caller_works(nats_url):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="AHEAD", subjects=["ahead.>"]))
    await js.add_consumer("AHEAD", ConsumerConfig(durable_name="w", ack_policy=AckPolicy.ALL, filter_subject="ahead.>"))
    fetcher = await Fetcher(nc, "AHEAD", "w", prefetch=True).start()
    for n in range(25):
        await js.publish("ahead.x", b"%d" % n)
    first = await fetcher.fetch(10, timeout=1.0)
    await asyncio.sleep(0.3)  # the caller processes the first batch; no fetch call meanwhile
    assert (await js.consumer_info("AHEAD", "w")).delivered.stream_seq == 20
    rest = [await fetcher.fetch(10, timeout=0.5) for _ in range(3)]
    assert [len(batch) for batch in [first, *rest]] == [10, 10, 5, 0]
    assert [m.seq for batch in [first, *rest] for m in batch] == list(range(1, 26))
    await fetcher.stop()
    await nc.close()


async def test_messages_arriving_around_a_partly_filled_prefetch_keep_their_order(consumer):
    js, fetcher = consumer
    await _publish(js, 5)
    got = list(await fetcher.fetch(10, timeout=0.5))
    await _publish(js, 3, first=5)  # the prefetch request takes these and stays open for more
    await asyncio.sleep(0.1)
    got += await fetcher.fetch(10, timeout=0.5)
    await _publish(js, 30, first=8)
    while len(got) < 38:
        batch = await fetcher.fetch(10, timeout=0.5)
        assert 0 < len(batch) <= 10
        got += batch
    assert [m.seq for m in got] == list(range(1, 39))
