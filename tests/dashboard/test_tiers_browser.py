"""The dashboards of real tiers — a city hub and two district hubs, each on its own nats-server from the
generated configs — in Debian's chromium (the ``browser`` fixture skips, saying why, without it): the city marks
the cross-scope incident of a leak reported on both sides of a border and narrows its list to one district hub
or to what it handles itself; a district's operator sends an incident up to the city with the escalate button."""

from __future__ import annotations

import pytest
from playwright.async_api import expect
from test_browser import open_page

from hub.federation.local import LocalTiers
from hub.federation.scope import GridHierarchy
from hub.geofence import LayerSpec
from hub.models import Category
from tests.federation.tier_hubs import ADMIN_TOKEN, GRIDS, report, running_hub, send
from tests.waiting import wait_until


@pytest.fixture
async def tiers(tmp_path):
    hierarchy = GridHierarchy.from_layers([LayerSpec(name="admin", path=GRIDS, crs="gcj02")])
    deployment = LocalTiers(tmp_path / "tiers", hierarchy, ["city", "510104", "510105"]).start()
    try:
        await deployment.wait_linked()
        yield deployment
    finally:
        deployment.stop()


def incident_of(hub, street: str, category: Category) -> str | None:
    """The id of the incident ``hub``'s dashboard shows in ``street`` of ``category``."""
    return next(
        (
            summary["id"]
            for summary in hub.dashboard.incidents({"status": "all"})
            if summary["street"] and summary["street"].startswith(street) and summary["category"] == category
        ),
        None,
    )


@pytest.mark.slow
async def test_the_city_marks_cross_scope_incidents_filters_by_hub_and_a_district_escalates(browser, tiers, tmp_path):
    city_client, district_client = await tiers.connect_hub("city"), await tiers.connect_hub("510104")
    async with (
        running_hub(tiers, "city", tmp_path / "city", admin=True) as city,
        running_hub(tiers, "510104", tmp_path / "104", admin=True) as district,
        running_hub(tiers, "510105", tmp_path / "105"),
    ):
        # A leak on both sides of the 锦江区 / 青羊区 border; noise in 成华区, which has no hub (the city keeps it);
        # noise a district sensor reports in 510104-01.
        await send(
            city_client,
            report(0, "510104-03"),
            report(0, "510105-08"),
            report(1, "510108-03", source="citizen_report", category=Category.NOISE),
        )
        await send(district_client, report(2, "510104-01", source="iot_mqtt", category=Category.NOISE))
        await wait_until(
            lambda: len(city.dashboard.incidents({"status": "all"})) == 4, "four incidents at the city", 120
        )
        leak_104, leak_105 = (
            incident_of(city, "510104", Category.GAS_LEAK),
            incident_of(city, "510105", Category.GAS_LEAK),
        )
        kept, noise_104 = incident_of(city, "510108", Category.NOISE), incident_of(city, "510104", Category.NOISE)

        page = await open_page(browser, city.admin_url)
        await expect(page.locator("#tier")).to_contain_text("510104, 510105")
        await expect(page.locator(".row .cross-scope")).to_have_count(2)  # both sides of the border, marked
        for incident in (leak_104, leak_105):
            await expect(page.locator(f'.row[data-id="{incident}"] .cross-scope')).to_be_visible()
        await page.select_option("#f-scope", "510105")
        await expect(page.locator(".row")).to_have_count(1)
        await expect(page.locator(f'.row[data-id="{leak_105}"]')).to_be_visible()
        await page.select_option("#f-scope", "here")
        await expect(page.locator(".row")).to_have_count(1)
        await expect(page.locator(f'.row[data-id="{kept}"]')).to_be_visible()
        await page.select_option("#f-scope", "")
        await page.locator(f'.row[data-id="{leak_104}"]').click()
        await expect(page.locator("#detail .cross-scope-links")).to_contain_text("linked by City")
        await expect(page.locator("#escalate")).to_have_count(0)  # the city has no parent
        await page.locator(f'#detail [data-linked="{leak_105}"] a').click()  # to the other side
        await expect(page.locator("#detail .id")).to_have_text(leak_105)

        district_page = await open_page(browser, district.admin_url)
        await district_page.click('#tabs button[data-tab="plugins"]')
        await district_page.fill("#token", ADMIN_TOKEN)
        await district_page.click("#token-form button")
        await expect(district_page.locator("#plugin-message")).to_have_text("Token accepted.")
        await district_page.click('#tabs button[data-tab="incidents"]')
        await district_page.locator(f'.row[data-id="{noise_104}"]').click()
        await district_page.click("#escalate")
        await expect(district_page.locator("#escalate-message")).to_have_text("Sent up to City.")
        await expect(district_page.locator("#detail .tier-actions")).to_contain_text("Escalated by an operator")
        await expect(page.locator(f'.row[data-id="{noise_104}"] .escalated-up')).to_have_text("↑ city")  # at the city
    await city_client.close()
    await district_client.close()
