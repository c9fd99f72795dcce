"""The NATS subject contract and the JetStream streams behind it.

Subjects (token order is part of the public contract; subscribe with plain NATS wildcards):

==============================================================  =============================================
``cityhub.ingest.<source>``                                     canonical events in, from connectors or any program
``cityhub.events.<district>.<street>.<category>.<severity>``    the unified stream of enriched events
``cityhub.incidents.<district>.<category>.<change>``            incident opened / merged / updated / escalated / closed
``cityhub.dispatch.orders.<connector>``                         dispatch orders, for the connector that delivers them
``cityhub.dispatch.updates.<source>``                           dispatch status changes reported back
``cityhub.dlq.<source>``                                        rejected input: original bytes, reason in headers
``cityhub.handoff.<child>.<source>``                            events for the hub one tier down (docs/deployment.md)
``cityhub.coordination.<child>.<connector>``                    orders for a connector of the hub one tier down
``cityhub.links.<maker>.<side>.<category>``                     a cross-scope incident by hub ``<maker>``, for one side
``cityhub.raw.>``                                               raw device traffic (not CloudEvents), e.g. MQTT
==============================================================  =============================================

Inside ``cityhub.>`` every message is a CloudEvent (:mod:`hub.wire`) except under ``cityhub.raw.>``, the one
prefix for raw traffic: the embedded server's MQTT maps topic ``cityhub/raw/iot/<device>/data`` onto subject
``cityhub.raw.iot.<device>.data``.

Grid tokens are cell ids (``_`` when the location resolved to no cell on that level). Examples: every critical
event in one district: ``cityhub.events.510108.*.*.critical``; every gas leak: ``cityhub.events.*.*.gas_leak.>``.
"""

from __future__ import annotations

import re

PREFIX = "cityhub"
RAW_PREFIX = f"{PREFIX}.raw"  # raw, non-CloudEvents traffic (MQTT devices) lives under this prefix alone
RAW_TOPIC_PREFIX = RAW_PREFIX.replace(".", "/")  # the same as an MQTT topic prefix
NO_CELL = "_"

INGEST_STREAM = "CITYHUB_INGEST"
EVENTS_STREAM = "CITYHUB_EVENTS"
INCIDENTS_STREAM = "CITYHUB_INCIDENTS"
DISPATCH_STREAM = "CITYHUB_DISPATCH"
DLQ_STREAM = "CITYHUB_DLQ"
HANDOFF_STREAM = "CITYHUB_HANDOFF"  # these two only on a hub with child hubs (hub.federation.sourcing)
COORDINATION_STREAM = "CITYHUB_COORDINATION"
LINKS_STREAM = "CITYHUB_LINKS"  # on every hub among tiers

# JetStream KV bucket of one connector's durable state: this prefix + the connector's source name.
STATE_BUCKET_PREFIX = "CITYHUB_STATE_"

_UNSAFE_TOKEN = re.compile(r"[\s.*>]+")


def token(value: str | None) -> str:
    """One subject token: NATS separators and wildcards replaced, empty values shown as ``_``."""
    if not value:
        return NO_CELL
    return _UNSAFE_TOKEN.sub("-", value)


def ingest_subject(source: str) -> str:
    return f"{PREFIX}.ingest.{token(source)}"


def event_subject(district: str | None, street: str | None, category: str, severity: str) -> str:
    return f"{PREFIX}.events.{token(district)}.{token(street)}.{token(category)}.{token(severity)}"


def incident_subject(district: str | None, category: str, change: str) -> str:
    return f"{PREFIX}.incidents.{token(district)}.{token(category)}.{token(change)}"


def dispatch_order_subject(connector: str) -> str:
    return f"{PREFIX}.dispatch.orders.{token(connector)}"


def dispatch_update_subject(source: str) -> str:
    return f"{PREFIX}.dispatch.updates.{token(source)}"


def dlq_subject(source: str) -> str:
    return f"{PREFIX}.dlq.{token(source)}"


# The streams the pipeline writes to. Each also holds one fence subject: the active hub's mark, which every
# write of the active hub expects to be the latest on it (hub.availability.fence).
OUTPUT_STREAMS = (EVENTS_STREAM, INCIDENTS_STREAM, DISPATCH_STREAM, DLQ_STREAM)


def fence_subject(stream: str) -> str:
    """The fence subject of an output stream: ``cityhub.fence.<events|incidents|dispatch|dlq>``."""
    return f"{PREFIX}.fence.{stream.removeprefix(PREFIX.upper() + '_').lower()}"


def handoff_subject(child: str, source: str) -> str:
    """Where a hub puts an event for the child hub ``child`` (a district or street code)."""
    return f"{PREFIX}.handoff.{token(child)}.{token(source)}"


def link_subject(maker: str, side: str, category: str) -> str:
    """Where hub ``maker`` puts a cross-scope incident for ``side``, one of the child scopes it links."""
    return f"{PREFIX}.links.{token(maker)}.{token(side)}.{token(category)}"


def coordination_subject(child: str, connector: str) -> str:
    """Where a hub puts a dispatch order for the connector ``connector`` of the child hub ``child``."""
    return f"{PREFIX}.coordination.{token(child)}.{token(connector)}"


STREAM_SUBJECTS: dict[str, list[str]] = {  # the first subject of each is what its consumers read
    INGEST_STREAM: [f"{PREFIX}.ingest.>"],
    EVENTS_STREAM: [f"{PREFIX}.events.>", fence_subject(EVENTS_STREAM)],
    INCIDENTS_STREAM: [f"{PREFIX}.incidents.>", fence_subject(INCIDENTS_STREAM)],
    DISPATCH_STREAM: [f"{PREFIX}.dispatch.>", fence_subject(DISPATCH_STREAM)],
    DLQ_STREAM: [f"{PREFIX}.dlq.>", fence_subject(DLQ_STREAM)],
    HANDOFF_STREAM: [f"{PREFIX}.handoff.>"],
    COORDINATION_STREAM: [f"{PREFIX}.coordination.>"],
    LINKS_STREAM: [f"{PREFIX}.links.>"],
}
_STREAM_OF_KIND = {patterns[0].split(".")[1]: name for name, patterns in STREAM_SUBJECTS.items()}


def stream_of(subject: str) -> str:
    """The CityHub stream that stores ``subject`` (``cityhub.<kind>.…``)."""
    kind = subject.split(".", 2)[1] if subject.startswith(f"{PREFIX}.") else ""
    try:
        return _STREAM_OF_KIND[kind]
    except KeyError:
        raise ValueError(f"{subject!r} is not on a CityHub stream") from None


# The only <requester> tokens of cityhub.ingest.<requester> that close requests (hub.models.CloseRequest) are
# taken from: ops through the admin API, and the hub itself when a dispatch order is resolved. Grant publish
# permission on these two subjects to those parties alone.
OPS_REQUESTER = "ops"
DISPATCH_REQUESTER = "dispatch"
CLOSE_REQUESTERS = (OPS_REQUESTER, DISPATCH_REQUESTER)

# DLQ headers: the reason a message was rejected and where it came from.
HEADER_REASON = "CityHub-Reason"
HEADER_REASON_KIND = "CityHub-Reason-Kind"  # not_json, invalid, unknown_category, coordinates, oversized, ...
HEADER_ORIGINAL_SUBJECT = "CityHub-Original-Subject"
# A dead letter too large to carry its original bytes: where they are kept instead (hub.nats.sizes), and how many.
HEADER_ORIGINAL_OBJECT = "CityHub-Original-Object"  # <object store bucket>/<object name>
HEADER_ORIGINAL_SIZE = "CityHub-Original-Size"
HEADER_MSG_ID = "Nats-Msg-Id"
