"""How events move between tiers: by JetStream stream sourcing across the hubs' domains, never by a process
of ours relaying messages.

- **Down.** A hub with children keeps a hand-off stream, ``CITYHUB_HANDOFF`` on ``cityhub.handoff.<child>.<source>``:
  its pipeline puts there each event located in a child's scope, with the event's own ``Nats-Msg-Id``. Each
  child's ingest stream sources its own subjects of it from the parent's domain, turned back into
  ``cityhub.ingest.<source>`` by a subject transform, so the child's pipeline takes it like any input. The
  source remembers its position in the parent's stream across restarts and broken links, and what it
  delivers twice the ingest stream's duplicate window drops by ``Nats-Msg-Id`` (the pipeline's dedup after it).
- **Coordination down.** A hub with children keeps ``CITYHUB_COORDINATION`` on
  ``cityhub.coordination.<child>.<connector>``: a dispatch order published there (the city's joint-response
  orders) reaches ``cityhub.dispatch.orders.<connector>`` of the child hub, whose dispatch stream sources it,
  so the child's connector delivers it and its escalator follows its deadline.
- **Up.** A hub with children sources each child's events, incidents and dispatch streams into its own, on the
  same subjects: a consumer of the city sees the whole city. A sourced message carries the
  ``Nats-Stream-Source`` header naming the stream it came from; the hub acts (escalates, delivers orders) on
  none that came from a lower tier's unified stream: that tier acts on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from nats.js.api import ExternalStream, StreamConfig, StreamSource, SubjectTransform

from hub import topology

HEADER_STREAM_SOURCE = "Nats-Stream-Source"  # set by the server on every message a stream sourced
UNIFIED_STREAMS = (topology.EVENTS_STREAM, topology.INCIDENTS_STREAM, topology.DISPATCH_STREAM)


@dataclass(frozen=True)
class Read:
    """One stream of a hub one tier away that a hub sources, through ``subjects`` (the filter of the consumer
    its server creates there: ``$JS.<domain>.API.CONSUMER.CREATE.<stream>.<name>.<subjects>``), into its own
    stream ``into``, with ``<rename>.<last token>`` as subject when ``rename`` is set."""

    stream: str
    subjects: str
    into: str
    rename: str | None = None


def reads_of_parent(scope: str, parent: str) -> list[Read]:
    """What a hub sources from its parent's domain: the events handed down to it (into its ingest), the
    coordination orders for it (into its dispatch stream) and the parent's links on its side."""
    own = topology.token(scope)
    return [
        Read(
            topology.HANDOFF_STREAM,
            f"{topology.PREFIX}.handoff.{own}.*",
            topology.INGEST_STREAM,
            f"{topology.PREFIX}.ingest",
        ),
        Read(
            topology.COORDINATION_STREAM,
            f"{topology.PREFIX}.coordination.{own}.*",
            topology.DISPATCH_STREAM,
            f"{topology.PREFIX}.dispatch.orders",
        ),
        Read(topology.LINKS_STREAM, f"{topology.PREFIX}.links.{topology.token(parent)}.{own}.*", topology.LINKS_STREAM),
    ]


def reads_of_child(child: str) -> list[Read]:
    """What a hub sources from each child's domain: its unified streams (not their fence marks) and the links
    it made."""
    unified = [Read(name, topology.STREAM_SUBJECTS[name][0], name) for name in UNIFIED_STREAMS]
    return [
        *unified,
        Read(topology.LINKS_STREAM, f"{topology.PREFIX}.links.{topology.token(child)}.>", topology.LINKS_STREAM),
    ]


def from_below(headers: Mapping[str, str] | None) -> bool:
    """Whether a stored message was sourced up from a lower tier's unified stream (that tier acts on it)."""
    origin = (headers or {}).get(HEADER_STREAM_SOURCE)
    return origin is not None and origin.split(":", 1)[0] in UNIFIED_STREAMS


def _source(read: Read, domain: str) -> StreamSource:
    external = ExternalStream(api=f"$JS.{domain}.API")
    if read.rename is None:
        return StreamSource(name=read.stream, external=external, filter_subject=read.subjects)
    return StreamSource(
        name=read.stream,
        external=external,
        subject_transforms=[SubjectTransform(src=read.subjects, dest=f"{read.rename}.{{{{wildcard(1)}}}}")],
    )


def federate(configs: list[StreamConfig], scope: str, parent: str | None, children: list[str]) -> list[StreamConfig]:
    """The hub's stream configs with the tier's sources — from the parent, this hub's hand-offs into its ingest,
    its coordination orders into its dispatch stream and the parent's links on its side; from each child, its
    unified streams and its links — and, with children, the two streams they source from, and with a parent or
    children the links stream."""
    reads = [(read, child) for child in children for read in reads_of_child(child)]
    reads += [(read, parent) for read in reads_of_parent(scope, parent)] if parent is not None else []
    sources: dict[str, list[StreamSource]] = {}
    for read, domain in reads:
        sources.setdefault(read.into, []).append(_source(read, domain))
    federated = [replace(config, sources=sources.get(config.name or "") or None) for config in configs]
    if children:
        federated += [
            _down_stream(configs, topology.INGEST_STREAM, topology.HANDOFF_STREAM, "hand-off of events"),
            _down_stream(configs, topology.DISPATCH_STREAM, topology.COORDINATION_STREAM, "coordination orders"),
        ]
    if children or parent is not None:
        federated.append(_links_stream(configs, sources.get(topology.LINKS_STREAM)))
    return federated


def _links_stream(configs: list[StreamConfig], sources: list[StreamSource] | None) -> StreamConfig:
    """Cross-scope incidents: the ones this hub makes, the ones each child made (``cityhub.links.<child>.>``)
    and the parent's for this hub's side (``cityhub.links.<parent>.<scope>.*``). The subjects name who made a
    link, so what one hub sources from the other never comes back to it."""
    model = next(config for config in configs if config.name == topology.INCIDENTS_STREAM)
    return replace(
        model,
        name=topology.LINKS_STREAM,
        subjects=topology.STREAM_SUBJECTS[topology.LINKS_STREAM],
        sources=sources,
        description="CityHub cross-scope incidents",
    )


def _down_stream(configs: list[StreamConfig], like: str, name: str, what: str) -> StreamConfig:
    """A stream the children source from, kept like the hub's stream ``like``: a child that is away catches up."""
    model = next(config for config in configs if config.name == like)
    return replace(
        model,
        name=name,
        sources=None,
        subjects=topology.STREAM_SUBJECTS[name],
        description=f"CityHub {what} to the hubs one tier down",
    )
