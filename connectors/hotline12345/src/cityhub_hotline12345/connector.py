"""The 12345 hotline connector: an Open311 poller and a signed work-order webhook in, feedback out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cityhub_hotline12345.open311 import Cursor, Open311Client, pages_from, parse_time, request_id, request_to_event
from cityhub_hotline12345.settings import Hotline12345Settings
from cityhub_hotline12345.workorder import feedback_for, order_to_event, validate_order
from hub.connector_kit import (
    Connector,
    ConnectorContext,
    HttpServer,
    WebhookRejected,
    post_signed_with_retry,
    refuse,
    signed_body,
    stop_if_cancelled,
    unavailable,
)
from hub.errors import InvalidEventError
from hub.models import DispatchOrder, DispatchUpdate, Event

CURSOR_KEY = "open311.cursor"
# Where a poller with no stored cursor starts: everything the server still lists.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Hotline12345Connector(Connector):
    """Reads the hotline's Open311 service requests and 工单 webhook; posts feedback back to it."""

    source = "hotline12345"
    settings: Hotline12345Settings

    def __init__(self, settings: Hotline12345Settings):
        super().__init__(settings)
        self.webhook: HttpServer | None = None
        self.unmapped_services: dict[str, str] = {}
        self.last_poll: datetime | None = None
        self.open311_reachable: bool | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.outbound.retry.timeout_s)
        return self._http

    async def run(self, ctx: ConnectorContext) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                if self.settings.webhook.enabled:
                    listen = self.settings.webhook.listen
                    self.webhook = await HttpServer(self._webhook_app(ctx), listen.host, listen.port).start()
                    ctx.log.info("12345 work-order webhook on %s%s", self.webhook.url, self.settings.webhook.path)
                if self.settings.open311.enabled:
                    group.create_task(self._poll_forever(ctx))
                await asyncio.Event().wait()
        finally:
            if self.webhook is not None:
                await self.webhook.stop()
            if self._http is not None:
                await self._http.aclose()
                self._http = None

    # --- Open311 ---------------------------------------------------------------------------------------

    async def _poll_forever(self, ctx: ConnectorContext) -> None:
        settings = self.settings.open311
        client = Open311Client(settings, self.http)
        backoff = settings.backoff.make()
        discovered_at: float | None = None
        while True:
            # A stop swallowed by a timeout inside a poll (Python 3.11's wait_for, in nats-py) is not sent again: the
            # task group that cancelled this loop cancels its tasks once.
            stop_if_cancelled()
            try:
                loop_time = asyncio.get_running_loop().time()
                if discovered_at is None or loop_time - discovered_at >= settings.discovery_interval_s:
                    await self.discover(ctx, client)
                    discovered_at = loop_time
                await self.poll_once(ctx, client)
            except Exception as exc:  # Open311 or NATS down/slow: the cursor only moved past what was published
                self.open311_reachable = not isinstance(exc, (httpx.HTTPError, orjson.JSONDecodeError))
                ctx.count("poll_errors")
                delay = backoff.next_delay()
                ctx.log.warning("open311 poll failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            self.open311_reachable = True
            backoff.reset()
            await asyncio.sleep(settings.poll_interval_s)

    async def discover(self, ctx: ConnectorContext, client: Open311Client) -> None:
        """Read services.json and note the service codes that have no category mapping."""
        services = await client.services()
        mapping = self.settings.open311.service_categories
        self.unmapped_services = {
            str(item.get("service_code")): str(item.get("service_name", ""))
            for item in services
            if str(item.get("service_code")) not in mapping
        }
        ctx.count("discoveries")
        if self.unmapped_services:
            ctx.log.warning(
                "open311: %d of %d services have no category mapping; their requests go to the DLQ: %s",
                len(self.unmapped_services),
                len(services),
                ", ".join(sorted(self.unmapped_services)),
            )

    async def poll_once(self, ctx: ConnectorContext, client: Open311Client) -> None:
        """Read every request updated since the stored cursor, publish each new version, store the cursor
        after each page (once its events are acknowledged by JetStream)."""
        overlap = timedelta(seconds=self.settings.open311.overlap_s)
        cursor = Cursor.load(await ctx.state.get(CURSOR_KEY), start=EPOCH)
        settings = self.settings.open311
        pages = pages_from(client.requests_updated_after, cursor, overlap, settings.page_size, settings.max_page_size)
        async for records in pages:
            ctx.count("polled", len(records))
            for record in records:
                await self._take_request(ctx, record, cursor)
            await ctx.state.put(CURSOR_KEY, cursor.dump())
        await ctx.state.put(CURSOR_KEY, cursor.dump())  # settled at the end of the poll
        self.last_poll = datetime.now(UTC)

    async def _take_request(self, ctx: ConnectorContext, record: Any, cursor: Cursor) -> None:
        """Publish one request version unless the cursor has passed it. A version that cannot become an event
        goes to the DLQ once and the cursor moves past it."""
        try:
            rid = request_id(record)
            updated = parse_time(record, "updated_datetime")
        except InvalidEventError as exc:
            await self._reject_request(ctx, record, exc)
            return
        if not cursor.is_new(rid, updated):
            return
        try:
            event = request_to_event(record, self.settings.open311)
        except InvalidEventError as exc:
            await self._reject_request(ctx, record, exc)
        else:
            await ctx.publish(event)
            ctx.count(f"open311_{event.status}")
        cursor.advance(rid, updated)

    @staticmethod
    async def _reject_request(ctx: ConnectorContext, record: Any, exc: InvalidEventError) -> None:
        await ctx.reject(orjson.dumps(record), exc.reason, exc.kind)

    # --- 工单 webhook ------------------------------------------------------------------------------------

    def _webhook_app(self, ctx: ConnectorContext) -> FastAPI:
        app = FastAPI(title="CityHub 12345 work-order webhook", docs_url=None, redoc_url=None)
        app.add_api_route(self.settings.webhook.path, self._order_handler(ctx), methods=["POST"])
        return app

    def _order_handler(self, ctx: ConnectorContext) -> Callable[[Request], Awaitable[JSONResponse]]:
        settings = self.settings.webhook

        async def receive_order(request: Request) -> JSONResponse:
            ctx.count("orders_received")
            try:
                raw = await signed_body(
                    request,
                    secret=settings.secret.get_secret_value(),
                    tolerance_s=settings.window_s,
                    max_bytes=settings.max_body_bytes,
                )
                event = self._order_event(raw)
            except WebhookRejected as rejection:
                return await refuse(ctx, request, rejection, settings.max_body_bytes)
            try:
                await ctx.publish(event)
            except Exception as exc:  # NATS down or slow: the hotline keeps the order and retries
                return unavailable(ctx, exc)
            ctx.count("orders_published")
            return JSONResponse({"order_no": event.payload["order_no"], "status": "received"})

        return receive_order

    def _order_event(self, raw: bytes) -> Event:
        try:
            return order_to_event(validate_order(raw), self.settings.webhook)
        except InvalidEventError as exc:
            raise WebhookRejected(422, exc.reason, exc.kind) from None

    # --- feedback out ------------------------------------------------------------------------------------

    async def deliver(self, item: DispatchOrder | DispatchUpdate | dict[str, Any]) -> None:
        """Post accept / redispatch / resolve / evaluate to the hotline system. Raises DeliveryError while it is
        unreachable (JetStream redelivers later) and DeliveryRejected when it refuses the item."""
        feedback = feedback_for(item)
        if feedback is None:
            return
        outbound = self.settings.outbound
        await post_signed_with_retry(
            self.http,
            f"{outbound.base_url.rstrip('/')}/{feedback.action.value}",
            feedback.model_dump_json(exclude_none=True).encode(),
            secret=outbound.secret.get_secret_value(),
            idempotency_key=feedback.idempotency_key,
            retry=outbound.retry,
        )

    def health(self) -> dict[str, Any]:
        return {
            "open311_reachable": self.open311_reachable,
            "last_poll": self.last_poll.isoformat() if self.last_poll else None,
            "unmapped_services": sorted(self.unmapped_services),
            "webhook": f"{self.webhook.url}{self.settings.webhook.path}"
            if self.webhook and self.webhook.port
            else None,
        }
