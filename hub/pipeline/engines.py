"""What the pipeline is built from: the consume loop's options, the event-time window and the engines that
config compiles (rules, grids, merge policy, transforms), swapped whole on reload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hub.federation.ownership import Ownership
from hub.geofence import GridIndex
from hub.incidents import MergePolicy
from hub.rules import RuleSet
from hub.taxonomy import BUILTIN_TAXONOMY, Taxonomy
from hub.transforms import Transform

DAY_S = 86_400.0


@dataclass(frozen=True)
class EventTimeWindow:
    """How far an event's own time may lie from its reception (when the ingest stream stored it). Outside
    the window an event is dead-lettered as ``time_out_of_range``, or, with ``accept_out_of_range``, kept.
    Either way the hub's clocks (dedup retention, incident expiry, ids, escalation deadlines) never run on a
    time later than the reception nor older than ``max_age_s`` before it: :meth:`clock` is what they see."""

    max_ahead_s: float = DAY_S
    max_age_s: float = 365 * DAY_S
    accept_out_of_range: bool = False
    late_after_s: float = 1800.0

    def out_of_range(self, event_time: float, received: float) -> str | None:
        """Why ``event_time`` is outside the window around ``received`` (epoch seconds), or None."""
        if event_time > received + self.max_ahead_s:
            ahead = (event_time - received) / DAY_S
            return f"{ahead:,.1f} days after its reception (at most {self._days(self.max_ahead_s)})"
        if event_time < received - self.max_age_s:
            before = (received - event_time) / DAY_S
            return f"{before:,.1f} days before its reception (at most {self._days(self.max_age_s)})"
        return None

    def clock(self, event_time: float, received: float) -> float:
        """The time the hub's clocks use for an event: its own, held inside the window's past side and never
        later than its reception (an event accepted out of range counts as late, not as a new now)."""
        return min(max(event_time, received - self.max_age_s), received)

    def is_late(self, event_time: float, received: float) -> bool:
        """Whether an event reached the hub more than ``late_after_s`` after it happened (a sensor buffer
        flushed hours later, a work order imported from last year): flagged, kept out of the figures."""
        return received - event_time > self.late_after_s

    @staticmethod
    def _days(seconds: float) -> str:
        return f"{seconds / DAY_S:g} days"


@dataclass(frozen=True)
class PipelineOptions:
    """Tuning of the consume loop (``[pipeline]`` of ``cityhub.toml``)."""

    batch_size: int = 500
    fetch_timeout_s: float = 0.2
    max_message_bytes: int = 256 * 1024
    snapshot_interval_s: float = 5.0
    ack_wait_s: float = 60.0
    event_time: EventTimeWindow = field(default_factory=EventTimeWindow)


@dataclass(frozen=True)
class Engines:
    """The config-derived parts of the pipeline, built once and swapped whole on reload between batches."""

    rules: RuleSet
    merge_policy: MergePolicy
    geofence: GridIndex | None = None
    unplaced_route: tuple[str, ...] = ("dept:district_duty",)  # route targets of events the geofence placed nowhere
    transforms: tuple[tuple[str, Transform], ...] = ()
    dedup_window_s: float = DAY_S
    dedup_max_keys: int = 1_000_000
    taxonomy: Taxonomy = BUILTIN_TAXONOMY  # the categories events may carry
    ownership: Ownership | None = None  # a hub among tiers: which events it hands down or refuses


# Told of each transform run: (plugin, transform, None) on success, the exception when it raised.
TransformOutcome = Callable[[str, Transform, BaseException | None], None]
