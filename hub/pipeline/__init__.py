"""The batch pipeline: ingest → the unified stream, incidents and dispatch orders.

One durable pull consumer reads ``cityhub.ingest.>``. Per batch::

    fetch → decode + validate → dedup → normalise coordinates (→ WGS-84) → geofence → rules
          → merge into incidents → transforms (enrich, redact) → publish outputs, await their acks → ack input

Bad input of any kind goes to ``cityhub.dlq.<source>`` with the original bytes and the reason in headers;
the good events of the same batch carry on. A message whose processing raises is isolated and dead-lettered
too (:mod:`.isolation`), and a loop that fails anyway is restarted (:mod:`.loop`).

Exactly once, across crashes. Every output is named by its input (:mod:`hub.ids`) and published with
``Nats-Msg-Id``; input is acknowledged only after every output of its batch is stored. The state that the
input builds up (dedup keys, open incidents) is snapshotted to a JetStream object store, between batches,
together with the stream sequence it covers. On start the pipeline restores the snapshot and re-reads the
ingest stream from there up to the consumer's ack floor *without publishing* (those outputs are stored),
which gives exactly the state the crashed process had; then it consumes the unacknowledged rest, whose
re-published outputs JetStream drops as duplicates. Messages at or below the last processed sequence
(redeliveries of a batch still being published) are acknowledged without processing.

The modules, in the order a message meets them: :mod:`.engines` (what the pipeline is built from),
:mod:`.batch_decode` (the Rust core decides a batch into :mod:`.columns`, :mod:`.decode` the model the rest),
:mod:`.processor`, :mod:`.batch_encode` and :mod:`.outputs`, :mod:`.state`, :mod:`.isolation`, :mod:`.recovery`,
:mod:`.loop`.
"""

from hub.pipeline.decode import DecodedBatch, IngestMessage, Rejection, decode_event, decode_events, source_of
from hub.pipeline.engines import Engines, EventTimeWindow, PipelineOptions, TransformOutcome
from hub.pipeline.isolation import IsolatingProcessor
from hub.pipeline.loop import PIPELINE_CONSUMER, SNAPSHOT_BUCKET, Pipeline
from hub.pipeline.outputs import (
    build_order,
    connector_for_target,
    dispatch_output,
    dlq_output,
    incident_output,
)
from hub.pipeline.processor import BatchProcessor, BatchResult
from hub.pipeline.recovery import SNAPSHOT_NAME, StateRebuild
from hub.pipeline.state import IncidentRecord, PipelineState

__all__ = [
    "PIPELINE_CONSUMER",
    "SNAPSHOT_BUCKET",
    "SNAPSHOT_NAME",
    "BatchProcessor",
    "BatchResult",
    "DecodedBatch",
    "Engines",
    "EventTimeWindow",
    "IncidentRecord",
    "IngestMessage",
    "IsolatingProcessor",
    "Pipeline",
    "PipelineOptions",
    "PipelineState",
    "Rejection",
    "StateRebuild",
    "TransformOutcome",
    "build_order",
    "connector_for_target",
    "decode_event",
    "decode_events",
    "dispatch_output",
    "dlq_output",
    "incident_output",
    "source_of",
]
