"""No value from outside can forge a log line: the handler every CityHub process installs escapes control
characters in records and in the messages of logged exceptions, and keeps tracebacks readable. Checked on the
handler in a process of its own, and on a real ``cityhub run`` fed through its admin API and NATS."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import nats
import orjson

from hub.control_characters import escaped
from tests.pipeline_support import hub_toml
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
FORGED = "2026-12-06 10:00:00,000 ERROR cityhub: forged"
# every character str.splitlines() breaks on, and ESC (terminal control)
BREAKERS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x1b[2J"]


def test_escaped_writes_each_control_character_as_its_escape():
    assert escaped("a\r\nb\x85c\u2028d\x1b[2Je\x7f\tf\\n") == "a\\r\\nb\\x85c\\u2028d\\x1b[2Je\\x7f\\tf\\n"
    assert escaped("line\nbreak\r", keep="\n") == "line\nbreak\\r"
    assert escaped("城市 ops ✓") == "城市 ops ✓"


def test_the_configured_handler_keeps_every_record_on_its_own_line_and_tracebacks_readable():
    script = textwrap.dedent(f"""
        import logging
        from hub.logs import configure_logging
        configure_logging(logging.INFO)
        log = logging.getLogger("cityhub.test")
        for breaker in {BREAKERS!r}:
            log.warning("incident %s closed", "inc-1" + breaker + {FORGED!r})
        try:
            try:
                raise KeyError("inner" + "\\n" + {FORGED!r})
            except KeyError as inner:
                raise ValueError("bad id" + "\\r\\n" + {FORGED!r}) from inner
        except ValueError:
            log.exception("close failed for %s", "x" + "\\u2028" + {FORGED!r})
    """)
    logged = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, check=True).stderr.decode()
    lines = logged.splitlines()  # breaks on every one of BREAKERS
    records = [line for line in lines if RECORD_START.match(line)]
    assert len(records) == len(BREAKERS) + 1 and not any(line.startswith(FORGED) for line in lines)
    assert records[0].endswith(f"cityhub.test: incident inc-1\\r\\n{FORGED} closed")
    assert records[-1].endswith(f"cityhub.test: close failed for x\\u2028{FORGED}")
    traceback = lines[lines.index(records[-1]) + 1 :]
    assert traceback[0] == "Traceback (most recent call last):" and traceback[1].startswith('  File "<string>", line')
    assert f"KeyError: 'inner\\n{FORGED}'" in traceback  # the repr of a KeyError's key escapes it already
    assert "The above exception was the direct cause of the following exception:" in traceback
    assert traceback[-1] == f"ValueError: bad id\\r\\n{FORGED}"


async def test_outside_values_reach_the_log_of_cityhub_run_escaped(tmp_path, nats_url):
    config, log_file = tmp_path / "cityhub.toml", tmp_path / "hub.log"
    config.write_text(hub_toml(nats_url, token="log-token"))
    with log_file.open("wb") as stderr:
        hub = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run", "-c", str(config)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "CITYHUB_PLUGINS": "redaction"},
        )  # no connector processes
    try:
        await wait_until(lambda: "hub started" in log_file.read_text(), "the hub to start")
        admin_url = re.search(r"admin (http://\S+)", log_file.read_text()).group(1)
        auth = {"Authorization": "Bearer log-token"}
        incident = "inc-01M83RDEXVGSK35WXJH6BQ1DDC"
        async with httpx.AsyncClient(base_url=admin_url) as client:
            forged_id = await client.post(
                f"/incidents/{incident}%0D%0A{FORGED}/close", json={"reason": "x"}, headers=auth
            )
            unknown = await client.post(
                f"/incidents/{incident}/close", json={"reason": f"dup\r\n{FORGED}"}, headers=auth
            )
        assert forged_id.status_code == 422 and unknown.status_code == 202
        forged_source = "evil\u2028" + FORGED.replace(" ", "_") + "\x85\x1b[2J"  # a subject holds no spaces
        client_nc = await nats.connect(nats_url)
        await client_nc.jetstream().publish(
            f"cityhub.ingest.{forged_source}",
            orjson.dumps({"source": "iot_mqtt", "category": "fire", "time": "2026-05-01T08:00:00Z"}),
        )
        await client_nc.close()
        await wait_until(
            lambda: "rejected to DLQ" in log_file.read_text() and "not an open incident" in log_file.read_text(),
            "both to be logged",
        )
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=60)
    logged = log_file.read_text()
    assert all(RECORD_START.match(line) for line in logged.splitlines()), logged
    assert f"source={escaped(forged_source)} kind=source_mismatch" in logged
    assert f"close request for {incident} from ops: not an open incident" in logged
