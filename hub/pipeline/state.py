"""What the input builds up — dedup keys, open incidents, the expiry watermark — with the ingest stream
sequence it covers, and its snapshot format (the object store ``CITYHUB_PIPELINE`` holds the latest)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from hub.incidents import Deduper, IncidentMerger
from hub.pipeline.engines import Engines

MAX_ORDER_REPORTS = 20  # report references an incident keeps for its dispatch orders (bounds the snapshot)


@dataclass(slots=True)
class IncidentRecord:
    """What the pipeline remembers of an open incident beyond the merger's own state."""

    category: str
    opened_at: float
    severity: int
    sources: list[str]
    dispatched: list[str]
    matched_rules: list[str]
    reports: list[list[str]] = field(default_factory=list)  # [source, source_event_id], the first MAX_ORDER_REPORTS
    district: str | None = None  # district cell id of the latest report: the subject of the closing update
    report_count: int = 0
    received_at: float | None = None  # when the hub received the opening report
    late: bool = False  # the opening report was late
    area_key: str | None = None  # an area incident's key in PipelineState.areas (hub.pipeline.areas)
    expires_at: float | None = None  # when an area incident's area expires, as its latest report says

    def dump(self) -> list[Any]:
        return [
            self.category,
            self.opened_at,
            self.severity,
            self.sources,
            self.dispatched,
            self.matched_rules,
            self.reports,
            self.district,
            self.report_count,
            self.received_at,
            self.late,
            self.area_key,
            self.expires_at,
        ]


@dataclass
class PipelineState:
    """Everything the input builds up, with the ingest stream sequence it covers."""

    deduper: Deduper
    merger: IncidentMerger
    incidents: dict[str, IncidentRecord] = field(default_factory=dict)
    last_seq: int = 0
    watermark: float = -math.inf  # the latest clock of the reports the merger saw: merged incidents expire by it
    areas: dict[str, list[Any]] = field(default_factory=dict)  # area key → [incident id, report count]
    area_watermark: float = -math.inf  # the latest clock of every report: area incidents expire by it

    @classmethod
    def fresh(cls, engines: Engines) -> PipelineState:
        return cls(Deduper(engines.dedup_window_s, engines.dedup_max_keys), IncidentMerger(engines.merge_policy))

    def snapshot(self) -> bytes:
        header = orjson.dumps(
            {
                "last_seq": self.last_seq,
                "watermark": self.watermark if math.isfinite(self.watermark) else None,
                "incidents": {key: record.dump() for key, record in self.incidents.items()},
                "areas": self.areas,
                "area_watermark": self.area_watermark if math.isfinite(self.area_watermark) else None,
            }
        )
        dedup, merger = self.deduper.snapshot(), self.merger.snapshot()
        lengths = orjson.dumps([len(header), len(dedup), len(merger)])
        return len(lengths).to_bytes(4, "big") + lengths + header + dedup + merger

    @classmethod
    def restore(cls, blob: bytes, engines: Engines) -> PipelineState:
        size = int.from_bytes(blob[:4], "big")
        header_len, dedup_len, merger_len = orjson.loads(blob[4 : 4 + size])
        start = 4 + size
        header = orjson.loads(blob[start : start + header_len])
        dedup = blob[start + header_len : start + header_len + dedup_len]
        merger = blob[start + header_len + dedup_len : start + header_len + dedup_len + merger_len]
        return cls(
            Deduper.restore(dedup),
            IncidentMerger.restore(merger, engines.merge_policy),
            {key: IncidentRecord(*value) for key, value in header["incidents"].items()},
            header["last_seq"],
            -math.inf if header.get("watermark") is None else header["watermark"],
            header.get("areas", {}),
            -math.inf if header.get("area_watermark") is None else header["area_watermark"],
        )

    def copy(self, engines: Engines) -> PipelineState:
        """An independent copy (through the snapshot format), to try a batch on without touching this one."""
        return PipelineState.restore(self.snapshot(), engines)
