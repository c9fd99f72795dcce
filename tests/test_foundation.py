import asyncio
import os
import sys

import nats
import pytest

import hub
from hub.errors import ConfigError, HubError
from tests.waiting import wait_until


def test_core_extension_is_built_and_private():
    assert hub.core_version() == hub.__version__


def test_errors_inherit_matching_builtin():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, HubError)


async def test_embedded_nats_has_jetstream(nats_url):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="PROBE", subjects=["probe.>"])
        ack = await js.publish("probe.x", b"hello")
        assert ack.seq == 1
    finally:
        await nc.close()


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's prctl")
async def test_embedded_nats_stops_when_the_process_that_started_it_is_killed(tmp_path):
    owner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys, time; from pathlib import Path; from hub.nats.embedded import EmbeddedNats\n"
        f"server = EmbeddedNats(store_dir=Path({str(tmp_path)!r})).start()\n"
        "print(server.process.pid, flush=True); time.sleep(600)",
        stdout=asyncio.subprocess.PIPE,
    )
    server_pid = int(await owner.stdout.readline())
    owner.kill()  # SIGKILL: no chance to stop its server
    await owner.wait()

    def server_gone() -> bool:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{server_pid}/stat") as stat:  # exited but not yet reaped by init
            return stat.read().split(") ")[1].startswith("Z")

    await wait_until(server_gone, "the orphaned nats-server to stop")
