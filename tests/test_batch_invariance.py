"""Every output is a function of the input and the state before it, not of where the input was cut into
batches: the same stream processed in one batch, in random batches, and in random batches with a crash
(snapshot, restore, carry on) in between gives the same set of output ids and contents. A message whose
processing raises is dead-lettered and the others get the outputs they would have had without it."""

from __future__ import annotations

import itertools
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.incidents import CategoryPolicy, MergePolicy
from hub.models import Category
from hub.pipeline import BatchProcessor, IngestMessage, IsolatingProcessor, PipelineOptions, PipelineState
from hub.pipeline import processor as processor_module
from tests.pipeline_support import area_warning, engines, event, ingest_item

RECEIVED = time.time()
CATEGORIES = [Category.GAS_LEAK, Category.SMOKE, Category.ELDER_SOS]
POISON = 999  # the event number whose processing raises (injected)
POLICY = MergePolicy(groups={"gas": ["gas_leak", "smoke"]}, default=CategoryPolicy(distance_m=150.0, window_s=120.0))


def _item(n: int, seconds: int, metres: float, category: int) -> tuple[str, bytes]:
    """One report; past the CATEGORIES, a version of one of three area warnings that expire after 200 s."""
    if category == len(CATEGORIES):
        return ingest_item(area_warning(n, warning=f"CB-{n % 3}", seconds=seconds, cells=1 + n % 3, expires_in_s=200))
    return ingest_item(event(n, seconds=seconds, offset_m=metres, category=CATEGORIES[category]))


def _stream(specs: list[tuple[int, int, float, int]]) -> list[IngestMessage]:
    """(event number, seconds after T0, metres east, category) → ingest messages; equal numbers re-send."""
    items = [_item(*spec) for spec in specs]
    return [IngestMessage(seq, subject, raw, RECEIVED) for seq, (subject, raw) in enumerate(items, start=1)]


def _processor() -> IsolatingProcessor:
    pipeline_engines = engines()
    pipeline_engines = type(pipeline_engines)(**{**pipeline_engines.__dict__, "merge_policy": POLICY})
    return IsolatingProcessor(BatchProcessor(pipeline_engines, PipelineOptions()))


def _outputs(stream: list[IngestMessage], cuts: list[int], crash_at: int | None = None) -> dict[str, bytes]:
    """Output msg id → bytes, processing ``stream`` cut at ``cuts``; at cut ``crash_at`` the state is
    snapshotted and a new process restores it, as crash recovery does."""
    isolation = _processor()
    state = PipelineState.fresh(isolation.processor.engines)
    isolation.checkpoint(state)
    outputs: dict[str, bytes] = {}
    bounds = [0, *sorted(set(cuts)), len(stream)]
    for start, end in itertools.pairwise(bounds):
        if start == crash_at:
            isolation = _processor()
            state = PipelineState.restore(state.snapshot(), isolation.processor.engines)
            isolation.checkpoint(state)
        if end > start:
            state, result = isolation.process(state, stream[start:end])
            for output in result.outputs:
                assert outputs.setdefault(output.msg_id, output.data) == output.data, (
                    f"{output.msg_id} published twice, differently"
                )
    return outputs


event_specs = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 900), st.floats(0, 400), st.integers(0, len(CATEGORIES))),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=event_specs, data=st.data())
def test_outputs_do_not_depend_on_batch_boundaries_or_a_crash(specs, data):
    stream = _stream(specs)
    whole = _outputs(stream, [])
    cuts = data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=8))
    crash_at = data.draw(st.sampled_from([None, *sorted(set(cuts))]))
    assert _outputs(stream, cuts, crash_at) == whole


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(specs=event_specs, data=st.data())
def test_a_message_that_raises_is_dead_lettered_and_the_rest_flow_on_unchanged(specs, data, monkeypatch):
    poison_at = data.draw(st.integers(0, len(specs)))
    seconds, metres = data.draw(st.integers(0, 900)), data.draw(st.floats(0, 400))
    stream = _stream([*specs[:poison_at], (POISON, seconds, metres, 0), *specs[poison_at:]])
    without = _outputs(_stream(specs), [])
    real_record_report = processor_module.record_report

    def record_report_failing_on_poison(state, report, *args):  # noqa: ANN001, ANN002, ANN202 - the stage's own signature
        if report.source_event_id == f"e-{POISON}":
            raise ValueError("injected fault")
        return real_record_report(state, report, *args)

    monkeypatch.setattr(processor_module, "record_report", record_report_failing_on_poison)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=4))
    with_poison = _outputs(stream, cuts)
    assert with_poison.pop(f"dlq:{poison_at + 1}") == stream[poison_at].data
    assert with_poison == without
