"""The page in a real headless browser: Debian's chromium driven by Playwright (the ``browser`` fixture of
conftest.py), against the admin app fed from a real nats-server with synthetic incidents. The plugin panel and
10,000-incident screenshots come from here; the others from the demo (test_demo_browser.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.async_api import Page, expect
from stream_samples import (
    SAMPLE_LAYERS_TOML,
    TOKEN,
    make_incident,
    make_order,
    make_report,
    make_update,
    sample_city_places,
)

from hub.models import Category, DispatchStatus, IncidentState, Severity, utcnow
from standin_hub import StandInHub
from tests.waiting import wait_until

CATEGORIES = [
    Category.GAS_LEAK,
    Category.ELDER_FALL,
    Category.FLOODING,
    Category.NOISE,
    Category.MANHOLE_COVER,
    Category.BIN_FULL,
    Category.FIRE,
    Category.ROAD_DAMAGE,
]
SOURCES = ["iot_mqtt", "hotline_12345", "citizen_app", "eldercare"]
LEAK_ID = "inc-01M83RDEXVGSK35WXJH6BQ1900"


@pytest.fixture
def hub(tmp_path, hub_plugins) -> StandInHub:
    """The shipped sample grids (three Chengdu districts, GCJ-02) instead of the synthetic test grid."""
    config = tmp_path / "cityhub.toml"
    config.write_text(f'[admin]\ntoken = "{TOKEN}"\n\n[dashboard]\nwindow = "3650d"\n\n{SAMPLE_LAYERS_TOML}')
    return StandInHub(config, hub_plugins)


async def open_page(browser, url: str, locale: str = "en-US") -> Page:
    context = await browser.new_context(locale=locale, viewport={"width": 1600, "height": 900})
    page = await context.new_page()
    await page.goto(f"{url}/dashboard")
    await expect(page.locator("#live")).to_have_class("live on")
    return page


async def publish_city(dashboard, count: int = 40) -> None:
    """A morning's worth of incidents across the grid, some with reports, orders and updates."""
    now = utcnow()
    for number, place in enumerate(sample_city_places(count)):
        opened = now - timedelta(minutes=3 * (count - number))
        incident = make_incident(
            number,
            place=place,
            category=CATEGORIES[number % len(CATEGORIES)],
            severity=list(Severity)[number % 5],
            sources=[SOURCES[number % 4], SOURCES[(number + 1) % 4]],
            opened_at=opened,
            escalate_at=opened + timedelta(minutes=45),
            rules=[f"route-{CATEGORIES[number % 8].value}"],
            state=IncidentState.RESOLVED if number % 9 == 0 else IncidentState.OPEN,
            updated_at=opened + timedelta(minutes=17 + number % 13),
        )
        await dashboard.writer.incident(incident)
        await dashboard.writer.report(incident, make_report(incident, 1, SOURCES[number % 4], 0))
        if number % 3 == 0:
            order = make_order(incident, minutes=1, deadline_minutes=40)
            await dashboard.writer.order(order)
            await dashboard.writer.update(make_update(order, DispatchStatus.ACCEPTED, 2 + number % 5))
            if number % 9 == 0:
                await dashboard.writer.update(make_update(order, DispatchStatus.RESOLVED, 20 + number))


async def test_operator_sees_filters_opens_and_switches(dashboard, browser, screenshots):
    await publish_city(dashboard)
    await wait_until(lambda: len(dashboard.state.incidents({"status": "all"})) == 40, "40 incidents")
    page = await open_page(browser, dashboard.url)
    await expect(page.locator("#fig-open")).to_have_text(str(len(dashboard.state.incidents())))

    # A new critical gas leak appears without reloading.
    leak = make_incident(
        900,
        place=sample_city_places(1, seed=900)[0],
        category=Category.GAS_LEAK,
        severity=Severity.CRITICAL,
        sources=["iot_mqtt", "hotline_12345", "citizen_app"],
        opened_at=utcnow(),
        escalate_at=utcnow() + timedelta(minutes=10),
        rules=["gas-critical", "five-way-response"],
    )
    leak.id = LEAK_ID  # the incident page's path takes only ids of the pipeline's shape
    await dashboard.writer.incident(leak)
    for number, (source, text) in enumerate(
        [("iot_mqtt", "LEL 27%"), ("hotline_12345", "居民来电：楼道有燃气味"), ("citizen_app", "照片：燃气表附近")]
    ):
        await dashboard.writer.report(leak, make_report(leak, number, source, number * 2, text))
    order = make_order(leak, minutes=0, deadline_minutes=10, target="dept:gas")
    await dashboard.writer.order(order)
    await dashboard.writer.update(make_update(order, DispatchStatus.ACCEPTED, 1))
    row = page.locator(f'.row[data-id="{LEAK_ID}"]')
    await expect(row).to_be_visible()

    # Filter by severity and category: only matching rows remain.
    await page.select_option("#f-severity", "critical")
    await page.select_option("#f-category", "gas_leak")
    rows = page.locator(".row")
    await expect(row).to_be_visible()
    for severity in await rows.evaluate_all("rows => rows.map(r => r.dataset.severity)"):
        assert severity == "critical"

    # Open it: reports in time order, grid path, rules, the order with its countdown.
    await row.click()
    detail = page.locator("#detail")
    await expect(detail).to_be_visible()
    await expect(detail.locator(".reports li")).to_have_count(3)
    assert await detail.locator(".reports li b").all_inner_texts() == ["iot_mqtt", "hotline_12345", "citizen_app"]
    await expect(detail.locator(".grid-path li").first).to_contain_text("district")
    assert await detail.locator(".grid-path li").count() == len(leak.grid_path)
    await expect(detail.locator(".rules")).to_contain_text("five-way-response")
    await expect(detail.locator(".orders")).to_contain_text("dept:gas")
    await expect(detail.locator(".orders .countdown")).to_contain_text("in ")

    # Switch a plugin off with the admin token.
    await page.click("#detail-close")
    await page.click('#tabs button[data-tab="plugins"]')
    await page.fill("#token", TOKEN)
    await page.click("#token-form button")
    await expect(page.locator("#plugin-message")).to_have_text("Token accepted.")
    await page.click('button[data-plugin="iot_mqtt"]')
    await expect(page.locator('button[data-plugin="iot_mqtt"]')).to_have_text("Enable")
    assert dashboard.hub.plugins.is_enabled("iot_mqtt") is False
    await expect(page.locator('.plugin[data-plugin="eldercare"] .error')).to_contain_text("device registry unreachable")
    await page.screenshot(path=str(screenshots / "dashboard-plugins.png"))


async def test_chinese_labels_follow_the_browser_language(dashboard, browser):
    await publish_city(dashboard, count=12)
    await wait_until(lambda: len(dashboard.state.incidents({"status": "all"})) == 12, "12 incidents")
    page = await open_page(browser, dashboard.url, locale="zh-CN")
    await expect(page.locator("h1")).to_have_text("城运中心 · CityHub")
    await expect(page.locator('#tabs button[data-tab="figures"]')).to_have_text("指标")
    chinese_categories = re.compile("燃气泄漏|老人跌倒|积水内涝|噪音扰民|井盖异常|垃圾桶满溢|火情|道路破损")
    await expect(page.locator(".row .what").first).to_contain_text(chinese_categories)
    await page.click('#tabs button[data-tab="figures"]')
    await expect(page.locator("#t-category")).to_contain_text("燃气泄漏")


@pytest.mark.slow
async def test_ten_thousand_open_incidents_stay_a_short_document(dashboard, browser, screenshots):
    """The list is virtualised and markers are drawn on canvas: the document holds a screenful of rows."""
    places = sample_city_places(10_000)
    for number in range(10_000):
        await dashboard.writer.incident(
            make_incident(
                number,
                place=places[number],
                severity=list(Severity)[number % 5],
                category=CATEGORIES[number % len(CATEGORIES)],
            )
        )
    await wait_until(lambda: dashboard.state.figures()["open"] == 10_000, "10,000 open incidents", timeout=120)
    page = await open_page(browser, dashboard.url)
    await expect(page.locator("#list-count")).to_have_text("10000 of 10000 incidents")
    assert await page.locator(".row").count() < 60
    await page.locator("#list").evaluate(
        "list => { list.scrollTop = 46 * 5000; list.dispatchEvent(new Event('scroll')); }"
    )
    await expect(page.locator(".row").first).to_have_attribute("style", "top:" + str(46 * 4995) + "px")
    await page.screenshot(path=str(screenshots / "dashboard-10k.png"))
