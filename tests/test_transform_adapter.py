"""A third-party transform that knows only Event objects (``apply(events)``) still works on the pipeline's
columns: it gets the batch as models and what it changes is published (docs/plugin_hooks.md)."""

from __future__ import annotations

import time

import orjson

from hub.models import Severity
from hub.pipeline import BatchProcessor, IngestMessage, PipelineOptions, PipelineState
from hub.transforms import Stage
from tests.pipeline_support import engines, event, ingest_item


class Annotate:
    """Changes events the way a plugin author would, on models."""

    name, stage, order = "annotate", Stage.TRANSFORM, 0

    def apply(self, events):  # noqa: ANN001, ANN201 - the Transform protocol
        for model in events:
            model.text = (model.text or "").upper()
            model.payload["seen_by"] = ["annotate", 1.5]
            model.address = None
        return events


class Drop:
    name, stage, order = "drop", Stage.ENRICH, 0  # runs first

    def apply(self, events):  # noqa: ANN001, ANN201
        return events[1:]


def _unified(transforms, outcomes):  # noqa: ANN001, ANN202
    pipeline_engines = engines()
    pipeline_engines = type(pipeline_engines)(**{**pipeline_engines.__dict__, "transforms": transforms})
    processor = BatchProcessor(
        pipeline_engines,
        PipelineOptions(),
        on_transform_outcome=lambda plugin, transform, exc: outcomes.append((plugin, exc)),
    )
    now = time.time()
    batch = [IngestMessage(n, *ingest_item(event(n, offset_m=n * 500)), now) for n in range(1, 4)]
    result = processor.process(PipelineState.fresh(pipeline_engines), batch)
    return [
        orjson.loads(output.data)["data"] for output in result.outputs if output.subject.startswith("cityhub.events.")
    ]


def test_a_transform_on_models_gets_events_and_its_changes_are_published():
    outcomes: list = []
    unified = _unified((("annotate", Annotate()),), outcomes)
    assert [data["text"] for data in unified] == ["ALARM 1", "ALARM 2", "ALARM 3"]
    assert all(data["payload"] == {"seen_by": ["annotate", 1.5]} and "address" not in data for data in unified)
    assert all(
        data["severity"] == Severity.CRITICAL and data["grid_path"] for data in unified
    )  # rules and geofence ran
    assert outcomes == [("annotate", None)]


def test_a_transform_that_adds_or_removes_events_fails_alone_and_the_batch_goes_on():
    outcomes: list = []
    unified = _unified((("drop", Drop()), ("annotate", Annotate())), outcomes)
    assert [data["text"] for data in unified] == ["ALARM 1", "ALARM 2", "ALARM 3"]
    assert [plugin for plugin, _ in outcomes] == ["drop", "annotate"]
    assert isinstance(outcomes[0][1], ValueError) and outcomes[1][1] is None
