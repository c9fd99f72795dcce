"""Two reports of one gas leak on both sides of the border between two districts open an incident in each
district; the city, the lowest tier holding both, links them into one cross-scope incident, each district sees
the link and escalates its side to the city for it."""

from __future__ import annotations

from tests.federation.tier_hubs import cloud_event, count, report, running_hub, send, stored
from tests.waiting import wait_until


async def test_a_leak_reported_on_both_sides_of_a_border_is_one_linked_cross_scope_incident(
    city_and_two_districts, tmp_path
):
    tiers = city_and_two_districts
    clients = {code: await tiers.connect_hub(code) for code in ("city", "510104", "510105")}
    async with (
        running_hub(tiers, "city", tmp_path / "city") as city,
        running_hub(tiers, "510104", tmp_path / "104"),
        running_hub(tiers, "510105", tmp_path / "105"),
    ):
        far = report(9, "510104-01")  # the same category, kilometres away: not linked
        await send(clients["city"], report(0, "510104-03"), report(0, "510105-08"), far)
        await wait_until(lambda: _has(clients["city"], "CITYHUB_LINKS", 2), "the link, once per side, at the city")
        await wait_until(lambda: _has(clients["510104"], "CITYHUB_LINKS", 1), "the link at 510104")
        await wait_until(lambda: _has(clients["510105"], "CITYHUB_LINKS", 1), "the link at 510105")

        district_incidents = {}
        for code in ("510104", "510105"):
            [opened] = [
                m
                for m in await stored(clients[code], "CITYHUB_INCIDENTS")
                if m.subject.endswith(".opened") and cloud_event(m)["data"]["address"] != far.address
            ]
            district_incidents[code] = cloud_event(opened)["incidentid"]
        links = [cloud_event(m) for m in await stored(clients["city"], "CITYHUB_LINKS")]
        assert {m.subject for m in await stored(clients["city"], "CITYHUB_LINKS")} == {
            "cityhub.links.city.510104.gas_leak",
            "cityhub.links.city.510105.gas_leak",
        }
        link = links[0]["data"]
        assert link["linked_by"] == "city" and {links[1]["data"]["id"]} == {link["id"]}
        assert {(i["scope"], i["id"]) for i in link["incidents"]} == set(district_incidents.items())
        for code in ("510104", "510105"):
            [seen] = await stored(clients[code], "CITYHUB_LINKS")
            assert (
                seen.subject == f"cityhub.links.city.{code}.gas_leak" and cloud_event(seen)["data"]["id"] == link["id"]
            )
        assert city.tiers.health()["linking"]["linked"] == 1
        await wait_until(
            lambda: _escalated_for_the_link(clients["city"], set(district_incidents.values())),
            "both sides escalated to the city for the link",
        )
    for client in clients.values():
        await client.close()


async def _escalated_for_the_link(client, incident_ids: set[str]) -> bool:
    changes = [cloud_event(m)["data"] for m in await stored(client, "CITYHUB_INCIDENTS")]
    return {
        c["id"] for c in changes if c.get("escalation_cause") == "cross_scope" and c["escalated_to"] == "city"
    } == incident_ids


async def _has(client, stream: str, expected: int) -> bool:
    return await count(client, stream) >= expected
