"""Ingest messages decided a batch at a time in the Rust core, into columns (:mod:`hub.pipeline.columns`)
without a pydantic model per event.

The core is handed the :class:`~hub.models.Event` model's own JSON Schema, with the categories of the runtime's
taxonomy (:mod:`hub.taxonomy`), parses every message of a batch with serde_json and *accepts* an event only
when it is already in canonical form and meets every constraint of the schema, on its own source's subject and
inside the event-time window. Every other message is *undecided* and goes through the model
(:func:`hub.pipeline.decode.decode_events`), which accepts what lax validation allows and gives each rejection
its kind and reason, exactly as the model path always did. So the fast path cannot accept what the model
refuses, by construction; the conformance test (tests/test_batch_decode.py) checks that it also normalises
every field as the model does. The events the model accepted join the others as columns, in stream order.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from hub import _core, wire
from hub.models import CloseRequest, Event
from hub.pipeline.columns import EventColumns, checker_schema, layout
from hub.pipeline.decode import DecodedBatch, IngestMessage, Rejection, decode_events
from hub.pipeline.engines import EventTimeWindow
from hub.taxonomy import BUILTIN_TAXONOMY, Taxonomy

_CATEGORY, _SEVERITY = "category", "severity"  # the fields the taxonomy decides beyond the model


@dataclass
class DecodedColumns:
    """A batch of ingest messages, decoded: the events as columns with the message each came in, the close
    requests with the number of events that precede each (the order decides what a close applies to) and the
    message each came in, and what was rejected."""

    events: EventColumns
    messages: list[IngestMessage]
    checked: list[bool] = field(default_factory=list)  # per event: accepted by the core (else by the model)
    closes: list[tuple[int, CloseRequest, str, IngestMessage]] = field(
        default_factory=list
    )  # (events before, request, requester, message)
    rejected: list[Rejection] = field(default_factory=list)


class BatchDecoder:
    """Decides batches of ingest messages against the :class:`Event` model and ``taxonomy``, as
    :func:`hub.pipeline.decode.decode_events` does: an event's category must be one of the taxonomy's, and an
    event without a severity gets its category's default severity."""

    def __init__(self, taxonomy: Taxonomy = BUILTIN_TAXONOMY):
        self.taxonomy = taxonomy
        schema = checker_schema(Event)
        schema["properties"][_CATEGORY]["enum"] = sorted(taxonomy)
        del schema["properties"][_SEVERITY]["default"]  # the taxonomy's, filled in by decode()
        self._checker = _core.EventChecker(orjson.dumps(schema).decode(), "source", "time", wire.TYPE_EVENT)
        self.layout = layout()

    def decode(self, batch: Sequence[IngestMessage], max_bytes: int, window: EventTimeWindow) -> DecodedColumns:
        accepted, undecided, fast = self.fast_path(batch, max_bytes, window)
        if not undecided:
            return DecodedColumns(fast, list(batch), [True] * len(batch))
        by_model = decode_events([batch[position] for position in undecided], max_bytes, window, self.taxonomy)
        return self._joined(batch, accepted, fast, by_model)

    def fast_path(
        self, batch: Sequence[IngestMessage], max_bytes: int, window: EventTimeWindow
    ) -> tuple[list[int], list[int], EventColumns]:
        """The positions of the messages the core accepted and of those it left undecided, and the accepted
        events as columns."""
        accepted, undecided, values = self._checker.decode(
            [message.data for message in batch],
            [message.subject for message in batch],
            [message.received for message in batch],
            max_bytes,
            window.max_ahead_s,
            window.max_age_s,
            window.accept_out_of_range,
        )
        severities = values[_SEVERITY]
        if None in severities:
            for row, (category, severity) in enumerate(zip(values[_CATEGORY], severities, strict=True)):
                if severity is None:
                    severities[row] = self.taxonomy.default_severity(category).value
        return accepted, undecided, EventColumns(self.layout, values, len(accepted))

    def _joined(
        self, batch: Sequence[IngestMessage], accepted: list[int], fast: EventColumns, by_model: DecodedBatch
    ) -> DecodedColumns:
        """The events the model accepted joined to the fast path's in stream order, and each close request
        with the number of those events before it."""
        position_of = {message.seq: position for position, message in enumerate(batch)}
        by_model_at = [position_of[message.seq] for message in by_model.messages]
        events = EventColumns.interleaved(
            self.layout, [(accepted, fast), (by_model_at, EventColumns.from_events(by_model.events, self.layout))]
        )
        kept = sorted([*accepted, *by_model_at])
        closes = [
            (bisect.bisect_left(kept, position_of[message.seq]), request, requester, message)
            for _, request, requester, message in by_model.closes
        ]
        checked = set(accepted)
        return DecodedColumns(
            events,
            [batch[position] for position in kept],
            [position in checked for position in kept],
            closes,
            by_model.rejected,
        )
