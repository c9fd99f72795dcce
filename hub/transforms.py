"""Pipeline transforms: objects returned by the ``register_transforms`` hook and applied per batch.

A transform may also offer ``apply_columns(columns: dict[str, list]) -> None``, changing the batch in place
as the pipeline's column path holds it (``hub.pipeline.batch_decode``: ``text``, ``reporter.phone``, ...;
``payload`` and other nested values as JSON text written as pydantic writes them). Batches run through the
column path, without an :class:`Event` per event, only when every transform offers it; otherwise the batch
gets :class:`Event` objects as before (docs/runtime.md, "The column path")."""

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
    name: str
    stage: Stage
    order: int

    def apply(self, events: list[Event]) -> list[Event]:
        """Return the batch, changed in place or replaced. Raising fails only this transform for this
        batch: the runtime counts the error and passes the batch on unchanged."""
        ...
