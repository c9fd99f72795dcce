"""hub/_core.pyi must describe the compiled module exactly: ``mypy.stubtest`` compares the two."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_core_stub_matches_the_compiled_module(tmp_path):
    pytest.importorskip("mypy.stubtest", reason="mypy is a dev dependency")
    # Run from an empty folder so no project config or cache of the user's steers the check.
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "hub._core"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
