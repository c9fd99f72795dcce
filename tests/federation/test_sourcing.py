"""Events move between tiers by stream sourcing alone: the hand-off stream down to the child that owns the
place, coordination orders down to the child's connectors, the unified streams up to every tier above, on the
same subjects."""

from __future__ import annotations

from hub.federation.sourcing import from_below
from hub.nats.streams import ensure_streams
from hub.topology import HANDOFF_STREAM, coordination_subject, handoff_subject
from tests.waiting import wait_until

DEPLOYED = ("city", "510104", "510104-01", "510105")


async def stored(js, stream: str) -> list:
    """Every message ``stream`` holds, in order."""
    count = (await js.stream_info(stream)).state.messages
    return [await js.get_msg(stream, sequence) for sequence in range(1, count + 1)]


async def test_hand_off_reaches_only_its_child_and_unified_streams_reach_every_tier_above(tiers):
    clients = {code: await tiers.connect_hub(code) for code in DEPLOYED}
    try:
        js = {code: client.jetstream() for code, client in clients.items()}
        for code in DEPLOYED:
            await ensure_streams(js[code], tier=tiers.tier_config(code))
        for child in ("510104", "510105", "510104"):  # the second 510104 publication is a re-send
            await js["city"].publish(
                handoff_subject(child, "hotline_12345"),
                child.encode(),
                headers={"Nats-Msg-Id": f"hotline_12345:{child}"},
            )
        await js["city"].publish(
            coordination_subject("510104", "gridworker"), b"five-way", headers={"Nats-Msg-Id": "o1"}
        )
        street_event = "cityhub.events.510104.510104-01.gas_leak.high"
        await js["510104-01"].publish(street_event, b"{}", headers={"Nats-Msg-Id": "e1"})

        await wait_until(lambda: _count(js["510104"], "CITYHUB_INGEST", 1), "the hand-off at 510104")
        await wait_until(lambda: _count(js["510105"], "CITYHUB_INGEST", 1), "the hand-off at 510105")
        await wait_until(lambda: _count(js["city"], "CITYHUB_EVENTS", 1), "the street's event at the city")
        [handed] = await stored(js["510104"], "CITYHUB_INGEST")
        assert (handed.subject, handed.data, handed.headers["Nats-Msg-Id"]) == (
            "cityhub.ingest.hotline_12345",
            b"510104",
            "hotline_12345:510104",
        )
        [seen] = await stored(js["city"], "CITYHUB_EVENTS")
        assert seen.subject == street_event and from_below(seen.headers)
        assert (await js["city"].stream_info(HANDOFF_STREAM)).state.messages == 2
        assert (await js["510104-01"].stream_info("CITYHUB_INGEST")).state.messages == 0  # nothing for the street

        await wait_until(lambda: _count(js["city"], "CITYHUB_DISPATCH", 1), "the order seen back at the city")
        [order] = await stored(js["510104"], "CITYHUB_DISPATCH")
        assert order.subject == "cityhub.dispatch.orders.gridworker" and not from_below(order.headers)  # acted on
        [seen_order] = await stored(js["city"], "CITYHUB_DISPATCH")
        assert seen_order.subject == order.subject and from_below(seen_order.headers)  # seen, not acted on
        assert (await js["510105"].stream_info("CITYHUB_DISPATCH")).state.messages == 0
    finally:
        for client in clients.values():
            await client.close()


async def _count(js, stream: str, expected: int) -> bool:
    return (await js.stream_info(stream)).state.messages >= expected
