"""``cityhub new-connector`` makes a real package: scaffolded outside the repository, pip-installed into the venv
in use, its generated tests pass (with the fixtures of cityhub's pytest plugin), the hub lists it beside the
built-ins, and ``cityhub simulate`` feeds its connector. The package is uninstalled afterwards."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.connector_kit import running_connector
from hub.plugins import BUILTIN_PLUGINS
from hub.testing import free_port, ingested, wait_until

NAME = "smoke_panel"
DISTRIBUTION = "cityhub-smoke-panel"
CITYHUB = [sys.executable, "-m", "hub.cli"]


def run(*command: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=os.environ)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The scaffolded package, pip-installed (not editable) into this venv for the module's tests."""
    outside = tmp_path_factory.mktemp("elsewhere")
    run(*CITYHUB, "new-connector", NAME, "--dir", "pkg", cwd=outside)
    package = outside / "pkg"
    # No build isolation: hatchling comes with cityhub's dev extras, so no network is needed.
    run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-build-isolation",
        "--no-deps",
        str(package),
        cwd=outside,
    )
    importlib.invalidate_caches()
    try:
        yield package
    finally:
        run(sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", DISTRIBUTION, cwd=outside)


def test_the_generated_tests_pass_against_the_installed_package(installed_package):
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=installed_package)
    assert "3 passed" in result.stdout


def test_the_hub_lists_it_beside_the_built_ins(installed_package):
    listed = run(*CITYHUB, "plugins", "list", "--installed", cwd=installed_package.parent).stdout.splitlines()
    rows = {line.split()[0]: line.split()[1] for line in listed[1:]}
    assert rows[NAME] == "third-party"
    assert {name: rows[name] for name in BUILTIN_PLUGINS} == dict.fromkeys(BUILTIN_PLUGINS, "built-in")


async def test_cityhub_simulate_feeds_the_running_connector(installed_package, nats_url, tmp_path):
    plugin = importlib.import_module(f"cityhub_{NAME}")
    port = free_port()
    config = tmp_path / "cityhub.toml"
    config.write_text(
        f'[plugins.{NAME}]\nsecret = "s3cret"\nlisten = {{ port = {port} }}\nsimulator = {{ interval_s = 0.2 }}\n'
    )
    settings = plugin.plugin_settings_model().model_validate({"secret": "s3cret", "listen": {"port": port}})
    [connector] = plugin.register_connectors(hub=None, settings=settings)
    async with running_connector(connector, nats_url):
        simulating = await asyncio.create_subprocess_exec(*CITYHUB, "simulate", NAME, "-c", str(config), cwd=tmp_path)
        try:
            await wait_until(lambda: ingested(nats_url, NAME), "the simulator's alarms reach the ingest stream")
        finally:
            simulating.send_signal(signal.SIGINT)
            assert await simulating.wait() == 0


def test_new_connector_refuses_to_overwrite_and_bad_names(installed_package):
    again = subprocess.run(
        [*CITYHUB, "new-connector", NAME, "--dir", str(installed_package)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "not overwriting existing files" in again.stderr
    bad = subprocess.run(
        [*CITYHUB, "new-connector", "Bad-Name"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=installed_package.parent,
    )
    assert bad.returncode == 1 and "lower-case letters" in bad.stderr
