"""Offline detection: a device silent past its heartbeat interval (times a grace factor) is reported once,
and reported back online when it is heard again."""

from __future__ import annotations

import time
from collections.abc import Callable


class SilenceWatch:
    """Remembers when each device was last heard and which ones are currently reported offline."""

    def __init__(self, grace: float = 1.5, clock: Callable[[], float] = time.monotonic):
        self.grace = grace
        self.clock = clock
        self.interval_s: dict[str, float] = {}
        self.last_heard: dict[str, float] = {}
        self.offline: set[str] = set()

    def expect(self, device_id: str, interval_s: float) -> None:
        """Start watching a device; it counts as heard now, so a restart does not report everything offline."""
        self.interval_s[device_id] = interval_s
        self.last_heard.setdefault(device_id, self.clock())

    def heard(self, device_id: str) -> bool:
        """Record a message from the device; True when it was reported offline and is now back."""
        self.last_heard[device_id] = self.clock()
        if device_id in self.offline:
            self.offline.discard(device_id)
            return True
        return False

    def newly_silent(self) -> list[str]:
        """Devices that just went silent past their allowed interval (each reported once per outage)."""
        now = self.clock()
        silent = [
            device_id
            for device_id, interval in self.interval_s.items()
            if device_id not in self.offline and now - self.last_heard[device_id] > interval * self.grace
        ]
        self.offline.update(silent)
        return silent
