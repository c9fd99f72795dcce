"""Turn a pytest-benchmark JSON file into BENCHMARKS.md: one table per comparison group, CityHub's
throughput beside each peer measured in the same run, as ratios.

Each benchmark declares ``benchmark.group``, ``extra_info["items"]`` (items per round),
``extra_info["role"]`` (cityhub, peer or sanity) and optionally ``extra_info["note"]``. A group whose rounds
are durations to compare (a takeover, not a throughput) says ``extra_info["measure"] = "duration"``: its table
gives each row's median and longest round, and how many times CityHub's median each row's is.

Usage: python benchmarks/report.py .benchmarks/latest.json BENCHMARKS.md
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

COMMAND = "make bench"


def label(benchmark, group: str, role: str, items: int, note: str = "", measure: str = "throughput") -> None:
    """Declare a benchmark's comparison ``group``, ``role`` (cityhub, peer or sanity), items per round, optional
    note and ``measure`` (``throughput``, or ``duration`` for rounds compared by how long they take), as this
    report reads them."""
    benchmark.group = group
    benchmark.extra_info["items"] = items
    benchmark.extra_info["role"] = role
    benchmark.extra_info["measure"] = measure
    if note:
        benchmark.extra_info["note"] = note


@dataclass(frozen=True)
class Row:
    name: str
    role: str
    items_per_s: float
    median_s: float
    note: str
    max_s: float = 0.0
    duration: bool = False  # compared by how long a round takes (lower is better), not by throughput


def load_rows(path: Path) -> tuple[dict, dict[str, list[Row]]]:
    report = orjson.loads(path.read_bytes())
    groups: dict[str, list[Row]] = {}
    for bench in report["benchmarks"]:
        info = bench.get("extra_info", {})
        median = bench["stats"]["median"]
        row = Row(
            name=bench["name"],
            role=info.get("role", "cityhub"),
            items_per_s=info.get("items", 1) / median,
            median_s=median,
            note=str(info.get("note", "")),
            max_s=bench["stats"].get("max", median),
            duration=info.get("measure") == "duration",
        )
        groups.setdefault(bench.get("group") or bench["name"], []).append(row)
    return report, groups


def best_cityhub(rows: list[Row]) -> Row | None:
    ours = [row for row in rows if row.role == "cityhub"]
    return max(ours, key=lambda row: row.items_per_s) if ours else None


def format_rate(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}/s"
    return f"{value:.1f} /s"


def group_table(title: str, rows: list[Row]) -> list[str]:
    if all(row.duration for row in rows):
        return duration_table(title, rows)
    reference = best_cityhub(rows)
    lines = [
        f"### {title}",
        "",
        "| benchmark | role | items/s | median per round | CityHub ÷ this | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda row: -row.items_per_s):
        ratio = f"{reference.items_per_s / row.items_per_s:.1f}×" if reference and row.role != "cityhub" else "—"
        rate, median = format_rate(row.items_per_s), f"{row.median_s * 1e3:.3f} ms"
        lines.append(f"| `{row.name}` | {row.role} | {rate} | {median} | {ratio} | {row.note} |")
    return [*lines, ""]


def duration_table(title: str, rows: list[Row]) -> list[str]:
    ours = [row for row in rows if row.role == "cityhub"]
    reference = min(ours, key=lambda row: row.median_s) if ours else None
    lines = [
        f"### {title}",
        "",
        "| benchmark | role | median | longest | this ÷ CityHub | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda row: row.median_s):
        ratio = f"{row.median_s / reference.median_s:.1f}×" if reference and row.role != "cityhub" else "—"
        lines.append(f"| `{row.name}` | {row.role} | {row.median_s:.2f} s | {row.max_s:.2f} s | {ratio} | {row.note} |")
    return [*lines, ""]


def render(report: dict, groups: dict[str, list[Row]]) -> str:
    machine = report.get("machine_info", {})
    header = [
        "# Benchmarks",
        "",
        f"Produced by `{COMMAND}` (pytest-benchmark; `benchmarks/report.py` renders this file) on "
        f"{report.get('datetime', '?')[:19]} — {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
        f"Python {machine.get('python_version', platform.python_version())}.",
        "Every CityHub figure is measured beside the peer a user would otherwise pick, in the same run; "
        "figures use the median round (robust to the shared machine's load spikes); 'CityHub ÷ this' is the best "
        "CityHub throughput in the group divided by that row's; in a table of durations (lower is better), 'this ÷ "
        "CityHub' is that row's median divided by CityHub's.",
        "",
    ]
    body = [line for title in sorted(groups) for line in group_table(title, groups[title])]
    return "\n".join(header + body)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    report, groups = load_rows(Path(argv[1]))
    Path(argv[2]).write_text(render(report, groups), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
