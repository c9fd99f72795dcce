"""A simulated 12345 hotline system, speaking the real protocols:

* an Open311 GeoReport v2 HTTP server (``services.json``, ``services/<code>.json``, ``requests.json`` with the
  ``updated_after``/``page``/``page_size`` extensions, ``requests/<id>.json``) replaying real Boston 311 records
  (``data/boston311_100.csv``, see ``data/SOURCES.md``): :meth:`HotlineSimulator.advance` opens and closes
  requests in the order they really happened (the protocol's fixtures: the demo does not replay them);
* the feedback API the hub posts accept / redispatch / resolve / evaluate to (signature checked, idempotency
  keys honoured, every accepted item kept in :attr:`HotlineSimulator.feedback`);
* a work-order sender that posts signed 工单 to the connector's webhook: seeded sample orders in Chengdu with
  Chinese categories and addresses, timed now (the demo's 12345 traffic).
"""

from __future__ import annotations

import asyncio
import csv
import logging
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.base import RequestResponseEndpoint

from hub.connector_kit import IDEMPOTENCY_HEADER, HttpServer
from hub.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, signed_headers, verify
from hub.tasks import cancel_and_wait

log = logging.getLogger("cityhub.sim.hotline12345")

RECORDS_CSV = Path(__file__).parent / "data" / "boston311_100.csv"
RECORDS_ZONE = ZoneInfo("America/New_York")
OPEN311_PATH = "/open311/v2"
FEEDBACK_PATH = "/12345/feedback"


def service_code(type_name: str) -> str:
    """The simulator's service code for a Boston case type, e.g. ``Street Light Outages`` → ``STREET_LIGHT_OUTAGES``."""
    return re.sub(r"[^A-Z0-9]+", "_", type_name.upper()).strip("_")[:48]


# Real Chengdu places with GCJ-02 coordinates as a Chinese web map shows them.
CHENGDU_PLACES: tuple[tuple[str, float, float], ...] = (
    ("成都市锦江区春熙路街道总府路2号", 104.08116, 30.65716),
    ("成都市武侯区浆洗街街道武侯祠大街231号", 104.04868, 30.64602),
    ("成都市青羊区少城街道宽窄巷子", 104.05614, 30.66962),
    ("成都市成华区猛追湾街道建设路55号", 104.10458, 30.66971),
    ("成都市金牛区营门口街道一品天下大街", 104.04491, 30.69534),
    ("成都市高新区桂溪街道天府大道北段1700号", 104.06873, 30.57966),
)

ORDER_SAMPLES: tuple[tuple[str, str, bool], ...] = (
    ("燃气泄漏", "市民来电反映楼道内有明显燃气味，担心泄漏，请尽快派人检查。", True),
    ("噪音扰民", "市民反映夜间施工噪音扰民，影响休息，请相关部门处理。", False),
    ("道路破损", "市民反映路面出现坑洼，电瓶车通行有安全隐患。", False),
    ("路灯故障", "市民反映小区门口路灯连续多日不亮。", False),
    ("积水内涝", "市民反映下雨后路口积水严重，行人无法通过。", True),
    ("环境卫生", "市民反映垃圾桶满溢无人清运，气味难闻。", False),
    ("违章停车", "市民反映车辆长期占用消防通道停放。", False),
    ("井盖缺失", "市民反映人行道井盖缺失，存在安全隐患。", True),
)

SURNAMES = "王李张刘陈杨黄赵吴周"

# The demo's shared scenario, sent as the first order of every run: the gas leak at 红星路三段1号 where the IoT
# simulator's gas sensor GAS-JJ-0001 alarms and a citizen reports it too — one incident, several reports.
SCENARIO_ORDER = ("燃气泄漏", "市民来电反映红星路三段1号地下厨房有浓烈燃气味，请尽快处置。", True)
SCENARIO_PLACE = ("成都市锦江区春熙路街道红星路三段1号", 104.08403, 30.65470)


@dataclass
class _Change:
    at: datetime
    row: int
    closes: bool


def _local_time(text: str) -> datetime | None:
    text = text.strip()
    return datetime.fromisoformat(text).replace(tzinfo=RECORDS_ZONE) if text else None


def _open311_error(status: int, description: str) -> JSONResponse:
    """GeoReport v2 error body: a list of {code, description}."""
    return JSONResponse([{"code": status, "description": description}], status_code=status)


class HotlineSimulator:
    """The simulated hotline: Open311 server + feedback API on one HTTP port, plus a 工单 sender."""

    def __init__(
        self,
        *,
        feedback_secret: str,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        records_csv: Path = RECORDS_CSV,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 12345,
        released: int = 0,
        replay_records: bool = True,
        traffic_interval_s: float | None = None,
    ):
        self.feedback_secret = feedback_secret
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.rng = random.Random(seed)
        self.traffic_interval_s = traffic_interval_s
        self.replay_records = replay_records
        self.available = True
        self.feedback: list[dict[str, Any]] = []
        self.feedback_keys: set[str] = set()
        self.orders_sent = 0
        self._rows = list(csv.DictReader(records_csv.open(encoding="utf-8")))
        self._changes = self._timeline()
        self._applied = 0
        self._requests: dict[str, dict[str, Any]] = {}
        self.server = HttpServer(self._app(), host, port)
        self._traffic: asyncio.Task[None] | None = None
        self.advance(released)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> HotlineSimulator:
        await self.server.start()
        if self.traffic_interval_s is not None:
            self._traffic = asyncio.create_task(self._traffic_loop(self.traffic_interval_s))
        log.info("12345 simulator: Open311 at %s, feedback at %s", self.open311_url, self.feedback_url)
        return self

    async def stop(self) -> None:
        await cancel_and_wait(self._traffic)
        self._traffic = None
        await self.server.stop()

    @property
    def open311_url(self) -> str:
        return f"{self.server.url}{OPEN311_PATH}"

    @property
    def feedback_url(self) -> str:
        return f"{self.server.url}{FEEDBACK_PATH}"

    # --- the replayed 311 records --------------------------------------------------------------------

    def _timeline(self) -> list[_Change]:
        changes: list[_Change] = []
        for index, row in enumerate(self._rows):
            opened = _local_time(row["open_dt"])
            if opened is None:
                continue
            changes.append(_Change(opened, index, closes=False))
            closed = _local_time(row["closed_dt"])
            if closed is not None:
                changes.append(_Change(max(closed, opened), index, closes=True))
        return sorted(changes, key=lambda change: (change.at, change.closes, change.row))

    @property
    def remaining(self) -> int:
        """Changes (openings and closings) not yet replayed."""
        return len(self._changes) - self._applied

    def advance(self, count: int = 1) -> list[dict[str, Any]]:
        """Replay the next ``count`` changes; returns the service requests as they now read."""
        touched: list[dict[str, Any]] = []
        for change in self._changes[self._applied : self._applied + count]:
            touched.append(self._apply(change))
        self._applied = min(len(self._changes), self._applied + count)
        return touched

    def _apply(self, change: _Change) -> dict[str, Any]:
        row = self._rows[change.row]
        rid = row["case_enquiry_id"]
        if change.closes:
            request = self._requests[rid]
            request["status"] = "closed"
            request["status_notes"] = row["closure_reason"].strip() or None
        else:
            request = self._requests[rid] = self._open_request(row)
        request["updated_datetime"] = change.at.isoformat()
        return request

    def _open_request(self, row: dict[str, str]) -> dict[str, Any]:
        expected = _local_time(row["target_dt"])
        request: dict[str, Any] = {
            "service_request_id": row["case_enquiry_id"],
            "status": "open",
            "status_notes": None,
            "service_name": row["type"],
            "service_code": service_code(row["type"]),
            "description": row["case_title"].strip() or None,
            "agency_responsible": row["department"].strip() or None,
            "service_notice": None,
            "requested_datetime": _local_time(row["open_dt"]).isoformat(),  # type: ignore[union-attr]
            "expected_datetime": expected.isoformat() if expected else None,
            "address": row["location"].strip() or None,
            "zipcode": row["location_zipcode"].strip() or None,
            "media_url": row["submittedphoto"].strip() or None,
        }
        if row["latitude"] and row["longitude"]:
            request["long"] = float(row["longitude"])
            request["lat"] = float(row["latitude"])
        return request

    def services(self) -> list[dict[str, Any]]:
        """services.json: one service per case type in the records."""
        seen: dict[str, dict[str, Any]] = {}
        for row in self._rows:
            code = service_code(row["type"])
            seen.setdefault(
                code,
                {
                    "service_code": code,
                    "service_name": row["type"],
                    "description": row["subject"],
                    "metadata": False,
                    "type": "realtime",
                    "keywords": row["reason"],
                    "group": row["reason"],
                },
            )
        return list(seen.values())

    def _select(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """Filter and order requests as requests.json does; raises ValueError for unusable parameters."""

        def times(name: str) -> datetime | None:
            value = params.get(name)
            if value is None:
                return None
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ValueError(f"{name} needs a UTC offset")
            return parsed

        def listed(name: str) -> set[str] | None:
            value = params.get(name)
            return None if value is None else set(value.split(","))

        ids, codes, statuses = listed("service_request_id"), listed("service_code"), listed("status")
        start, end = times("start_date"), times("end_date")
        after, before = times("updated_after"), times("updated_before")
        chosen = []
        for request in self._requests.values():
            requested = datetime.fromisoformat(request["requested_datetime"])
            updated = datetime.fromisoformat(request["updated_datetime"])
            if (
                (ids is None or request["service_request_id"] in ids)
                and (codes is None or request["service_code"] in codes)
                and (statuses is None or request["status"] in statuses)
                and (start is None or requested >= start)
                and (end is None or requested <= end)
                and (after is None or updated > after)
                and (before is None or updated < before)
            ):
                chosen.append(request)
        return sorted(chosen, key=lambda r: (datetime.fromisoformat(r["updated_datetime"]), r["service_request_id"]))

    # --- HTTP ----------------------------------------------------------------------------------------

    def _app(self) -> FastAPI:
        app = FastAPI(title="12345 hotline simulator (Open311 GeoReport v2)", docs_url=None, redoc_url=None)

        @app.middleware("http")
        async def outage(request: Request, call_next: RequestResponseEndpoint) -> Response:
            if not self.available:
                return _open311_error(503, "service temporarily unavailable (simulated outage)")
            return await call_next(request)

        @app.get(f"{OPEN311_PATH}/services.json")
        async def services() -> list[dict[str, Any]]:
            return self.services()

        @app.get(f"{OPEN311_PATH}/services/{{code}}.json")
        async def service_definition(code: str) -> Response:
            if code not in {s["service_code"] for s in self.services()}:
                return _open311_error(404, f"service_code {code} not found")
            return JSONResponse({"service_code": code, "attributes": []})

        @app.get(f"{OPEN311_PATH}/requests.json")
        async def requests(request: Request) -> Response:
            params = dict(request.query_params)
            try:
                page = int(params.pop("page", "1"))
                page_size = min(int(params.pop("page_size", "50")), 1000)
                chosen = self._select(params)
            except ValueError as exc:
                return _open311_error(400, f"bad query parameter: {exc}")
            if page < 1 or page_size < 1:
                return _open311_error(400, "page and page_size start at 1")
            return JSONResponse(chosen[(page - 1) * page_size : page * page_size])

        @app.get(f"{OPEN311_PATH}/requests/{{rid}}.json")
        async def one_request(rid: str) -> Response:
            if rid not in self._requests:
                return _open311_error(404, f"service_request_id {rid} not found")
            return JSONResponse([self._requests[rid]])

        @app.post(f"{FEEDBACK_PATH}/{{action}}")
        async def feedback(action: str, request: Request) -> Response:
            return self._record_feedback(action, await request.body(), request.headers)

        return app

    def _record_feedback(self, action: str, body: bytes, headers: Any) -> Response:
        try:
            verify(
                self.feedback_secret,
                headers.get(TIMESTAMP_HEADER),
                headers.get(SIGNATURE_HEADER),
                body,
                tolerance_s=300,
            )
        except SignatureError as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        try:
            item = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return JSONResponse({"error": f"not JSON: {exc}"}, status_code=400)
        if not isinstance(item, dict) or item.get("action") != action or not item.get("order_no"):
            return JSONResponse(
                {"error": "body must be an object with order_no and the action of the URL"}, status_code=422
            )
        key = headers.get(IDEMPOTENCY_HEADER) or f"{item['order_no']}:{action}"
        if key in self.feedback_keys:
            return JSONResponse({"ok": True, "duplicate": True})
        self.feedback_keys.add(key)
        self.feedback.append(item)
        return JSONResponse({"ok": True, "duplicate": False})

    # --- 工单 sender ---------------------------------------------------------------------------------

    def sample_order(self, now: datetime | None = None) -> dict[str, Any]:
        """A seeded work order in Chengdu (fictional caller, real place, GCJ-02 coordinates); the first one of a
        run is the demo's shared gas-leak scenario."""
        self.orders_sent += 1
        created = (now or datetime.now(UTC)).astimezone(timezone(timedelta(hours=8))).replace(microsecond=0)
        first = self.orders_sent == 1
        category, description, urgent = SCENARIO_ORDER if first else self.rng.choice(ORDER_SAMPLES)
        address, lng, lat = SCENARIO_PLACE if first else self.rng.choice(CHENGDU_PLACES)
        return {
            "order_no": f"CD12345-{created:%Y%m%d}-{self.orders_sent:06d}",
            "category": category,
            "title": f"{category}（{address[3:6]}）",
            "description": description,
            "address": address,
            "location": {
                "lng": round(lng + self.rng.uniform(-3e-4, 3e-4), 6),
                "lat": round(lat + self.rng.uniform(-3e-4, 3e-4), 6),
            },
            "caller": {"name": f"{self.rng.choice(SURNAMES)}先生", "phone": f"138{self.rng.randrange(10**8):08d}"},
            "created_at": created.isoformat(),
            "deadline": (created + timedelta(hours=24 if urgent else 72)).isoformat(),
            "urgent": urgent,
        }

    async def send_order(
        self, order: dict[str, Any] | bytes, *, secret: str | None = None, timestamp: float | None = None
    ) -> httpx.Response:
        """POST one signed work order (or raw bytes, for bad-input tests) to the connector's webhook."""
        if self.webhook_url is None:
            raise RuntimeError("HotlineSimulator.webhook_url is not set")
        body = order if isinstance(order, bytes) else orjson.dumps(order)
        headers = {
            "Content-Type": "application/json",
            **signed_headers(secret or self.webhook_secret or "", body, timestamp),
        }
        async with httpx.AsyncClient() as client:
            return await client.post(self.webhook_url, content=body, headers=headers, timeout=10)

    async def _traffic_loop(self, interval_s: float) -> None:
        """Demo traffic: replay one Open311 change per tick (with ``replay_records``) and send a work order
        every third tick; an order the connector did not take (down, 5xx) is sent again on the next tick, as a
        real hotline retries."""
        pending: list[dict[str, Any]] = []
        tick = 0
        while True:
            await asyncio.sleep(interval_s)
            tick += 1
            if self.replay_records:
                self.advance(1)
            if self.webhook_url is None:
                continue
            if tick % 3 == 0:
                pending.append(self.sample_order())
            while pending:
                try:
                    response = await self.send_order(pending[0])
                except httpx.HTTPError as exc:
                    log.info("12345 simulator: webhook unreachable (%s), will resend", exc)
                    break
                if response.status_code >= 500:
                    break
                pending.pop(0)
