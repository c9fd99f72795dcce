"""Unified events encoded a batch at a time in the Rust core, from the columns of
:mod:`hub.pipeline.batch_decode`, byte for byte as :func:`hub.pipeline.outputs.event_output` encodes an
:class:`~hub.models.Event` (tests/test_batch_encode.py compares the two). The layout of ``data`` comes from
the model's JSON Schema, so a field added to the model is written without a change here."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import orjson
from pydantic import BaseModel

from hub import _core, wire
from hub.models import Event, GridCell
from hub.pipeline.batch_decode import checker_schema
from hub.pipeline.outputs import SOURCE, event_subject
from hub.publisher import Message


class EventEncoder:
    """Encodes unified events of ``model`` (the canonical :class:`Event` unless told)."""

    def __init__(self, model: type[BaseModel] = Event, time_field: str = "time"):
        self._encoder = _core.EventEncoder(orjson.dumps(checker_schema(model)).decode(), time_field, SOURCE,
                                           wire.TYPE_EVENT)

    def encode(
        self, columns: dict[str, list[Any]], ids: Sequence[str], incident_ids: Sequence[str],
        districts: Sequence[str | None], streets: Sequence[str | None], grid_cells: Sequence[str | None],
    ) -> list[Message]:
        """One message per event on ``cityhub.events.<district>.<street>.<category>.<severity>``, named by
        the event id; ``columns`` as the decoder returned them, changed by the stages (``id``, ``severity``,
        ``location.*``, ``grid_path``, redacted fields)."""
        categories, severities = columns["category"], columns["severity"]
        subjects = [event_subject(*place) for place in zip(districts, streets, categories, severities, strict=True)]
        extensions = [("category", categories), ("severity", severities), ("incidentid", incident_ids),
                      ("district", districts), ("street", streets), ("gridcell", grid_cells)]
        buffer, offsets = self._encoder.encode(columns, ids, subjects, extensions)
        view = memoryview(buffer)
        return [Message(subject, bytes(view[start:end]), event_id)
                for subject, event_id, (start, end) in zip(subjects, ids, pairwise(offsets), strict=True)]


def grid_path_json(path: Sequence[GridCell]) -> str:
    """A grid path as the ``grid_path`` column holds it."""
    return orjson.dumps([cell.model_dump() for cell in path]).decode()
