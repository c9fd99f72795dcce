"""How events move between tiers: by JetStream stream sourcing across the hubs' domains, never by a process
of ours relaying messages.

- **Down.** A hub with children keeps a hand-off stream, ``CITYHUB_HANDOFF`` on ``cityhub.handoff.<child>.<source>``:
  its pipeline puts there each event located in a child's scope, with the event's own ``Nats-Msg-Id``. Each
  child's ingest stream sources its own subjects of it from the parent's domain, turned back into
  ``cityhub.ingest.<source>`` by a subject transform, so the child's pipeline takes it like any input. The
  source remembers its position in the parent's stream across restarts and broken links, and what it
  delivers twice the ingest stream's duplicate window drops by ``Nats-Msg-Id`` (the pipeline's dedup after it).
- **Up.** A hub with children sources each child's events, incidents and dispatch streams into its own, on the
  same subjects: a consumer of the city sees the whole city. A sourced message carries the
  ``Nats-Stream-Source`` header; the hub acts (escalates, delivers orders) only on its own, the tier below
  acts on the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from nats.js.api import ExternalStream, StreamConfig, StreamSource, SubjectTransform

from hub import topology
from hub.federation.permissions import UNIFIED_STREAMS

HEADER_STREAM_SOURCE = "Nats-Stream-Source"  # set by the server on every message a stream sourced


def sourced(headers: Mapping[str, str] | None) -> bool:
    """Whether a stored message came from another tier's stream (that tier acts on it, not this one)."""
    return bool(headers) and HEADER_STREAM_SOURCE in headers  # type: ignore[operator]


def _api(domain: str) -> ExternalStream:
    return ExternalStream(api=f"$JS.{domain}.API")


def handoff_source(scope: str, parent: str) -> StreamSource:
    """The child's ingest stream's source: its own subjects of the parent's hand-off stream, as ingest."""
    return StreamSource(
        name=topology.HANDOFF_STREAM, external=_api(parent),
        subject_transforms=[SubjectTransform(src=f"{topology.PREFIX}.handoff.{topology.token(scope)}.*",
                                             dest=f"{topology.PREFIX}.ingest.{{{{wildcard(1)}}}}")],
    )


def federate(configs: list[StreamConfig], scope: str, parent: str | None, children: list[str]) -> list[StreamConfig]:
    """The hub's stream configs with the tier's sources added, and the hand-off stream when it has children
    (kept like the ingest stream: a child that is away catches up from it)."""
    sources: dict[str, list[StreamSource]] = {}
    if parent is not None:
        sources[topology.INGEST_STREAM] = [handoff_source(scope, parent)]
    for name in UNIFIED_STREAMS if children else ():
        sources[name] = [StreamSource(name=name, external=_api(child)) for child in children]
    federated = [replace(config, sources=[*(config.sources or []), *sources.get(config.name, [])] or None)
                 for config in configs]
    if children:
        ingest = next(config for config in configs if config.name == topology.INGEST_STREAM)
        federated.append(replace(ingest, name=topology.HANDOFF_STREAM, sources=None,
                                 subjects=topology.STREAM_SUBJECTS[topology.HANDOFF_STREAM],
                                 description="CityHub hand-off to the hubs one tier down"))
    return federated
