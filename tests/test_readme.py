"""The README's Python example runs as written, so the front page cannot drift from the API."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_core_example_runs(monkeypatch):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "GridIndex" in block)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["where"].admin_path[0].name == "锦江区"
    assert namespace["rules"].match(
        {"category": "gas_leak", "payload": {"lel_pct": 30}, "time": "2026-01-01T23:00:00+08:00"}
    )
