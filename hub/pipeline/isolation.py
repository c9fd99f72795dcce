"""Poison isolation: no message whose processing raises can stop the pipeline.

A batch that raises has left the state half updated. The state is rebuilt from the last checkpoint (the
state at the last snapshot, in the snapshot format) and the parts processed since (a journal of the
batches, in order), then the batch is processed again in halves, each on a copy of the state, down to the
single messages that raise. Those go to the DLQ as ``internal_error`` with the exception and where it was
raised; every other message is processed in order, with the results it would have had without them (the
processor's outputs do not depend on where a batch is cut).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence

from hub.pipeline.decode import IngestMessage, Rejection
from hub.pipeline.outputs import dlq_output
from hub.pipeline.processor import BatchProcessor, BatchResult
from hub.pipeline.state import PipelineState

log = logging.getLogger("cityhub.pipeline")

JOURNAL_LIMIT = 50_000  # messages journaled before the next checkpoint is taken in memory


class IsolatingProcessor:
    """:class:`BatchProcessor` behind a wall: :meth:`process` never raises for what one message holds."""

    def __init__(self, processor: BatchProcessor):
        self.processor = processor
        self._checkpoint: bytes | None = None
        self._journal: list[Sequence[IngestMessage]] = []
        self._journaled = 0
        self.poisoned = 0  # messages dead-lettered as internal_error so far

    def checkpoint(self, state: PipelineState, snapshot: bytes | None = None) -> None:
        """Remember ``state`` (``snapshot`` is its snapshot when the caller has one) as the point to rebuild from."""
        self._checkpoint = snapshot if snapshot is not None else state.snapshot()
        self._journal.clear()
        self._journaled = 0

    def process(self, state: PipelineState, batch: Sequence[IngestMessage]) -> tuple[PipelineState, BatchResult]:
        """The state after ``batch`` (``state`` itself, or a rebuilt one) and what the batch produced."""
        try:
            result = self.processor.process(state, batch)
        except Exception:
            log.exception(
                "a batch of %d messages (stream sequences %d..%d) raised; isolating the messages that raise",
                len(batch),
                batch[0].seq,
                batch[-1].seq,
            )
            return self._isolated(self._rebuilt(), batch)
        self._journal_part(state, batch)
        return state, result

    def _rebuilt(self) -> PipelineState:
        """The state before the failed batch: the checkpoint with the journal processed again."""
        engines = self.processor.engines
        state = PipelineState.restore(self._checkpoint, engines) if self._checkpoint else PipelineState.fresh(engines)
        for part in self._journal:
            self.processor.process(state, part)
        return state

    def _isolated(self, state: PipelineState, batch: Sequence[IngestMessage]) -> tuple[PipelineState, BatchResult]:
        result = BatchResult()
        pending = [batch]
        while pending:
            part = pending.pop(0)
            trial = state.copy(self.processor.engines)
            try:
                part_result = self.processor.process(trial, part)
            except Exception as exc:
                if len(part) > 1:
                    middle = len(part) // 2
                    pending[:0] = [part[:middle], part[middle:]]
                else:
                    self._dead_letter(part[0], exc, result)
                continue
            state = trial
            self._journal_part(state, part)
            result.extend(part_result)
        return state, result

    def _dead_letter(self, message: IngestMessage, exc: Exception, result: BatchResult) -> None:
        reason = f"processing raised {type(exc).__name__}: {exc} ({_where(exc)})"
        log.error("poison message at stream sequence %d on %s dead-lettered: %s", message.seq, message.subject, reason)
        rejection = Rejection(message.data, message.subject, "internal_error", reason, message.seq)
        result.rejected.append(rejection)
        result.outputs.append(dlq_output(rejection))
        self.poisoned += 1

    def _journal_part(self, state: PipelineState, part: Sequence[IngestMessage]) -> None:
        self._journal.append(part)
        self._journaled += len(part)
        if self._journaled >= JOURNAL_LIMIT:
            self.checkpoint(state)


def _where(exc: BaseException) -> str:
    """File, line and function where ``exc`` was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "no traceback"
    last = frames[-1]
    return f"{_short(last.filename)}:{last.lineno} in {last.name}"


def _short(filename: str) -> str:
    """A source path from its package root on (``hub/pipeline/outputs.py``), not the install location."""
    parts = filename.replace("\\", "/").split("/")
    for root in ("hub", "plugins", "connectors"):
        if root in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(root) :])
    return parts[-1]
