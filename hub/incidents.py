"""Exact dedup and incident merging: the typed Python API over the Rust core.

:class:`Deduper` drops re-deliveries: an idempotency key seen within the window is a duplicate. Memory is
bounded (``max_keys``, oldest evicted first) and the state survives a restart through :meth:`Deduper.snapshot`.

:class:`IncidentMerger` turns reports into incidents: a report joins an open incident of a compatible category
(:class:`MergePolicy` groups) within distance D and window T, or with near-identical text at the same address.
Incident ids are ``inc-<opening event id>``, so replaying the same stream after a crash gives the same incidents.
An incident expires when no report joined it for its time-to-live; :meth:`IncidentMerger.add_columns_expiring`
expires on a watermark that each report moves, so the results do not depend on how the stream is cut into batches.

Every batch call crosses into Rust once and releases the GIL there. Rules in detail: docs/incidents.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypedDict

from hub import _core
from hub._core import MergeResult
from hub.errors import ConfigError

__all__ = [
    "CategoryPolicy",
    "DedupStats",
    "Deduper",
    "ExpiredIncidents",
    "ExpiringMerge",
    "IncidentMerger",
    "MergeBatch",
    "MergeInput",
    "MergePolicy",
    "MergeResult",
    "MergerStats",
    "idempotency_key",
]


def idempotency_key(source: str, source_event_id: str | None = None, content: bytes | None = None) -> str:
    """The dedup key of an event: ``source`` + the source's own event id, or a SHA-256 of ``content``
    (e.g. the original message bytes) when the source gives no id."""
    if source_event_id is not None:
        return f"{source}\x1f{source_event_id}"
    if content is None:
        raise ValueError("idempotency_key needs source_event_id or content")
    return f"{source}\x1f#{hashlib.sha256(content).hexdigest()}"


class DedupStats(TypedDict):
    live_keys: int
    evicted: int
    expired: int
    duplicates: int


class Deduper:
    """Exact dedup by idempotency key.

    A key is a duplicate when it was recorded less than ``window_s`` seconds (of event time) away. The newest
    time seen is the watermark; keys recorded before ``watermark - window_s`` are forgotten. At most
    ``max_keys`` (at most 2**30) keys are live; past that the oldest-recorded key is evicted and counted in ``stats``.
    Keys are stored as 16-byte xxh3-128 fingerprints, whatever their length.
    """

    __slots__ = ("_core",)

    def __init__(self, window_s: float = 86_400.0, max_keys: int = 1_000_000) -> None:
        try:
            self._core = _core.Deduper(window_s, max_keys)
        except (TypeError, OverflowError) as error:
            raise ConfigError(f"Deduper(window_s={window_s!r}, max_keys={max_keys!r}): {error}") from error

    @classmethod
    def _wrap(cls, core: _core.Deduper) -> Deduper:
        deduper = cls.__new__(cls)
        deduper._core = core
        return deduper

    def check_many(self, keys: Sequence[str | bytes], times: Sequence[float]) -> list[bool]:
        """One answer per key, True for a duplicate; the others are recorded. Times are epoch seconds."""
        return self._core.check_many(keys, times)

    def check(self, key: str | bytes, time: float) -> bool:
        """Single-key form of :meth:`check_many`."""
        return self._core.check_many((key,), (time,))[0]

    def snapshot(self) -> bytes:
        """The whole state as bytes (about 27 bytes per live key); pass to :meth:`restore`."""
        return self._core.snapshot()

    def snapshot_delta(self) -> bytes:
        """The changes since the last snapshot or delta, cheap enough to take after every batch.
        A full snapshot when there was no snapshot before (changes are logged only from the first one on)
        or more than ``max(max_keys, 65536)`` changes piled up."""
        return self._core.snapshot_delta()

    @classmethod
    def restore(cls, data: bytes, deltas: Sequence[bytes] = ()) -> Deduper:
        """Rebuilds a deduper from a full snapshot and the deltas taken after it, in order.
        Raises :class:`hub.errors.SnapshotError` for bytes that are not that."""
        return cls._wrap(_core.Deduper.restore(data, list(deltas)))

    @property
    def stats(self) -> DedupStats:
        """live_keys, evicted (by max_keys), expired (by window) and duplicates so far."""
        return self._core.stats

    @property
    def window_s(self) -> float:
        return self._core.window_s

    @property
    def max_keys(self) -> int:
        return self._core.max_keys


@dataclass(frozen=True, slots=True)
class CategoryPolicy:
    """How far (metres) and how long (seconds) apart a report and an incident may be and still merge."""

    distance_m: float = 100.0
    window_s: float = 3_600.0


@dataclass(frozen=True)
class MergePolicy:
    """Which reports merge. Validated when built; an invalid policy raises :class:`hub.errors.ConfigError`.

    groups: compatible categories, e.g. ``{"gas": ["gas_leak", "smell_gas"]}``; a category in no group
        merges only with its own category.
    default / per_category: D and T; for a report and an incident of different categories the wider applies.
    text_similarity: estimated Jaccard similarity (0..1) of character bigrams above which two texts at the
        same normalised address count as the same complaint.
    incident_ttl_s: an incident with no report for this long expires (default: the category's window);
        its deadline is its last report's time plus this.
    """

    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    default: CategoryPolicy = CategoryPolicy()
    per_category: Mapping[str, CategoryPolicy] = field(default_factory=dict)
    text_similarity: float = 0.7
    incident_ttl_s: float | None = None
    _compiled: _core.CompiledMergePolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, members in self.groups.items():
            if isinstance(members, str):
                raise ConfigError(f"groups[{name!r}]: expected a list of categories, got the string {members!r}")
        for key, value in [
            ("default", self.default),
            *((f"per_category[{n!r}]", p) for n, p in self.per_category.items()),
        ]:
            if not isinstance(value, CategoryPolicy):
                raise ConfigError(f"{key}: expected a CategoryPolicy, got {type(value).__name__}")
        try:
            compiled = _core.CompiledMergePolicy(
                [(name, list(members)) for name, members in self.groups.items()],
                (self.default.distance_m, self.default.window_s),
                [(name, p.distance_m, p.window_s) for name, p in self.per_category.items()],
                self.text_similarity,
                self.incident_ttl_s,
            )
        except TypeError as error:
            raise ConfigError(f"merge policy has a value of the wrong type: {error}") from error
        object.__setattr__(self, "_compiled", compiled)


class MergeInput(NamedTuple):
    """One report offered to the merger. ``time`` is epoch seconds; ``lon``/``lat`` WGS-84 degrees or both None."""

    event_id: str
    time: float
    category: str
    lon: float | None = None
    lat: float | None = None
    address: str | None = None
    text: str | None = None


class MergeBatch(NamedTuple):
    """Results of :meth:`IncidentMerger.add_columns`, one entry per event in each list."""

    incident_ids: list[str]
    is_new: list[bool]
    report_counts: list[int]


class ExpiredIncidents(NamedTuple):
    """The incidents a batch's moving watermark closed, one entry per incident in each list, in the order they
    closed (``zip(*closed)`` gives ``(position, incident_id, closed_at)`` triples).

    positions: the index of the event before which the incident closed.
    closed_at: the incident's deadline (its last report's time plus its time-to-live), the time it expired at.
    """

    positions: list[int]
    incident_ids: list[str]
    closed_at: list[float]


class ExpiringMerge(NamedTuple):
    """Results of :meth:`IncidentMerger.add_columns_expiring`.

    merge: one entry per event in each list, as :meth:`IncidentMerger.add_columns` gives them.
    closed: the incidents that expired during the batch.
    watermark: the newest event time seen, including earlier batches; pass it to the next batch.
    """

    merge: MergeBatch
    closed: ExpiredIncidents
    watermark: float


class MergerStats(TypedDict):
    events: int
    opened: int
    merged: int
    closed: int
    open_incidents: int


class IncidentMerger:
    """Merges reports into open incidents under a :class:`MergePolicy`.

    A report joins the open incident, opened first among those that qualify, that is in its category group,
    within the pair's window T of the incident's reports, and either within distance D of the incident's
    first located report or at the same normalised address with near-identical text. Otherwise it opens
    ``inc-<event_id>``. Closed incidents never take new reports.
    """

    __slots__ = ("_core", "_policy")

    def __init__(self, policy: MergePolicy) -> None:
        self._core = _core.IncidentMerger(policy._compiled)
        self._policy = policy

    @property
    def policy(self) -> MergePolicy:
        return self._policy

    def add(self, event: MergeInput) -> MergeResult:
        """Single-event form of :meth:`add_many`."""
        return self._core.add_many((event,))[0]

    def add_many(self, events: Sequence[MergeInput]) -> list[MergeResult]:
        """Merges the events in order. Raises :class:`hub.errors.InvalidEventError` (naming the event) for
        NaN or out-of-range coordinates, non-finite times or empty ids; then nothing of the batch was applied."""
        return self._core.add_many(events)

    def add_columns(
        self,
        event_ids: Sequence[str],
        times: Sequence[float],
        categories: Sequence[str],
        lons: Sequence[float | None] | None = None,
        lats: Sequence[float | None] | None = None,
        addresses: Sequence[str | None] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> MergeBatch:
        """Columnar form of :meth:`add_many` for large batches (no per-event Python objects either way).
        A column given as None means None for every event."""
        return MergeBatch(*self._core.add_columns(event_ids, times, categories, lons, lats, addresses, texts))

    def add_columns_expiring(
        self,
        event_ids: Sequence[str],
        times: Sequence[float],
        categories: Sequence[str],
        lons: Sequence[float | None] | None,
        lats: Sequence[float | None] | None,
        addresses: Sequence[str | None] | None,
        texts: Sequence[str | None] | None,
        watermark: float,
    ) -> ExpiringMerge:
        """:meth:`add_columns` with expiry on a running watermark, so that the results do not depend on how
        a stream is cut into batches. For each event in order: if its time is past the watermark, the
        watermark moves to it and the incidents due at it close exactly as :meth:`expire` would close them
        (listed in :attr:`ExpiringMerge.closed`, columns like :class:`MergeBatch`: no Python object per
        close); then the event merges as :meth:`add_columns` merges it.

        Pass ``-math.inf`` for the first batch and then the :attr:`ExpiringMerge.watermark` the batch before
        returned. The merger does not keep the watermark (nor do its snapshots): keep it beside them. Raises
        :class:`hub.errors.InvalidEventError` for a NaN or +inf watermark and for the events :meth:`add_many`
        refuses; then nothing of the batch was applied."""
        ids, is_new, counts, closed, watermark = self._core.add_columns_expiring(
            event_ids, times, categories, lons, lats, addresses, texts, watermark
        )
        return ExpiringMerge(MergeBatch(ids, is_new, counts), ExpiredIncidents(*closed), watermark)

    def close(self, incident_id: str) -> bool:
        """Closes an open incident; False when no open incident has that id."""
        return self._core.close(incident_id)

    def expire(self, now: float) -> list[str]:
        """Closes every incident whose last report is more than its time-to-live before ``now``, i.e. whose
        deadline is before ``now``; their ids, earliest deadline first (then the incident opened first)."""
        return self._core.expire(now)

    def expire_with_deadlines(self, now: float) -> list[tuple[str, float]]:
        """:meth:`expire`, giving ``(incident_id, closed_at)`` for each incident it closed: ``closed_at`` is
        the incident's deadline (its last report's time plus its time-to-live), the time it expired at."""
        return self._core.expire_with_deadlines(now)

    def update_policy(self, policy: MergePolicy) -> None:
        """Swaps in a new policy; open incidents stay open and follow the new rules from now on."""
        self._core.update_policy(policy._compiled)
        self._policy = policy

    def snapshot(self) -> bytes:
        """The whole state as bytes: about 55 bytes per open incident, 375 with a text signature."""
        return self._core.snapshot()

    def snapshot_delta(self) -> bytes:
        """The incidents opened, changed or closed since the last snapshot or delta; cost proportional to
        the batch, not to the open incidents. Take one after every acknowledged batch. A full snapshot
        when there was no snapshot before (changes are logged only from the first one on)."""
        return self._core.snapshot_delta()

    @classmethod
    def restore(cls, data: bytes, policy: MergePolicy, deltas: Sequence[bytes] = ()) -> IncidentMerger:
        """Rebuilds a merger from a full snapshot and the deltas taken after it, in order, under ``policy``.
        Raises :class:`hub.errors.SnapshotError` for bytes that are not that."""
        merger = cls.__new__(cls)
        merger._core = _core.IncidentMerger.restore(data, policy._compiled, list(deltas))
        merger._policy = policy
        return merger

    @property
    def stats(self) -> MergerStats:
        """events, opened, merged, closed so far, and open_incidents now."""
        return self._core.stats
