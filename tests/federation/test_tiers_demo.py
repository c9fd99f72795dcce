"""``cityhub demo --tiers`` as a user runs it: four hubs on their own linked servers, each tier's dashboard
printed, and the city's stream showing reports the city's channels took in, handled in a district."""

from __future__ import annotations

import asyncio

from tests.test_demo import STARTUP_WAIT_S, DemoProcess, _cityhub
from tests.waiting import wait_until

TIERS = {"city": "city", "district": "510104", "street": "510104-01"}


async def test_the_tiers_demo_hands_the_citys_reports_down_and_shows_them_at_the_city():
    process = await asyncio.create_subprocess_exec(
        _cityhub(),
        "demo",
        "--tiers",
        "--for",
        "200s",  # --for: a backstop should the test itself die
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    demo = DemoProcess(process)
    try:
        await wait_until(
            lambda: any("below: the city's unified stream" in line for line in demo.stdout),
            "the banner",
            STARTUP_WAIT_S,
        )
        for level, code in TIERS.items():
            assert any(line.split()[:3] == [level, code, "dashboard"] for line in demo.stdout), demo.stdout
        assert any(line.strip().startswith("credentials (NKey seeds):") for line in demo.stdout)
        await wait_until(
            lambda: any(
                "锦江区/" in line and ("[hotline12345]" in line or "[citizen_report]" in line) for line in demo.stdout
            ),
            "a report taken in at the city, handled by district 510104, in the city's stream",
            STARTUP_WAIT_S,
        )
        assert await demo.ctrl_c() == 0
    finally:
        await demo.kill()
