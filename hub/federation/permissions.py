"""Who may read what on each tier's nats-server, as nats-server ``permissions`` blocks. The servers enforce them;
no user interface is trusted to.

- The hub user (the hub process and its connectors) may do anything on its own server.
- A scope's viewer (the screens and systems of that centre) reads, on its own hub's server, every unified
  subject: everything stored there is its scope's, because the leafnode links carry no ``cityhub.>`` subject
  (below). On the servers above it, it reads only the subjects that carry its code: a district's events and
  incidents, a street's events (incident subjects name no street). Live with a subscription, replay with a
  consumer whose filter is one of those subjects. Never ingest, the DLQ, KV buckets or object stores. Its
  replies come to an inbox prefix of its own, so it cannot read other clients' replies.
- A leafnode link carries JetStream API calls and the deliveries of stream sources between the domains, never
  a ``cityhub.>`` subject: streams on both sides listen on the same subjects, and a subject crossing the link
  would be stored on both. Events move between tiers only by stream sourcing.
"""

from __future__ import annotations

from typing import Any

from hub import topology
from hub.federation.scope import Scope

Permissions = dict[str, Any]

UNIFIED_STREAMS = (topology.EVENTS_STREAM, topology.INCIDENTS_STREAM, topology.DISPATCH_STREAM)
_UNIFIED_SUBJECTS = [f"{topology.PREFIX}.{kind}.>" for kind in ("events", "incidents", "dispatch")]


def viewer_name(scope: Scope) -> str:
    return f"view-{scope.code}"


def inbox_prefix(scope: Scope) -> str:
    """The inbox prefix a viewer's client must use (``nats.connect(inbox_prefix=...)``): its replies come there."""
    return f"_INBOX_{viewer_name(scope)}"


def scoped_subjects(scope: Scope) -> dict[str, str]:
    """The subject filter of each unified stream that holds only ``scope``'s messages, on a server above it."""
    if scope.level == "city":
        return dict(zip(UNIFIED_STREAMS, _UNIFIED_SUBJECTS, strict=True))
    if scope.level == "district":
        return {topology.EVENTS_STREAM: f"{topology.PREFIX}.events.{scope.code}.>",
                topology.INCIDENTS_STREAM: f"{topology.PREFIX}.incidents.{scope.code}.>"}
    return {topology.EVENTS_STREAM: f"{topology.PREFIX}.events.{scope.district}.{scope.code}.>"}


def viewer_permissions(viewer: Scope, server: Scope) -> Permissions:
    """What ``viewer``'s credentials may do on ``server``'s nats-server (``server`` holds ``viewer``)."""
    on_its_own = viewer == server
    subjects = dict(zip(UNIFIED_STREAMS, _UNIFIED_SUBJECTS, strict=True)) if on_its_own else scoped_subjects(viewer)
    creates = [f"$JS.API.CONSUMER.CREATE.{stream}.*.{subject}" for stream, subject in subjects.items()]
    return {
        "publish": {"allow": creates},
        "subscribe": {"allow": [*subjects.values(), f"{inbox_prefix(viewer)}.>"]},
    }


def link_permissions() -> Permissions:
    """A child hub's leafnode link into its parent's server: everything but CityHub's own subjects."""
    unified = [f"{topology.PREFIX}.>"]
    return {"publish": {"deny": unified}, "subscribe": {"deny": unified}}
