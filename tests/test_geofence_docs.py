"""The example in docs/geofence.md runs as written (from the repository root)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_example_runs(capsys):
    text = (ROOT / "docs" / "geofence.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(example, "docs/geofence.md", "exec"), {})
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert "锦江区" in printed and "micro_grid 510104-" in printed
