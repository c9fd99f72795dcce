"""Each scope's credentials read exactly its own subjects, enforced by the nats-servers' permissions that
``cityhub nats-config`` generates: every other read — another street, another district, ingest, the DLQ, KV
buckets, object stores, other clients' inboxes — is refused by the server."""

from __future__ import annotations

import asyncio

import nats
import orjson
import pytest
from nats.js.api import ConsumerConfig

from hub.connector_kit.mqtt import parse_broker_url
from hub.federation.local import LocalTiers
from hub.federation.permissions import inbox_prefix
from hub.nats.streams import ensure_streams
from tests.waiting import wait_until

OWN = "cityhub.events.510104.510104-01.gas_leak.high"
REFUSED_SUBSCRIPTIONS = [
    "cityhub.events.510104.510104-02.>",  # another street of the same district
    "cityhub.events.510105.>",  # another district
    "cityhub.events.>",
    "cityhub.incidents.510104.>",  # the district's incidents are not the street's
    "cityhub.ingest.>",
    "cityhub.dlq.>",
    "cityhub.dispatch.>",
    "_INBOX.>",  # other clients' replies
]
REFUSED_PUBLICATIONS = [
    "cityhub.ingest.hotline_12345",
    "$JS.API.STREAM.INFO.KV_CITYHUB_ESCALATIONS",  # a KV bucket
    "$JS.API.DIRECT.GET.KV_CITYHUB_ESCALATIONS",
    "$JS.API.STREAM.INFO.OBJ_CITYHUB_PIPELINE",  # an object store
    "$JS.API.STREAM.MSG.GET.CITYHUB_EVENTS",
    "$JS.API.CONSUMER.CREATE.CITYHUB_EVENTS",  # an unfiltered consumer
    "$JS.API.CONSUMER.CREATE.CITYHUB_EVENTS.c.cityhub.events.510104.510104-02.>",
    "$JS.API.CONSUMER.CREATE.CITYHUB_INGEST.c.cityhub.ingest.>",
]


class Violations:
    """The permission violations the server reported to one client."""

    def __init__(self):
        self.messages: list[str] = []

    async def record(self, error: Exception) -> None:
        self.messages.append(str(error).lower())

    def refused(self, kind: str, subject: str) -> bool:
        return any(
            f"permissions violation for {kind} to" in message and subject.lower() in message
            for message in self.messages
        )


async def test_a_streets_credentials_read_its_street_and_nothing_else(tiers):
    hub = await tiers.connect_hub("city")
    await ensure_streams(hub.jetstream())
    violations = Violations()
    street = await tiers.connect_viewer("510104-01", server="city", error_cb=violations.record)
    try:
        live = await street.subscribe("cityhub.events.510104.510104-01.>")
        await street.flush()
        await hub.jetstream().publish(OWN, orjson.dumps({"n": 1}))
        assert (await live.next_msg(timeout=60)).subject == OWN

        replayed = await _replay(street, "cityhub.events.510104.510104-01.>")
        assert replayed == OWN

        for subject in REFUSED_SUBSCRIPTIONS:
            await street.subscribe(subject)
            await wait_until(
                lambda subject=subject: violations.refused("subscription", subject), f"subscribing {subject} refused"
            )
        for subject in REFUSED_PUBLICATIONS:
            await street.publish(subject, b"{}", reply=f"{inbox_prefix(tiers.scope('510104-01'))}.x")
            await wait_until(
                lambda subject=subject: violations.refused("publish", subject), f"publishing to {subject} refused"
            )
    finally:
        await street.close()
        await hub.close()


async def test_a_districts_credentials_read_its_district_and_a_street_reads_all_on_its_own_hub(tiers):
    violations = Violations()
    district = await tiers.connect_viewer("510104", server="city", error_cb=violations.record)
    own_street = await tiers.connect_viewer("510104-01", server="510104-01", error_cb=violations.record)
    try:
        await district.subscribe("cityhub.events.510104.>")
        await district.subscribe("cityhub.incidents.510104.>")
        await own_street.subscribe("cityhub.incidents.>")  # on its own hub, everything is the street's
        await own_street.subscribe("cityhub.dispatch.>")
        await district.subscribe("cityhub.events.510105.>")
        await wait_until(lambda: violations.refused("subscription", "cityhub.events.510105.>"), "510105 refused")
        await own_street.subscribe("cityhub.ingest.>")
        await wait_until(lambda: violations.refused("subscription", "cityhub.ingest.>"), "ingest refused")
        assert not any(
            "cityhub.events.510104.>" in m or "incidents" in m or "dispatch" in m for m in violations.messages
        )
    finally:
        await district.close()
        await own_street.close()


async def _replay(client, subject: str) -> str:
    """The subject of the first stored message on ``subject``, read through a consumer filtered to it."""
    inbox = client.new_inbox()
    delivered = await client.subscribe(inbox)
    await client.jetstream()._jsm.add_consumer(
        "CITYHUB_EVENTS",
        ConsumerConfig(
            name="replay", filter_subject=subject, deliver_subject=inbox, ack_policy="none", inactive_threshold=60
        ),
    )
    return (await delivered.next_msg(timeout=60)).subject


# Every hub's server has these, under the same names: were they to cross the link, one tier's writes would
# be stored (or its acks taken) by the other's — a district's lease, pipeline snapshot and ack floor moved by
# the city's.
KEPT_OFF_THE_LINK = [
    "$KV.CITYHUB_LEASE.pipeline",
    "$O.CITYHUB_PIPELINE.M.c25hcHNob3Q",
    "$JS.ACK.CITYHUB_INGEST.cityhub-pipeline.1.500.500.0.0",
    "cityhub.events.510104.510104-01.gas_leak.high",
    "cityhub.ingest.hotline_12345",
]


async def test_the_link_carries_what_sourcing_needs_and_nothing_of_a_tiers_own_state(tiers):
    city, district = await tiers.connect_hub("city"), await tiers.connect_hub("510104")
    try:
        leaked = await district.subscribe(">")
        await district.flush()
        for subject in KEPT_OFF_THE_LINK:
            await city.publish(subject, b"{}")
        # The link delivers in order: once the district's JetStream answered a request sent after them, and the
        # subscriber's connection is flushed, whatever of them crossed has reached it.
        await city.request(f"$JS.{tiers.scope('510104').domain}.API.INFO", b"", timeout=30)
        await district.flush()
        crossed = []
        while leaked.pending_msgs:
            crossed.append((await leaked.next_msg()).subject)
        assert not [subject for subject in crossed if subject in KEPT_OFF_THE_LINK]
    finally:
        await city.close()
        await district.close()


async def test_a_districts_link_creates_consumers_on_its_own_hand_offs_only(tiers):
    city, district = await tiers.connect_hub("city"), await tiers.connect_hub("510104")
    try:
        await ensure_streams(city.jetstream(), tier=tiers.tier_config("city"))
        own = await _create_consumer_at_city(district, "cityhub.handoff.510104.*")
        assert orjson.loads(own.data)["type"] == "io.nats.jetstream.api.v1.consumer_create_response"
        for other in ("cityhub.handoff.510105.*", "cityhub.handoff.>"):
            with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
                await _create_consumer_at_city(district, other)
    finally:
        await city.close()
        await district.close()


async def _create_consumer_at_city(client, subjects: str):
    """The request a district's server makes for its source of the city's hand-off stream, filtered to ``subjects``."""
    body = {
        "stream_name": "CITYHUB_HANDOFF",
        "config": {"name": "probe", "filter_subject": subjects, "ack_policy": "none", "inactive_threshold": 10**10},
    }
    return await client.request(
        f"$JS.city.API.CONSUMER.CREATE.CITYHUB_HANDOFF.probe.{subjects}", orjson.dumps(body), timeout=5
    )


SUBSCRIBE_FAILURE = 0x80  # MQTT 3.1.1 SUBACK return code


async def test_a_districts_mqtt_devices_use_their_topics_and_nothing_else(tmp_path, hierarchy):
    """The MQTT listener of a district's server: its devices publish and subscribe under their topic prefixes;
    CityHub's own subjects are refused to them, and their password opens no plain NATS connection."""
    tiers = LocalTiers(tmp_path / "tiers", hierarchy, ["city", "510104"], mqtt={"510104": ("cityhub/raw/iot",)}).start()
    hub = await tiers.connect_hub("510104")
    broker = parse_broker_url(tiers.mqtt_url("510104"))
    try:
        seen = await hub.subscribe(">")
        async with (
            broker.client("reader", clean_session=True) as reader,
            broker.client("device", clean_session=True) as device,
        ):
            await reader.subscribe("cityhub/raw/iot/#", qos=1)
            [granted] = await reader.subscribe("cityhub/events/#", qos=1)
            assert granted == SUBSCRIBE_FAILURE, granted  # the SUBACK refuses it
            await device.publish("cityhub/ingest/iot_mqtt", b"{}", qos=0)  # dropped by the server
            await device.publish("cityhub/raw/iot/gas-7/data", b'{"lel_pct": 31}', qos=1)
            async with asyncio.timeout(60):
                message = await anext(reader.messages)
            assert (str(message.topic), message.payload) == ("cityhub/raw/iot/gas-7/data", b'{"lel_pct": 31}')
        # The device's publications reach NATS in order: once the allowed one arrived, the refused one would have.
        subjects = []
        while True:
            subjects.append((await seen.next_msg(timeout=60)).subject)
            if subjects[-1] == "cityhub.raw.iot.gas-7.data":
                break
        assert "cityhub.ingest.iot_mqtt" not in subjects
        with pytest.raises(nats.errors.Error):
            await nats.connect(
                tiers.url("510104"),
                user=broker.username,
                password=broker.password,
                max_reconnect_attempts=0,
                allow_reconnect=False,
                connect_timeout=5,
            )
    finally:
        await hub.close()
        tiers.stop()
