"""The seam between a connector and the hub.

A connector turns one external system's messages into canonical :class:`~hub.models.Event` and publishes them
through its :class:`ConnectorContext` to ``cityhub.ingest.<source>``; it never calls the pipeline. Outbound
traffic (dispatch orders, status updates, reports upward) reaches it through :meth:`Connector.deliver`,
fed from a durable JetStream consumer, so nothing waiting to go out is lost while the external system is down:
``deliver`` raises and the runtime redelivers with backoff.

The runtime runs each connector in its own process (see ``hub.supervisor``), so a connector that blocks its
event loop or crashes cannot stall the pipeline.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from hub.models import DispatchOrder, DispatchUpdate, Event


class StateStore(Protocol):
    """Small durable key/value state for a connector (cursors, last-seen times); JetStream KV backed."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...


class ConnectorContext(Protocol):
    """What the runtime gives a running connector."""

    source: str
    log: logging.Logger
    state: StateStore

    async def publish(self, event: Event) -> None:
        """Publish one canonical event to ``cityhub.ingest.<source>`` and wait for JetStream's ack.
        The message id (``Nats-Msg-Id``) is derived from ``(source, source_event_id, status)``: a status change
        of the same report is a new message, a re-delivery is not (``hub.ids.idempotency_key``)."""
        ...

    async def publish_update(self, update: DispatchUpdate) -> None:
        """Publish a dispatch status change reported by the external system."""
        ...

    async def reject(self, raw: bytes, reason: str, kind: str = "invalid", subject: str | None = None) -> None:
        """Send input the connector cannot use to ``cityhub.dlq.<source>``, with the same headers as the
        pipeline's dead letters: the reason in the sender's words (``CityHub-Reason``), its ``kind``
        (``CityHub-Reason-Kind``: ``invalid``, ``missing_field``, ``unknown_category``, ``oversized``,
        ``unauthorized``, ...) and the NATS subject the input came from or was bound for
        (``CityHub-Original-Subject``: by default ``cityhub.ingest.<source>``)."""
        ...

    def count(self, name: str, amount: int = 1) -> None:
        """Increment this connector's counter ``name`` (exposed on ``/metrics``)."""
        ...


class Connector(ABC):
    """Base of every connector. Subclasses set ``source`` and implement :meth:`run`."""

    source: ClassVar[str]
    #: Subjects whose messages :meth:`deliver` receives. Empty: the connector's own dispatch orders
    #: (``cityhub.dispatch.orders.<source>``). A northbound reporter lists e.g. ``("cityhub.incidents.>",)``;
    #: each subject gets its own durable consumer on the stream that holds it.
    outbound_subjects: ClassVar[tuple[str, ...]] = ()
    settings: BaseModel

    def __init__(self, settings: BaseModel):
        self.settings = settings

    @abstractmethod
    async def run(self, ctx: ConnectorContext) -> None:
        """Receive from the external system and ``ctx.publish`` each event until cancelled.
        Retry the external system with backoff; never return on a transient error."""

    async def deliver(self, item: DispatchOrder | DispatchUpdate | dict[str, Any]) -> None:
        """Send one outbound item to the external system. Raise to have it redelivered later; raise
        :class:`hub.errors.DeliveryRejected` when the system refused it for good (it goes to the DLQ)."""
        raise NotImplementedError(f"connector {self.source!r} has no outbound side")

    def health(self) -> dict[str, Any]:
        """Connector-specific health details (last poll, backlog, external system reachable)."""
        return {}
