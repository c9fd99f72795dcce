"""The runnable example in docs/incidents.md runs and its assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "incidents.md"


def test_the_documented_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "docs/incidents.md has a python example"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})
