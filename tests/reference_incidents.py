"""Pure-Python references for hub.incidents, written for obviousness rather than speed: the test oracle.

ReferenceDeduper is a dict + insertion order (OrderedDict). ReferenceMerger checks every open incident for
every event (brute force), so any indexing shortcut in the Rust core has to give the same answers.
Both follow the rules documented in docs/incidents.md and core_rs/src/incidents/{dedup,merge}.rs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import xxhash

from hub.incidents import MergeInput, MergePolicy

EARTH_RADIUS_M = 6_371_008.8
SLOTS = 64
MASK64 = (1 << 64) - 1
_DROPPED = frozenset(" \t\n\r\x0b\x0c\u00a0\u3000")


def reseal(snapshot: bytes) -> bytes:
    """Recomputes a snapshot's trailing xxh3-64 checksum, so tests can feed a mutated body to the decoder."""
    body = snapshot[:-8]
    return body + xxhash.xxh3_64_intdigest(body).to_bytes(8, "little")


class ReferenceDeduper:
    """Dedup by the documented rules with an OrderedDict of key -> recorded time (oldest first)."""

    def __init__(self, window_s: float, max_keys: int) -> None:
        self.window_s, self.max_keys = window_s, max_keys
        self.live: OrderedDict[str, float] = OrderedDict()
        self.watermark = -math.inf
        self.evicted = self.expired = self.duplicates = 0

    def check(self, key: str, time: float) -> bool:
        if time > self.watermark:
            self.watermark = time
            while self.live and next(iter(self.live.values())) < time - self.window_s:
                self.live.popitem(last=False)
                self.expired += 1
        recorded = self.live.get(key)
        if recorded is not None and abs(time - recorded) <= self.window_s:
            self.duplicates += 1
            return True
        self.live.pop(key, None)
        self.live[key] = time
        if len(self.live) > self.max_keys:
            self.live.popitem(last=False)
            self.evicted += 1
        return False

    def stats(self) -> dict[str, int]:
        return {
            "live_keys": len(self.live),
            "evicted": self.evicted,
            "expired": self.expired,
            "duplicates": self.duplicates,
        }


def normalize(text: str) -> str:
    folded = (chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else c for c in text if c not in _DROPPED)
    return "".join(c.lower() if c.isascii() else c for c in folded)


def _mix(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def minhash(text: str) -> tuple[int, ...] | None:
    normalized = normalize(text)
    if not normalized:
        return None
    shingles = [normalized] if len(normalized) == 1 else [normalized[i : i + 2] for i in range(len(normalized) - 1)]
    bases = [xxhash.xxh3_64_intdigest(s.encode()) for s in shingles]
    seeds = [((slot + 1) * 0x9E3779B97F4A7C15) & MASK64 for slot in range(SLOTS)]
    return tuple(min(_mix(base ^ seed) >> 32 for base in bases) for seed in seeds)


def address_key(address: str) -> str | None:
    return normalize(address) or None


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    s_lat = math.sin(math.radians(lat2 - lat1) / 2.0)
    s_lon = math.sin(math.radians(lon2 - lon1) / 2.0)
    a = s_lat * s_lat + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * s_lon * s_lon
    return 2.0 * EARTH_RADIUS_M * math.asin(min(math.sqrt(a), 1.0))


@dataclass
class RefIncident:
    seq: int
    id: str
    category: str
    first_time: float
    last_time: float
    anchor: tuple[float, float] | None
    text_key: tuple[str, tuple[int, ...]] | None
    reports: int


class ReferenceMerger:
    """Incident merging by the documented rules, checking every open incident for every event."""

    def __init__(self, policy: MergePolicy) -> None:
        self.update_policy(policy)
        self.open: dict[int, RefIncident] = {}
        self.next_seq = 0

    def update_policy(self, policy: MergePolicy) -> None:
        self.policy = policy
        self.min_slots = max(0, math.ceil(policy.text_similarity * SLOTS - 1e-9))

    def group(self, category: str) -> str:
        for name, members in self.policy.groups.items():
            if category in members:
                return "group:" + name
        return "category:" + category

    def limits(self, category: str) -> tuple[float, float]:
        p = self.policy.per_category.get(category, self.policy.default)
        return p.distance_m, p.window_s

    def ttl(self, category: str) -> float:
        return self.policy.incident_ttl_s if self.policy.incident_ttl_s is not None else self.limits(category)[1]

    def qualifies(self, event: MergeInput, text_key, incident: RefIncident) -> bool:
        if self.group(event.category) != self.group(incident.category):
            return False
        (d1, t1), (d2, t2) = self.limits(event.category), self.limits(incident.category)
        distance, window = max(d1, d2), max(t1, t2)
        if event.time < incident.first_time - window or event.time > incident.last_time + window:
            return False
        if event.lon is not None and incident.anchor is not None:
            if haversine_m(event.lon, event.lat, *incident.anchor) <= distance:
                return True
        if text_key is not None and incident.text_key is not None and text_key[0] == incident.text_key[0]:
            matching = sum(a == b for a, b in zip(text_key[1], incident.text_key[1], strict=False))
            return matching >= self.min_slots
        return False

    def add(self, event: MergeInput) -> tuple[str, bool, int]:
        text_key = None
        if event.address is not None and event.text is not None:
            address, signature = address_key(event.address), minhash(event.text)
            if address is not None and signature is not None:
                text_key = (address, signature)
        matches = [i for i in self.open.values() if self.qualifies(event, text_key, i)]
        if matches:
            incident = min(matches, key=lambda i: i.seq)
            incident.reports += 1
            incident.first_time = min(incident.first_time, event.time)
            incident.last_time = max(incident.last_time, event.time)
            if incident.anchor is None and event.lon is not None:
                incident.anchor = (event.lon, event.lat)
            if incident.text_key is None and text_key is not None:
                incident.text_key = text_key
            return incident.id, False, incident.reports
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        open_ids = {i.id for i in self.open.values()}
        incident_id, clash = f"inc-{event.event_id}", 0
        while incident_id in open_ids:
            clash += 1
            incident_id = f"inc-{event.event_id}~{seq}" + (f".{clash}" if clash > 1 else "")
        anchor = (event.lon, event.lat) if event.lon is not None else None
        self.open[seq] = RefIncident(seq, incident_id, event.category, event.time, event.time, anchor, text_key, 1)
        return incident_id, True, 1

    def close(self, incident_id: str) -> bool:
        for seq, incident in self.open.items():
            if incident.id == incident_id:
                del self.open[seq]
                return True
        return False

    def expire_with_deadlines(self, now: float) -> list[tuple[str, float]]:
        due = sorted(
            (i.last_time + self.ttl(i.category), i.seq, i.id)
            for i in self.open.values()
            if i.last_time + self.ttl(i.category) < now
        )
        for _, seq, _ in due:
            del self.open[seq]
        return [(incident_id, deadline) for deadline, _, incident_id in due]

    def expire(self, now: float) -> list[str]:
        return [incident_id for incident_id, _ in self.expire_with_deadlines(now)]

    def add_expiring(
        self, events: list[MergeInput], watermark: float
    ) -> tuple[list[tuple[str, bool, int]], list[tuple[int, str, float]], float]:
        """Each event in order: a time past the watermark moves it and expires at it first; then the event merges."""
        results, closed = [], []
        for position, event in enumerate(events):
            if event.time > watermark:
                watermark = event.time
                closed += [(position, i, deadline) for i, deadline in self.expire_with_deadlines(watermark)]
            results.append(self.add(event))
        return results, closed, watermark
