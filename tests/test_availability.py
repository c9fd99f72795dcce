"""The lease and the election inside one process: take, renew, lose, refuse a different config, survive a
deleted lease bucket; the server refuses a deposed hub's outputs. Failover between real ``cityhub run``
processes is in tests/test_failover.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hub import topology
from hub.app import Hub
from hub.availability import LEASE_BUCKET, Holder, Lease, LeaseLost, OutputFence, terms
from hub.errors import ConfigError
from hub.nats.fetcher import Fetcher
from hub.nats.publisher import FLOW, RUN, WINDOW, Message, publish_fast_batch
from hub.pipeline import PIPELINE_CONSUMER
from hub.plugins import ALLOW_LIST_ENV
from tests.pipeline_support import event, hub_toml, ingest_item, publish_raw, stream_count
from tests.waiting import wait_until

TTL_S = 1.0
RULE = """
[[rules]]
id = "gas"
when = 'category == "gas_leak"'
actions = {{ severity = "{severity}", route = ["gridworker"] }}

[availability]
lease_ttl = "1s"
"""


@pytest.fixture(autouse=True)
def _no_connectors(monkeypatch):
    """Two hubs in one process: their connector processes (started waiting on the standby too) would only
    slow the one event loop both hubs share; tests/test_failover.py runs them."""
    monkeypatch.setenv(ALLOW_LIST_ENV, "redaction")


def _hub(tmp_path: Path, nats_url: str, name: str, severity: str = "high") -> Hub:
    path = tmp_path / f"{name}.toml"
    path.write_text(hub_toml(nats_url, RULE.format(severity=severity)))
    return Hub.from_file(path)


@pytest.fixture
async def js(nats_url):
    client = await nats.connect(nats_url)
    yield client.jetstream()
    await client.close()


async def _lease(js, name: str) -> Lease:
    lease = Lease(js, Holder(name, "same"), TTL_S)
    await lease.open()
    return lease


async def test_one_holder_at_a_time_and_the_lease_moves_when_renewals_stop(js):
    first, second = await _lease(js, "first"), await _lease(js, "second")
    assert await first.acquire() and first.held
    assert not await second.acquire()
    first.check()  # the fence lets the holder write
    with pytest.raises(LeaseLost):
        second.check()
    await first.renew()

    # first stops renewing (paused, cut off): its own view of the lease ends before the server's
    await wait_until(lambda: not first.held, "the holder's own view of the lease to end", timeout=10)
    with pytest.raises(LeaseLost):
        first.check()
    for _ in range(100):
        if await second.acquire():
            break
        await asyncio.sleep(0.05)
    assert second.held and (await second.current())[0].instance == "second"
    with pytest.raises(LeaseLost, match="moved to another hub"):
        await first.renew()


async def test_a_released_lease_is_taken_at_once(js):
    first, second = await _lease(js, "first"), await _lease(js, "second")
    assert await first.acquire()
    await first.release()
    assert await second.acquire()


async def test_standby_takes_over_when_the_active_hub_stops(tmp_path, nats_url):
    active, standby = _hub(tmp_path, nats_url, "a"), _hub(tmp_path, nats_url, "b")
    await active.start()
    await standby.start()
    try:
        assert active.health()["availability"]["role"] == "active" and active.pipeline is not None
        assert standby.health()["availability"]["role"] == "standby" and standby.pipeline is None
        assert standby.health()["ok"] and standby.ready
        assert standby.health()["availability"]["holder"]["admin_url"] == active.admin_url
        async with httpx.AsyncClient(base_url=standby.admin_url) as client:
            dry_run = await client.post("/dry-run", json=event(9).model_dump(mode="json"))
        assert dry_run.status_code == 409 and active.admin_url in dry_run.json()["detail"]
        await publish_raw(nats_url, [ingest_item(event(1))])
        await wait_until(lambda: active.pipeline.counts["out"] == 1)
        await active.stop()
        await wait_until(lambda: standby.health()["availability"]["role"] == "active", "the standby to take over")
        await publish_raw(nats_url, [ingest_item(event(2, offset_m=5000))])
        await wait_until(lambda: standby.pipeline is not None and standby.pipeline.counts["out"] == 1)
        assert 'cityhub_role{role="active"} 1.0' in standby.metrics.render().decode()
    finally:
        await standby.stop()


def _incidents(hub_state) -> dict:  # noqa: ANN001 - PipelineState
    return {incident_id: record.dump() for incident_id, record in hub_state.incidents.items()}


async def test_a_standby_keeps_its_pipeline_state_at_the_input_the_active_hub_acknowledged(tmp_path, nats_url):
    active, standby = _hub(tmp_path, nats_url, "a"), _hub(tmp_path, nats_url, "b")
    await active.start()
    await standby.start()
    try:
        await publish_raw(nats_url, [ingest_item(event(n, offset_m=(n % 7) * 400)) for n in range(60)])
        await wait_until(lambda: active.pipeline.counts["out"] == 60, "the active hub's outputs")
        waiting = standby.health()["pipeline"]
        assert waiting["status"] == "standing by" and not waiting["running"]
        await wait_until(lambda: standby.health()["pipeline"]["last_sequence"] == 60, "the standby's state")
        assert _incidents(standby._standby.state) == _incidents(
            active.pipeline.state
        )  # the same incidents, unpublished
        await active.stop()
        await wait_until(lambda: standby.pipeline is not None and standby.pipeline.running, "the takeover")
        assert standby.pipeline.state.last_seq == 60 and standby.pipeline.counts["out"] == 0  # nothing processed again
        await publish_raw(nats_url, [ingest_item(event(60, offset_m=0))])  # joins the first place's incident
        await wait_until(lambda: standby.pipeline.counts["merged"] == 1, "the report merged into a known incident")
    finally:
        await standby.stop()
        await active.stop()


async def test_a_hub_with_different_rules_is_refused(tmp_path, nats_url):
    active = _hub(tmp_path, nats_url, "a", severity="high")
    await active.start()
    different = _hub(tmp_path, nats_url, "b", severity="critical")
    try:
        with pytest.raises(ConfigError, match="runs a different pipeline config"):
            await different.start()
    finally:
        await different.stop()
        await active.stop()


async def test_a_lease_bucket_deleted_by_hand_is_recreated(tmp_path, nats_url, js):
    active, standby = _hub(tmp_path, nats_url, "a"), _hub(tmp_path, nats_url, "b")
    await active.start()
    await standby.start()
    try:
        await js.delete_key_value(LEASE_BUCKET)
        deadline = asyncio.get_running_loop().time() + 30
        while not await _bucket_exists(js):
            assert asyncio.get_running_loop().time() < deadline, "the lease bucket was never recreated"
            await asyncio.sleep(0.05)
        await asyncio.sleep(TTL_S * 3)  # a few leases later: exactly one active hub, neither crashed
        roles = sorted(hub.health()["availability"]["role"] for hub in (active, standby))
        assert roles == ["active", "standby"], roles
        await publish_raw(nats_url, [ingest_item(event(3))])
        await wait_until(lambda: sum(hub.pipeline.counts["out"] for hub in (active, standby) if hub.pipeline) >= 1)
    finally:
        await standby.stop()
        await active.stop()


async def _bucket_exists(js) -> bool:
    try:
        await js.key_value(LEASE_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return False
    return True


class _HandedOver:
    """A deposed hub's writes that passed its lease check before it was paused: its fence headers, no check."""

    def __init__(self, fence: OutputFence):
        self.fence = fence

    def check(self) -> None:
        pass

    def headers(self, stream: str) -> dict[str, str]:
        return self.fence.headers(stream)

    async def refresh(self) -> None:
        pass


def _outputs(prefix: str, count: int = 5) -> list[Message]:
    return [Message("cityhub.events.510104.510104-01.fire.high", b"{}", f"{prefix}-{n}") for n in range(count)]


async def test_outputs_of_a_deposed_hub_are_refused_by_the_server(nc, nats_url):
    js = nc.jetstream()
    first, second = await _lease(js, "first"), await _lease(js, "second")
    assert await first.acquire()
    deposed = OutputFence(js, first)
    await deposed.mark()
    stored, _ = await publish_fast_batch(nc, _outputs("before"), fence=deposed, stream=topology.EVENTS_STREAM)
    assert stored == []  # no message left unstored

    await first.release()  # the lease moves; the new holder marks the output streams
    assert await second.acquire()
    await OutputFence(js, second).mark()

    late = _HandedOver(deposed)
    unstored, reason = await publish_fast_batch(nc, _outputs("after"), fence=late, stream=topology.EVENTS_STREAM)
    assert len(unstored) == 5 and "wrong last sequence" in reason
    again, _ = await publish_fast_batch(nc, _outputs("before"), fence=late, stream=topology.EVENTS_STREAM)
    assert again == []  # re-publications of what is stored are dropped as duplicates, as before
    assert await stream_count(nats_url, topology.EVENTS_STREAM) == 5


async def test_a_fence_mark_that_vanished_is_put_back_and_outputs_flow_again(tmp_path, nats_url, js):
    hub = _hub(tmp_path, nats_url, "a")
    await hub.start()
    try:
        await publish_raw(nats_url, [ingest_item(event(1))])
        await wait_until(lambda: hub.pipeline.counts["out"] == 1)
        await js.purge_stream(topology.EVENTS_STREAM, subject=topology.fence_subject(topology.EVENTS_STREAM))
        await publish_raw(nats_url, [ingest_item(event(2, offset_m=5000))])
        await wait_until(lambda: hub.pipeline.counts["out"] == 2, "the event after the mark was put back")
    finally:
        await hub.stop()
    assert await stream_count(nats_url, topology.EVENTS_STREAM) == 2


class _PausedMidBatch(_HandedOver):
    """The deposed hub frozen (its whole event loop, like SIGSTOP) in the middle of a batch, past the server's
    10 s limit for a fast-ingest batch without messages (jetstream.limits.max_batch_timeout)."""

    def __init__(self, fence: OutputFence, at: int):
        super().__init__(fence)
        self.calls, self.at = 0, at

    def check(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            time.sleep(12)


@pytest.mark.slow
async def test_the_rest_of_a_batch_begun_before_a_long_pause_is_refused(nc, nats_url):
    js = nc.jetstream()
    lease = await _lease(js, "first")
    assert await lease.acquire()
    fence = OutputFence(js, lease)
    await fence.mark()
    sent_before = FLOW * WINDOW  # the publisher waits for flow acks here, so these reach the server first
    outputs = _outputs("paused", count=sent_before + 200)
    before_the_last_run = sent_before // RUN + 1  # the fence is checked once per run the client is handed
    unstored, reason = await publish_fast_batch(
        nc, outputs, fence=_PausedMidBatch(fence, at=before_the_last_run), stream=topology.EVENTS_STREAM
    )
    assert set(range(sent_before, len(outputs))) <= set(unstored), reason  # reported not stored: sent again
    assert await stream_count(nats_url, topology.EVENTS_STREAM) == sent_before  # the server took none of the rest


class _Lapsed:
    """A fence that refuses every write, as the lease's did while it had lapsed."""

    def check(self) -> None:
        raise LeaseLost("lapsed")

    def headers(self, stream: str) -> dict[str, str]:
        return {}

    async def refresh(self) -> None:
        pass


async def test_a_pipeline_that_ended_on_the_fence_is_started_over_while_the_lease_is_held(tmp_path, nats_url):
    hub = _hub(tmp_path, nats_url, "a")
    await hub.start()
    try:
        ended = hub.pipeline
        ended.fence = _Lapsed()  # the lease lapsed and came back between two looks of the elector
        await wait_until(lambda: hub.health()["availability"]["activations"] == 2, "a second activation")
        assert hub.pipeline is not None and hub.pipeline is not ended and hub.pipeline.running
        await publish_raw(nats_url, [ingest_item(event(1))])
        await wait_until(lambda: hub.pipeline.counts["out"] == 1)
    finally:
        await hub.stop()


async def _durable(js, name: str, first_seq: int) -> None:  # noqa: ANN001 - nats JetStreamContext
    await js.add_consumer(
        topology.INGEST_STREAM,
        ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first_seq,
            filter_subject="cityhub.ingest.>",
        ),
    )


async def _paused_with_a_batch_in_hand(nc, name: str):  # noqa: ANN001, ANN202 - nats Client, Delivered list
    """The deposed hub: its consumer delivered sequences 1-5, it acknowledged 1-2, then it was paused."""
    await _durable(nc.jetstream(), name, 1)
    fetcher = await Fetcher(nc, topology.INGEST_STREAM, name).start()
    held = await fetcher.fetch(5, timeout=5)
    await held[1].msg.ack_sync()
    return held


async def test_a_deposed_hubs_acknowledgement_reaches_no_consumer_of_the_hub_that_took_over(nc, nats_url):
    js = nc.jetstream()
    await publish_raw(nats_url, [ingest_item(event(n, offset_m=n * 1000)) for n in range(10)])
    deposed, successor = terms.named(PIPELINE_CONSUMER, 1), terms.named(PIPELINE_CONSUMER, 2)
    held = await _paused_with_a_batch_in_hand(nc, deposed)
    assert await terms.acknowledged(js, topology.INGEST_STREAM, PIPELINE_CONSUMER) == 2
    floor = await terms.retire(js, topology.INGEST_STREAM, PIPELINE_CONSUMER, keep=successor)
    await _durable(js, successor, floor + 1)
    await held[-1].msg.ack()  # the deposed hub resumes and acknowledges its batch
    await nc.flush()
    info = await js.consumer_info(topology.INGEST_STREAM, successor)
    assert floor == 2 and info.ack_floor.stream_seq == 2 and info.num_pending == 8  # 3-10 all still to come
    assert [c.name for c in await js.consumers_info(topology.INGEST_STREAM)] == [successor]

    # Why not one name for every hub: the same acknowledgement, reaching a successor's consumer of that name
    # while the successor has sequences 3-7 in hand, acknowledges 3-5 for it before their outputs are stored; a
    # crash of the successor then would lose them.
    await js.delete_consumer(topology.INGEST_STREAM, successor)
    shared = "shared"
    held = await _paused_with_a_batch_in_hand(nc, shared)
    await js.delete_consumer(topology.INGEST_STREAM, shared)
    await _durable(js, shared, 3)
    in_hand = await (await Fetcher(nc, topology.INGEST_STREAM, shared).start()).fetch(5, timeout=5)
    await held[-1].msg.ack()
    await nc.flush()
    assert [m.seq for m in in_hand] == [3, 4, 5, 6, 7]
    assert (await js.consumer_info(topology.INGEST_STREAM, shared)).ack_floor.stream_seq == 5
