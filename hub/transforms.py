"""Pipeline transforms: objects returned by the ``register_transforms`` hook and applied per batch."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from hub.models import Event


class Stage(IntEnum):
    """Where in the pipeline a transform runs: enrichment sees personal data, redaction runs last."""

    ENRICH = 10
    TRANSFORM = 20
    REDACT = 30


class Transform(Protocol):
    """A pipeline transform. One that also defines ``apply_columns(columns)`` is given the batch as the
    pipeline's columns (:class:`hub.pipeline.columns.EventColumns`) instead, in place, without an
    :class:`Event` object per event (docs/plugin_hooks.md)."""

    name: str
    stage: Stage
    order: int

    def apply(self, events: list[Event]) -> list[Event]:
        """Return the batch, changed in place or replaced. Raising fails only this transform for this
        batch: the runtime counts the error and passes the batch on unchanged."""
        ...
