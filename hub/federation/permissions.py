"""Who may read what on each tier's nats-server, as nats-server ``permissions`` blocks. The servers enforce them;
no user interface is trusted to.

- The hub user (the hub process and its connectors) may do anything on its own server.
- A scope's viewer (the screens and systems of that centre) reads, on its own hub's server, every unified
  subject: everything stored there is its scope's, because the leafnode links carry no ``cityhub.>`` subject
  (below). On the servers above it, it reads only the subjects that carry its code: a district's events and
  incidents, a street's events (incident subjects name no street). Live with a subscription, replay with a
  consumer whose filter is one of those subjects. Never ingest, the DLQ, KV buckets or object stores. Its
  replies come to an inbox prefix of its own, so it cannot read other clients' replies.
- A leafnode link carries what the two servers' stream sourcing needs and nothing else: the consumers each
  server creates on the other's streams, for exactly the streams and filters it sources
  (:mod:`hub.federation.sourcing`), and the messages that carry the sourced data, its flow control and the
  API's replies. Every hub's server has streams on the same subjects — ``cityhub.>``, and the KV buckets'
  ``$KV.>``, object stores' ``$O.>`` and consumers' acks ``$JS.ACK.>`` of same-named buckets and consumers —
  so any of them crossing the link would be stored, or acknowledged, on both sides: one tier's lease,
  snapshot or acks landing in the other's. Events move between tiers only by stream sourcing.
"""

from __future__ import annotations

from typing import Any

from hub import topology
from hub.federation.scope import Scope
from hub.federation.sourcing import UNIFIED_STREAMS, Read, reads_of_parent

Permissions = dict[str, Any]

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
        return {
            topology.EVENTS_STREAM: f"{topology.PREFIX}.events.{scope.code}.>",
            topology.INCIDENTS_STREAM: f"{topology.PREFIX}.incidents.{scope.code}.>",
        }
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


# What carries sourcing between two servers: the deliveries of a source's consumer ($JS.S), their flow control
# ($JS.FC), the servers' replies to each other's API calls ($JSC.R) and clients' replies (_INBOX: a request to
# the other domain's $JS.<domain>.API.INFO, the link's health check).
_SOURCING_CARRIERS = ["$JS.S.>", "$JS.FC.>", "$JSC.R.>", "_INBOX.>"]


def link_permissions(child: Scope, parent: Scope) -> Permissions:
    """The leafnode link of ``child``'s hub into ``parent``'s server (the user the link authenticates as there).
    Publish is what the link may bring into the parent's server: the consumer creations of the child's sources
    of the parent's streams, each for the child's own subjects only (so a district's link cannot read another
    district's hand-offs), and the health check of the parent's API. Subscribe is what it may take out: the
    child's JetStream API, which the parent's sources call (the child's server announces its API as one
    wildcard interest, ``$JS.<domain>.API.>``, so nothing narrower would reach it). Both: the messages that
    carry sourcing."""
    into_parent = [_consumer_create(parent.domain, read) for read in reads_of_parent(child.code, parent.code)]
    return {
        "publish": {"allow": [*into_parent, f"$JS.{parent.domain}.API.INFO", *_SOURCING_CARRIERS]},
        "subscribe": {"allow": [f"$JS.{child.domain}.API.>", *_SOURCING_CARRIERS]},
    }


def _consumer_create(domain: str, read: Read) -> str:
    """The API call that creates a source's consumer, filtered to ``read.subjects``, on ``domain``'s stream."""
    return f"$JS.{domain}.API.CONSUMER.CREATE.{read.stream}.*.{read.subjects}"
