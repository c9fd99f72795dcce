"""A coordination order the city sends down reaches the district's grid-worker connector, and only there: the
city's own grid-worker connector sees it come back up and leaves it to the district."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from hub.config import NatsConfig
from hub.connector import Connector, ConnectorContext
from hub.connector_runtime import running_connector
from hub.models import Category, DispatchOrder, Severity
from hub.nats.streams import ensure_streams
from hub.pipeline import dispatch_output
from hub.topology import coordination_subject, dispatch_order_subject
from tests.federation.tier_hubs import count
from tests.waiting import wait_until


class NoSettings(BaseModel):
    pass


class GridWorkers(Connector):
    """Stands in for the grid workers' app: keeps what it is given to deliver."""

    source = "gridworker"

    def __init__(self):
        super().__init__(NoSettings())
        self.delivered: list[str] = []

    async def run(self, ctx: ConnectorContext) -> None:
        pass

    async def deliver(self, item: object) -> None:
        assert isinstance(item, DispatchOrder)
        self.delivered.append(item.id)


def order(order_id: str) -> DispatchOrder:
    return DispatchOrder(
        id=order_id,
        incident_id="inc-01KQH8TFZ8CH7A33S9AAPE9MQG",
        target="five_way:police",
        connector="gridworker",
        category=Category.GAS_LEAK,
        severity=Severity.CRITICAL,
        summary="five-way joint response",
        created_at=datetime(2026, 5, 1, tzinfo=UTC),
    )


async def test_a_coordination_order_reaches_the_districts_connector_and_no_other(city_and_two_districts):
    tiers = city_and_two_districts
    clients = {code: await tiers.connect_hub(code) for code in ("city", "510104", "510105")}
    for code, client in clients.items():
        await ensure_streams(client.jetstream(), tier=tiers.tier_config(code))
    at_district, at_city = GridWorkers(), GridWorkers()
    settings = {
        code: NatsConfig(servers=[tiers.url(code)], nkey_seed_file=tiers.hub_credentials(code))
        for code in ("city", "510104")
    }
    async with running_connector(at_district, settings["510104"]), running_connector(at_city, settings["city"]):
        joint = dispatch_output(order("joint-1"))
        await (
            clients["city"]
            .jetstream()
            .publish(coordination_subject("510104", "gridworker"), joint.data, headers={"Nats-Msg-Id": joint.msg_id})
        )
        await wait_until(lambda: at_district.delivered == ["joint-1"], "the order delivered at the district")
        await wait_until(lambda: _has(clients["city"], 1), "the order back at the city")
        own = dispatch_output(order("city-1"))  # after it in the city's stream: delivered once it is passed
        await (
            clients["city"]
            .jetstream()
            .publish(dispatch_order_subject("gridworker"), own.data, headers={"Nats-Msg-Id": own.msg_id})
        )
        await wait_until(lambda: at_city.delivered == ["city-1"], "the city's own order delivered, the other left")
        assert await count(clients["510105"], "CITYHUB_DISPATCH") == 0
    for client in clients.values():
        await client.close()


async def _has(client, expected: int) -> bool:
    return await count(client, "CITYHUB_DISPATCH") >= expected
