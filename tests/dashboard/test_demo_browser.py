"""The dashboard of the running demo, after its storyline, as a duty officer first sees it in Chromium: the admin
URL leads to it, response times are minutes from reception with tooltips naming the clock, the flood warning shows
its grids' confirmations (and its area, drawn, once incidents carry one), and no incident is older than the demo
unless flagged late. With CITYHUB_SCREENSHOTS=1 it refreshes the README's and docs/dashboard.md's screenshots."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from hub.models import utcnow
from tests.test_demo import start_demo, watch_storyline

MINUTES = re.compile(r"^\d+(\.\d)? / \d+(\.\d)? (min|分钟)$")
CLOCK_SKEW = timedelta(minutes=1)  # simulators stamp whole seconds; hosts may differ a little


def incidents(admin_url: str, **filters: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{admin_url}/api/incidents", params={"status": "all", "limit": "5000", **filters}, timeout=30)
    response.raise_for_status()
    return response.json()["incidents"]


async def open_dashboard(browser, admin_url: str, locale: str) -> Page:
    """The admin URL as the banner prints it: its front page leads to the dashboard."""
    context = await browser.new_context(locale=locale, viewport={"width": 1600, "height": 900})
    page = await context.new_page()
    await page.goto(admin_url)
    assert page.url == f"{admin_url}/dashboard"
    await expect(page.locator("#live")).to_have_class("live on")
    return page


@pytest.mark.timeout(300)
async def test_the_demos_dashboard_after_its_storyline(browser, screenshots, tmp_path):
    started = utcnow()
    demo = await start_demo(tmp_path / "demo")
    try:
        admin_url = await demo.banner_value("admin API")
        watch = await watch_storyline(await demo.banner_value("NATS"))

        page = await open_dashboard(browser, admin_url, "en-US")
        await expect(page.locator("#fig-tta")).to_have_text(MINUTES)  # the gas leak's orders were accepted
        assert "reception" in await page.locator("#fig-tta").locator("xpath=..").get_attribute("title")
        assert "reception" in await page.locator("#fig-ttr").locator("xpath=..").get_attribute("title")
        assert (
            MINUTES.match(await page.locator("#fig-ttr").inner_text())
            or await page.locator("#fig-ttr").inner_text() == "–"
        )
        await page.screenshot(path=str(screenshots / "dashboard-overview.png"))

        shown = incidents(admin_url)
        too_old = [i for i in shown if datetime.fromisoformat(i["opened_at"]) < started - CLOCK_SKEW and not i["late"]]
        assert too_old == [], "incidents older than the demo, not flagged late"

        gas = watch.gas_incident()
        assert gas is not None
        await page.select_option("#f-category", "gas_leak")  # the list only holds the rows in view
        await page.locator(f'.row[data-id="{gas["id"]}"]').click()
        await expect(page.locator("#detail .reports li")).to_have_count(gas["report_count"])
        await page.screenshot(path=str(screenshots / "dashboard-incident.png"))
        await page.click("#detail-close")

        flood = [i for i in incidents(admin_url, category="area_warning") if i["id"] in watch.flood_incident_ids]
        assert flood and all(i["confirmation"] and i["confirmation"]["cells"] >= 1 for i in flood)
        await page.select_option("#f-category", "area_warning")
        if any(i["area"] for i in flood):  # the pipeline makes one incident of a warning, with its area
            assert len(flood) == 1 and flood[0]["confirmation"]["cells"] >= 2
            await expect(page.locator("#map")).to_have_attribute("data-areas", re.compile(r"[1-9]\d*"))
        await page.locator(f'.row[data-id="{flood[0]["id"]}"]').click()
        confirmation = flood[0]["confirmation"]
        await expect(page.locator("#detail .confirmation")).to_contain_text(
            f"confirmed by {confirmation['confirmed']} of {confirmation['cells']} grids"
        )
        await page.screenshot(path=str(screenshots / "dashboard-area-warning.png"))

        chinese = await open_dashboard(browser, admin_url, "zh-CN")
        await chinese.click('#tabs button[data-tab="figures"]')
        accept_cells = await chinese.locator("#t-category tr td:nth-child(3)").all_inner_texts()
        assert [cell for cell in accept_cells if cell != "–"] and all(
            MINUTES.match(c) for c in accept_cells if c != "–"
        )
        await chinese.screenshot(path=str(screenshots / "dashboard-figures-zh.png"))
        assert await demo.ctrl_c() == 0
    finally:
        await demo.kill()
