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
from dataclasses import replace

from nats.js.api import ExternalStream, StreamConfig, StreamSource, SubjectTransform

from hub import topology
from hub.federation.permissions import UNIFIED_STREAMS

HEADER_STREAM_SOURCE = "Nats-Stream-Source"  # set by the server on every message a stream sourced


def from_below(headers: Mapping[str, str] | None) -> bool:
    """Whether a stored message was sourced up from a lower tier's unified stream (that tier acts on it)."""
    origin = (headers or {}).get(HEADER_STREAM_SOURCE)
    return origin is not None and origin.split(":", 1)[0] in UNIFIED_STREAMS


def _api(domain: str) -> ExternalStream:
    return ExternalStream(api=f"$JS.{domain}.API")


def _from_parent(stream: str, kind: str, scope: str, parent: str, into: str) -> StreamSource:
    """A child's source of its own subjects (``cityhub.<kind>.<scope>.<last>``) of the parent's ``stream``,
    turned into ``<into>.<last>``."""
    return StreamSource(
        name=stream, external=_api(parent),
        subject_transforms=[SubjectTransform(src=f"{topology.PREFIX}.{kind}.{topology.token(scope)}.*",
                                             dest=f"{into}.{{{{wildcard(1)}}}}")],
    )


def federate(configs: list[StreamConfig], scope: str, parent: str | None, children: list[str]) -> list[StreamConfig]:
    """The hub's stream configs with the tier's sources — from the parent, this hub's hand-offs into its ingest
    and its coordination orders into its dispatch stream; from each child, its unified streams — and, with
    children, the two streams they source from."""
    sources = {name: [StreamSource(name=name, external=_api(child), filter_subject=topology.STREAM_SUBJECTS[name][0])
                      for child in children] for name in UNIFIED_STREAMS}  # not a child's fence marks
    if parent is not None:
        sources[topology.INGEST_STREAM] = [
            _from_parent(topology.HANDOFF_STREAM, "handoff", scope, parent, f"{topology.PREFIX}.ingest")]
        sources[topology.DISPATCH_STREAM].append(
            _from_parent(topology.COORDINATION_STREAM, "coordination", scope, parent, f"{topology.PREFIX}.dispatch.orders"))
    federated = [replace(config, sources=sources.get(config.name or "") or None) for config in configs]
    if children:
        federated += [_down_stream(configs, topology.INGEST_STREAM, topology.HANDOFF_STREAM, "hand-off of events"),
                      _down_stream(configs, topology.DISPATCH_STREAM, topology.COORDINATION_STREAM, "coordination orders")]
    if children or parent is not None:
        federated.append(_links_stream(configs, scope, parent, children))
    return federated


def _links_stream(configs: list[StreamConfig], scope: str, parent: str | None, children: list[str]) -> StreamConfig:
    """Cross-scope incidents: the ones this hub makes, the ones each child made (``cityhub.links.<child>.>``)
    and the parent's for this hub's side (``cityhub.links.<parent>.<scope>.*``). The subjects name who made a
    link, so what one hub sources from the other never comes back to it."""
    from_children = [StreamSource(name=topology.LINKS_STREAM, external=_api(child),
                                  filter_subject=f"{topology.PREFIX}.links.{topology.token(child)}.>") for child in children]
    from_parent = [StreamSource(name=topology.LINKS_STREAM, external=_api(parent),
                                filter_subject=f"{topology.PREFIX}.links.{topology.token(parent)}.{topology.token(scope)}.*")
                   ] if parent is not None else []
    model = next(config for config in configs if config.name == topology.INCIDENTS_STREAM)
    return replace(model, name=topology.LINKS_STREAM, subjects=topology.STREAM_SUBJECTS[topology.LINKS_STREAM],
                   sources=[*from_children, *from_parent] or None, description="CityHub cross-scope incidents")


def _down_stream(configs: list[StreamConfig], like: str, name: str, what: str) -> StreamConfig:
    """A stream the children source from, kept like the hub's stream ``like``: a child that is away catches up."""
    model = next(config for config in configs if config.name == like)
    return replace(model, name=name, sources=None, subjects=topology.STREAM_SUBJECTS[name],
                   description=f"CityHub {what} to the hubs one tier down")
