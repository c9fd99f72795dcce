"""examples/consume.py, run as a user would, against a real nats-server holding the unified stream."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from stream_samples import make_incident, make_report

from hub.models import Category, Severity

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consume.py"


async def test_example_consumer_replays_and_filters_by_severity(nats_url, writer):
    leak = make_incident(1, category=Category.GAS_LEAK, severity=Severity.CRITICAL)
    noise = make_incident(2, cell=7, category=Category.NOISE, severity=Severity.LOW)
    await writer.report(leak, make_report(leak, 1, "iot_mqtt", 0, "LEL 27%"))
    await writer.report(noise, make_report(noise, 1, "hotline_12345", 1, "广场舞噪音"))
    await writer.report(leak, make_report(leak, 2, "hotline_12345", 2, "楼道有燃气味"))

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--server",
        nats_url,
        "--subject",
        "cityhub.events.>",
        "--since",
        "1d",
        "--severity",
        "critical",
        "--count",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert len(lines) == 2
    assert all("cityhub.event critical gas_leak INC000001" in line for line in lines)
    assert lines[0].endswith("LEL 27%") and lines[1].endswith("楼道有燃气味")


async def test_example_consumer_reports_unreadable_messages_and_goes_on(nats_url, writer):
    await writer.raw("cityhub.events.x.y.gas_leak.high", b"{not json")
    leak = make_incident(3, category=Category.GAS_LEAK, severity=Severity.CRITICAL)
    await writer.report(leak, make_report(leak, 1, "iot_mqtt", 0, "LEL 31%"))

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--server",
        nats_url,
        "--since",
        "1h",
        "--count",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert "unreadable message on cityhub.events.x.y.gas_leak.high" in stderr.decode()
    assert stdout.decode().strip().endswith("LEL 31%")
