"""The cityhub command line, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cityhub(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_validate_prints_every_error_and_exits_1(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[admin]\nport = "eighty"\n\n[dedup]\nwindow = "soon"\nmax_keys = 0\n')
    result = cityhub("validate", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}:2: admin.port: Input should be a valid integer, unable to parse string as an integer",
        f"{config}:5: dedup.window: 'soon' is not a duration: write e.g. '90s', '15m', '1h30m', '2d' or seconds",
        f"{config}:6: dedup.max_keys: Input should be greater than or equal to 1",
        f"3 problem(s) in {config}",
    ]


def test_validate_summarises_a_valid_file():
    result = cityhub("validate", "cityhub.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cityhub.toml: valid. NATS: embedded nats-server;")
