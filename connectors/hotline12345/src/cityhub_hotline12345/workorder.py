"""The 12345 work order (工单) the hotline system posts to the webhook, and the feedback the hub posts back.

Field names are the hotline platform's JSON keys; an integrator with another vendor's names maps them here."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from cityhub_hotline12345.settings import WebhookSettings
from hub.connector_kit import describe, error_kind, event_from
from hub.errors import DeliveryRejected, InvalidEventError
from hub.models import CoordSystem, DispatchOrder, DispatchStatus, DispatchUpdate, Event, Location, Reporter

SOURCE = "hotline12345"

# Event fields in the hotline platform's names a rejection reason speaks of.
WORK_ORDER_FIELDS = {"source_event_id": "order_no", "time": "created_at", "text": "description", "reporter": "caller"}


class Caller(BaseModel):
    """The citizen who called (来电人). Personal data: it goes to Event.reporter only."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, max_length=64)
    phone: str | None = Field(None, max_length=32)


class OrderLocation(BaseModel):
    """Coordinates picked on the hotline's map, GCJ-02 (the Chinese web-map system)."""

    model_config = ConfigDict(extra="ignore")

    lng: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


class WorkOrder(BaseModel):
    """One 工单. Keys the hub does not use are ignored (vendors add their own)."""

    model_config = ConfigDict(extra="ignore")

    order_no: str = Field(min_length=1, max_length=64, description="工单编号, unique in the hotline system.")
    category: str = Field(min_length=1, max_length=64, description="诉求分类, mapped by webhook.order_categories.")
    description: str = Field(min_length=1, max_length=8000, description="诉求内容.")
    address: str = Field(min_length=1, max_length=512, description="事发地址.")
    created_at: AwareDatetime = Field(description="受理时间, with UTC offset.")
    title: str | None = Field(None, max_length=256)
    location: OrderLocation | None = None
    caller: Caller | None = None
    deadline: AwareDatetime | None = Field(None, description="办理时限.")
    urgent: bool = Field(False, description="紧急 flag.")
    attempt: int = Field(1, ge=1, description="2 and up when the hotline re-dispatches (二次派单).")


def order_to_event(order: WorkOrder, settings: WebhookSettings) -> Event:
    """Map a validated work order to a canonical event; an unmapped category raises InvalidEventError."""
    category = settings.order_categories.get(order.category)
    if category is None:
        known = ", ".join(sorted(settings.order_categories))
        raise InvalidEventError(f"category {order.category!r} of order {order.order_no} is not mapped (known: {known})")
    payload: dict[str, Any] = {"channel": "webhook", "order_no": order.order_no, "category_name": order.category}
    if order.title:
        payload["title"] = order.title
    if order.deadline is not None:
        payload["deadline"] = order.deadline.isoformat()
    if order.attempt > 1:
        payload["attempt"] = order.attempt
    caller = order.caller
    return event_from(
        WORK_ORDER_FIELDS,
        what=f"order {order.order_no}",
        source=SOURCE,
        source_event_id=f"order:{order.order_no}:{order.attempt}",
        category=category,
        severity=settings.urgent_severity if order.urgent else settings.severity,
        time=order.created_at,
        location=None
        if order.location is None
        else Location(lon=order.location.lng, lat=order.location.lat, crs=CoordSystem.GCJ02),
        address=order.address,
        reporter=None
        if caller is None or (caller.name is None and caller.phone is None)
        else Reporter(name=caller.name, phone=caller.phone),
        text=order.description,
        payload=payload,
        status="open",
    )


class FeedbackAction(StrEnum):
    """What the hub reports back about a work order."""

    ACCEPT = "accept"  # 签收
    REDISPATCH = "redispatch"  # 二次派单 / 退回重派
    RESOLVE = "resolve"  # 办结
    EVALUATE = "evaluate"  # 市民评价


class Feedback(BaseModel):
    """One feedback item, posted as JSON to ``<outbound.base_url>/<action>``."""

    model_config = ConfigDict(extra="forbid")

    order_no: str = Field(min_length=1, max_length=64)
    action: FeedbackAction
    time: AwareDatetime
    note: str | None = Field(None, max_length=2048)
    handler: str | None = Field(None, max_length=128, description="Who handled it (department or worker).")
    evaluation: int | None = Field(None, ge=1, le=5, description="Citizen evaluation, 1 to 5 stars (evaluate only).")
    attempt: int = Field(1, ge=1)

    @property
    def idempotency_key(self) -> str:
        return f"{self.order_no}:{self.action.value}:{self.attempt}"


_ACTION_OF_STATUS = {
    DispatchStatus.ACCEPTED: FeedbackAction.ACCEPT,
    DispatchStatus.REDISPATCHED: FeedbackAction.REDISPATCH,
    DispatchStatus.RESOLVED: FeedbackAction.RESOLVE,
    DispatchStatus.EVALUATED: FeedbackAction.EVALUATE,
}


def hotline_number(source_event_id: str) -> str:
    """The hotline's own number in one of this connector's event ids: ``order:<工单 number>:<attempt>`` or
    ``open311:<service_request_id>``."""
    kind, _, rest = source_event_id.partition(":")
    return rest.rpartition(":")[0] if kind == "order" else rest


def feedback_for(item: DispatchOrder | DispatchUpdate | dict[str, Any]) -> Feedback | None:
    """The feedback an outbound item asks for, or None when the hotline need not hear of it (e.g. on_site).

    A DispatchOrder names the 工单 by its incident's first 12345 report (``reports``; an order without one
    is refused); a DispatchUpdate carries the 工单 number as its order id; a plain dict is a
    :class:`Feedback` in JSON form."""
    if isinstance(item, DispatchOrder):
        ours = [report.source_event_id for report in item.reports if report.source == SOURCE]
        if not ours:
            raise DeliveryRejected(
                f"dispatch order {item.id} has no 12345 report to answer (reports: "
                f"{[report.source for report in item.reports]})"
            )
        action = FeedbackAction.ACCEPT if item.attempt == 1 else FeedbackAction.REDISPATCH
        return Feedback(
            order_no=hotline_number(ours[0]),
            action=action,
            time=item.created_at,
            note=item.summary,
            handler=item.target,
            attempt=item.attempt,
        )
    if isinstance(item, DispatchUpdate):
        answer = _ACTION_OF_STATUS.get(item.status)
        if answer is None:
            return None
        return Feedback(
            order_no=item.order_id,
            action=answer,
            time=item.time,
            note=item.note,
            handler=item.actor,
            evaluation=item.evaluation,
        )
    return Feedback.model_validate(item)


def validate_order(body: bytes) -> WorkOrder:
    """Parse the webhook body; raise InvalidEventError with every problem found."""
    try:
        return WorkOrder.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidEventError(f"work order rejected: {describe(exc)}", error_kind(exc)) from None
