"""Type stub of the private Rust extension. Kept honest by ``python -m mypy.stubtest hub._core``."""

from collections.abc import Iterable, Sequence
from typing import Any, final

from hub.incidents import DedupStats, MergerStats

__all__ = [
    "version",
    "time_ordered_ids",
    "fast_ingest_frames",
    "convert_coords",
    "GeoIndex",
    "Deduper",
    "CompiledMergePolicy",
    "IncidentMerger",
    "MergeResult",
    "CompiledRules",
    "jsonlogic_apply",
    "EventChecker",
    "rule_documents",
    "EventEncoder",
    "TextMasker",
]

def version() -> str: ...

# --- ids (core_rs/src/bindings/ids.rs) --------------------------------------------------------------------
def time_ordered_ids(times: Sequence[float], keys: Sequence[str]) -> list[str]: ...

# --- frames (core_rs/src/bindings/frames.rs) ---------------------------------------------------------------
def fast_ingest_frames(
    messages: Sequence[Any], reply_prefix: str, first: int, total: int, conditions: dict[str, str] | None = None
) -> bytes: ...

# --- geofence (core_rs/src/bindings/geo.rs) ---------------------------------------------------------------
def convert_coords(lons: object, lats: object, src: str, dst: str) -> tuple[list[float], list[float]]: ...

@final
class GeoIndex:
    @staticmethod
    def build(
        layers: Sequence[tuple[str, str, bytes, str, str, str, str, str, bool]], tolerance_m: float
    ) -> GeoIndex: ...
    def locate_many(self, lons: object, lats: object, crs: str) -> tuple[bytes, bytes, bytes, bytes]: ...
    def cells_intersecting(self, geometry: bytes, crs: str) -> list[int]: ...
    def cells_intersecting_many(self, geometries: list[bytes], crs: str) -> tuple[bytes, bytes]: ...
    def cell(self, index: int) -> tuple[str, str, str, str]: ...
    def admin_chain(self, index: int) -> list[int]: ...
    def __len__(self) -> int: ...
    @property
    def tolerance_m(self) -> float: ...
    def memory_use(self) -> dict[str, int]: ...

# --- incidents (core_rs/src/bindings/incidents.rs); public API in hub/incidents.py ---

@final
class Deduper:
    def __new__(cls, window_s: float, max_keys: int) -> Deduper: ...
    def check_many(self, keys: Iterable[str | bytes], times: Iterable[float]) -> list[bool]: ...
    def snapshot(self) -> bytes: ...
    def snapshot_delta(self) -> bytes: ...
    @staticmethod
    def restore(data: bytes, deltas: Sequence[bytes] = ...) -> Deduper: ...
    @property
    def stats(self) -> DedupStats: ...
    @property
    def window_s(self) -> float: ...
    @property
    def max_keys(self) -> int: ...

@final
class CompiledMergePolicy:
    def __new__(
        cls,
        groups: Sequence[tuple[str, Sequence[str]]],
        default: tuple[float, float],
        per_category: Sequence[tuple[str, float, float]],
        text_similarity: float,
        incident_ttl_s: float | None,
    ) -> CompiledMergePolicy: ...
    @property
    def search_radius_m(self) -> float: ...

@final
class MergeResult:
    def __new__(cls, incident_id: str, is_new: bool, report_count: int) -> MergeResult: ...
    @property
    def incident_id(self) -> str: ...
    @property
    def is_new(self) -> bool: ...
    @property
    def report_count(self) -> int: ...

@final
class IncidentMerger:
    def __new__(cls, policy: CompiledMergePolicy) -> IncidentMerger: ...
    def add_many(self, events: Iterable[tuple[object, ...]]) -> list[MergeResult]: ...
    def add_columns(
        self,
        event_ids: Iterable[str],
        times: Iterable[float],
        categories: Iterable[str],
        lons: Iterable[float | None] | None = None,
        lats: Iterable[float | None] | None = None,
        addresses: Iterable[str | None] | None = None,
        texts: Iterable[str | None] | None = None,
    ) -> tuple[list[str], list[bool], list[int]]: ...
    def add_columns_expiring(
        self,
        event_ids: Iterable[str],
        times: Iterable[float],
        categories: Iterable[str],
        lons: Iterable[float | None] | None,
        lats: Iterable[float | None] | None,
        addresses: Iterable[str | None] | None,
        texts: Iterable[str | None] | None,
        watermark: float,
    ) -> tuple[list[str], list[bool], list[int], tuple[list[int], list[str], list[float]], float]: ...
    def close(self, incident_id: str) -> bool: ...
    def expire(self, now: float) -> list[str]: ...
    def expire_with_deadlines(self, now: float) -> list[tuple[str, float]]: ...
    def update_policy(self, policy: CompiledMergePolicy) -> None: ...
    def snapshot(self) -> bytes: ...
    def snapshot_delta(self) -> bytes: ...
    @staticmethod
    def restore(data: bytes, policy: CompiledMergePolicy, deltas: Sequence[bytes] = ...) -> IncidentMerger: ...
    @property
    def stats(self) -> MergerStats: ...

# --- rules (core_rs/src/bindings/rules.rs) ---------------------------------------------------------
@final
class CompiledRules:
    """A compiled, category-indexed rule set; ``results[i]`` is returned for each match of rule ``i``."""

    def __new__(
        cls, rules: Sequence[tuple[str, int, str, str]], timezone: str, results: Sequence[Any]
    ) -> CompiledRules: ...
    def match_one(self, event: bytes, first_only: bool) -> list[Any]: ...
    def match_many(self, events: list[bytes], first_only: bool, parallel: bool) -> list[list[Any]]: ...
    def match_indices(self, events: list[bytes], first_only: bool, parallel: bool) -> tuple[bytes, bytes]: ...
    def stats(self) -> tuple[int, list[tuple[int, int]]]: ...
    def __len__(self) -> int: ...

def jsonlogic_apply(logic: str, data: str, timezone: str) -> str: ...

# --- ingest (core_rs/src/bindings/ingest.rs) -------------------------------------------------------
@final
class EventChecker:
    """The event model's JSON Schema compiled: decides batches of ingest messages into columns."""

    def __new__(cls, schema: str, source_field: str, time_field: str, event_type: str) -> EventChecker: ...
    def columns(self) -> list[tuple[str, str]]: ...
    def decode(
        self,
        payloads: Sequence[bytes],
        subjects: Sequence[str],
        received: Sequence[float],
        max_bytes: int,
        max_ahead_s: float,
        max_age_s: float,
        accept_out_of_range: bool,
    ) -> tuple[list[int], list[int], dict[str, list[Any]]]: ...

def rule_documents(
    payloads: Sequence[bytes | None], fields: Sequence[tuple[str, Sequence[str]]]
) -> list[bytes | None]: ...

# --- outputs (core_rs/src/bindings/outputs.rs) -----------------------------------------------------
@final
class EventEncoder:
    """Unified events and incident changes written from event columns, as the Python encoders wrote them."""

    def __new__(
        cls, schema: str, time_field: str, source_field: str, source_prefix: str, type_: str
    ) -> EventEncoder: ...
    def encode(
        self,
        columns: dict[str, list[Any]],
        ids: Sequence[str],
        subjects: Sequence[str],
        extensions: Sequence[tuple[str, Sequence[str | bool | None]]],
    ) -> list[bytes]: ...
    def encode_data(self, columns: dict[str, list[Any]], count: int) -> list[bytes]: ...
    def encode_incident_changes(
        self, changes: list[tuple[Any, ...]], columns: dict[str, list[Any]] | None, count: int
    ) -> list[bytes]: ...

# --- masking (core_rs/src/bindings/masking.rs) -----------------------------------------------------
@final
class TextMasker:
    """Personal data masked in free text with the caller's own (Python-syntax) patterns."""

    def __new__(cls, run: str, shapes: Sequence[tuple[str, str, str, int, int]], mask_char: str) -> TextMasker: ...
    def mask_many(self, texts: Sequence[str | None]) -> tuple[list[str | None], list[int], list[int]]: ...
