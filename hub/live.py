"""The live engine of a running pipeline, replaced atomically on hot reload."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

EngineT = TypeVar("EngineT")


class LiveEngine(Generic[EngineT]):
    """Holds one engine (grid index, rule set). :meth:`swap` replaces it atomically: work that already
    fetched :attr:`current` finishes on the old engine, everything later sees the new one."""

    def __init__(self, engine: EngineT):
        self._current = engine
        self._swap_lock = threading.Lock()

    @property
    def current(self) -> EngineT:
        return self._current

    def swap(self, new: EngineT) -> EngineT:
        """Installs ``new`` and returns the engine it replaced."""
        with self._swap_lock:
            old, self._current = self._current, new
        return old
