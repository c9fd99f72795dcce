"""``cityhub new-connector NAME``: a working connector plugin in the house folder shape, ready to adapt.

It writes ``connectors/<name>/`` (``__init__.py`` with the hooks, ``settings.py``, ``connector.py``,
``simulator.py``), ``tests/connectors/test_<name>.py`` and ``docs/connectors/<name>.md``. The generated
connector is a webhook intake (the most common shape of a vendor integration): the external system POSTs
JSON alarms, the connector maps them to canonical events, publishes them to ``cityhub.ingest.<name>`` and
sends anything it cannot use to the DLQ; the simulator is a real HTTP client playing the external system.
The generated test runs both against a real nats-server and passes as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from hub.errors import HubError

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")

_INIT = '''\
"""${title} (``${name}``): alarms POSTed as JSON to a webhook become canonical events.

In: ``POST <path>`` with one alarm (see :class:`connectors.${name}.connector.Alarm`); unusable input gets a 400
answer and a DLQ entry. Out: nothing (implement ``deliver`` to send dispatch orders back).
Docs: docs/connectors/${name}.md.
"""

from __future__ import annotations

from typing import Any

from connectors.${name}.connector import ${Class}Connector
from connectors.${name}.settings import ${Class}Settings
from connectors.${name}.simulator import ${Class}Simulator
from hub.hookspecs import hookimpl


@hookimpl
def plugin_settings_model() -> type[${Class}Settings]:
    return ${Class}Settings


@hookimpl
def register_connectors(hub: Any, settings: ${Class}Settings) -> list[${Class}Connector]:
    return [${Class}Connector(settings)]


@hookimpl
def register_simulators(hub: Any, settings: ${Class}Settings) -> list[${Class}Simulator]:
    return [${Class}Simulator(f"http://{settings.host}:{settings.port}{settings.path}", settings.simulator)]
'''

_SETTINGS = '''\
"""Settings of the ``${name}`` connector (``[plugins.${name}]`` in cityhub.toml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hub.models import Category, CoordSystem


class SimulatorSettings(BaseModel):
    """The simulated external system used by ``cityhub demo`` and the tests."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(7, description="Seed of the simulated alarms (same seed, same alarms).")
    interval_s: float = Field(5.0, gt=0, description="Pause between two simulated alarms, seconds.")
    centre_lon: float = Field(104.066, ge=-180, le=180, description="Alarms are placed around this longitude...")
    centre_lat: float = Field(30.657, ge=-90, le=90, description="... and latitude.")


class ${Class}Settings(BaseModel):
    """${title}: a webhook the external system POSTs JSON alarms to."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface the webhook listens on.")
    port: int = Field(${port}, ge=0, le=65535, description="Port of the webhook; 0 picks a free one.")
    path: str = Field("/alarms", pattern=r"^/", description="Path the external system posts alarms to.")
    max_body_bytes: int = Field(65536, ge=1024, description="Larger requests are refused (413) and go to the DLQ.")
    crs: CoordSystem = Field(CoordSystem.WGS84, description="Coordinate system of the alarms' lon/lat.")
    category_map: dict[str, Category] = Field(
        default_factory=lambda: {"smoke": Category.SMOKE, "water": Category.WATER_LEAK, "door": Category.DOOR_ALARM},
        description="The external system's alarm types mapped to CityHub categories; other types go to the DLQ.",
    )
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings, description="Demo/test simulator.")
'''

_CONNECTOR = '''\
"""The ``${name}`` connector: a webhook intake for JSON alarms."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.${name}.settings import ${Class}Settings
from hub.connector import Connector, ConnectorContext
from hub.models import Event, Location


class Alarm(BaseModel):
    """One alarm as the external system sends it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, description="The system's alarm id (the idempotency key).")
    type: str = Field(description="The system's alarm type, mapped through category_map.")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    time: datetime
    address: str | None = None
    text: str | None = None


class ${Class}Connector(Connector):
    """Receives alarms on a webhook and publishes them as canonical events."""

    source = "${name}"
    settings: ${Class}Settings

    def __init__(self, settings: ${Class}Settings):
        super().__init__(settings)
        self.accepted = 0
        self.rejected = 0
        self.listening: asyncio.Future[str] | None = None

    def to_event(self, alarm: Alarm) -> Event:
        """Map one alarm to the canonical event; raise ValueError for a type the mapping does not know."""
        category = self.settings.category_map.get(alarm.type)
        if category is None:
            raise ValueError(f"unknown alarm type {alarm.type!r}; map it in [plugins.${name}].category_map")
        return Event(
            source=self.source,
            source_event_id=alarm.id,
            category=category,
            time=alarm.time,
            location=Location(lon=alarm.lon, lat=alarm.lat, crs=self.settings.crs),
            address=alarm.address,
            text=alarm.text,
        )

    async def _refuse(self, ctx: ConnectorContext, raw: bytes, status: int, reason: str) -> JSONResponse:
        self.rejected += 1
        await ctx.reject(raw, reason)
        ctx.count("rejected")
        return JSONResponse({"error": reason}, status_code=status)

    def app(self, ctx: ConnectorContext) -> FastAPI:
        app = FastAPI(title="${name} webhook")

        @app.post(self.settings.path)
        async def receive(request: Request) -> Any:
            raw = await request.body()
            if len(raw) > self.settings.max_body_bytes:
                return await self._refuse(ctx, raw[: self.settings.max_body_bytes], 413, "body too large")
            try:
                event = self.to_event(Alarm.model_validate_json(raw))
            except ValidationError as exc:
                return await self._refuse(ctx, raw, 400, _first_error(exc))
            except ValueError as exc:
                return await self._refuse(ctx, raw, 400, str(exc))
            await ctx.publish(event)
            self.accepted += 1
            ctx.count("accepted")
            return {"accepted": event.source_event_id}

        return app

    async def run(self, ctx: ConnectorContext) -> None:
        """Serve the webhook until cancelled."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.settings.host, self.settings.port))
        host, port = sock.getsockname()[:2]
        server = uvicorn.Server(uvicorn.Config(self.app(ctx), log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        self.listening = self.listening or asyncio.get_running_loop().create_future()
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if not self.listening.done():
            self.listening.set_result(f"http://{host}:{port}{self.settings.path}")
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True
            await serving
            raise
        finally:
            sock.close()

    async def url(self) -> str:
        """The webhook URL once it listens (useful with port 0)."""
        self.listening = self.listening or asyncio.get_running_loop().create_future()
        return await self.listening

    def health(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected}


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
'''

_SIMULATOR = '''\
"""A simulated ``${name}`` system: a real HTTP client that POSTs alarms to the connector's webhook, as the
vendor's platform does."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import datetime, timezone
from typing import Any

import httpx

from connectors.${name}.settings import SimulatorSettings

ALARM_TYPES = ("smoke", "water", "door")


class ${Class}Simulator:
    """Posts a seeded stream of alarms to ``url``; ``alarm(n)`` is the n-th one."""

    def __init__(self, url: str, settings: SimulatorSettings):
        self.url = url
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def alarm(self, number: int) -> dict[str, Any]:
        rng = random.Random(self.settings.seed * 1_000_003 + number)
        return {
            "id": f"SIM-{number:06d}",
            "type": rng.choice(ALARM_TYPES),
            "lon": round(self.settings.centre_lon + rng.uniform(-0.02, 0.02), 6),
            "lat": round(self.settings.centre_lat + rng.uniform(-0.02, 0.02), 6),
            "time": datetime.now(timezone.utc).isoformat(),
            "address": f"Building {rng.randint(1, 30)}, simulated compound",
        }

    async def post(self, body: dict[str, Any] | bytes) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            if isinstance(body, bytes):
                return await client.post(self.url, content=body, headers={"content-type": "application/json"})
            return await client.post(self.url, json=body)

    async def _loop(self) -> None:
        number = 0
        while True:
            number += 1
            with contextlib.suppress(httpx.HTTPError):  # the connector may not listen yet: try the next one
                await self.post(self.alarm(number))
            await asyncio.sleep(self.settings.interval_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
'''

_TEST = '''\
"""The ``${name}`` connector against its simulator, through a real nats-server."""

from __future__ import annotations

import nats
import pytest

from connectors.${name}.connector import ${Class}Connector
from connectors.${name}.settings import ${Class}Settings
from connectors.${name}.simulator import ${Class}Simulator
from hub import topology, wire
from hub.connector_runtime import running_connector


async def _stored(nats_url: str, stream: str) -> list:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        return [await js.get_msg(stream, seq) for seq in range(state.first_seq, state.last_seq + 1) if state.messages]
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_alarms_reach_the_ingest_stream_and_bad_input_the_dlq(nats_url):
    settings = ${Class}Settings(port=0)
    connector = ${Class}Connector(settings)
    async with running_connector(connector, nats_url):
        simulator = ${Class}Simulator(await connector.url(), settings.simulator)
        for number in (1, 2, 3):
            assert (await simulator.post(simulator.alarm(number))).status_code == 200
        assert (await simulator.post(simulator.alarm(1))).status_code == 200  # a re-delivery
        assert (await simulator.post(b"not json")).status_code == 400
        unknown = await simulator.post({**simulator.alarm(4), "type": "alien"})
        assert unknown.status_code == 400 and "unknown alarm type 'alien'" in unknown.json()["error"]

    ingested = await _stored(nats_url, topology.INGEST_STREAM)
    assert [wire.decode(message.data)["data"]["source_event_id"] for message in ingested] == [
        "SIM-000001", "SIM-000002", "SIM-000003"
    ]  # JetStream dropped the re-delivery by its Nats-Msg-Id
    rejected = await _stored(nats_url, topology.DLQ_STREAM)
    assert [message.data for message in rejected][0] == b"not json"
    assert len(rejected) == 2 and connector.health() == {"accepted": 4, "rejected": 2}
'''

_DOCS = '''\
# ${title} (`${name}`)

What it is: a connector for ${title}. Generated by `cityhub new-connector ${name}`; adapt the mapping and the
intake to the real system, keep the shape.

## What it reads and writes
- **In**: `POST <path>` (default `/alarms`) with one JSON alarm. A 200 answer means the event is stored in
  JetStream (`cityhub.ingest.${name}`); 400 / 413 answers say what is wrong, and the input goes to
  `cityhub.dlq.${name}` with the reason.
- **Out**: nothing yet. To send dispatch orders back, implement `deliver()` in `connector.py`; orders wait in
  JetStream until it succeeds.

## Mapping to the canonical event
| alarm field | event field |
| --- | --- |
| `id` | `source_event_id` (idempotency key: re-deliveries are dropped) |
| `type` | `category`, through `category_map` |
| `lon`, `lat` | `location` (in `crs`) |
| `time` | `time` (must carry a timezone offset) |
| `address`, `text` | `address`, `text` |

Example:
```json
{"id": "A-1", "type": "smoke", "lon": 104.07, "lat": 30.66, "time": "2026-05-01T08:00:00+08:00"}
```

## Settings (`[plugins.${name}]`)
| key | default | description |
| --- | --- | --- |
| `host` | `127.0.0.1` | Interface the webhook listens on. |
| `port` | `${port}` | Port of the webhook; 0 picks a free one. |
| `path` | `/alarms` | Path the external system posts alarms to. |
| `max_body_bytes` | `65536` | Larger requests are refused (413). |
| `crs` | `wgs84` | Coordinate system of the alarms. |
| `category_map` | smoke, water, door | Alarm types → CityHub categories. |
| `simulator` | | Seed, interval and centre of the simulated alarms. |

## Simulator and tests
`simulator.py` plays the external system over real HTTP; `cityhub demo` starts it. The contract test
`tests/connectors/test_${name}.py` runs connector and simulator against a real nats-server:
`.venv/bin/python -m pytest tests/connectors/test_${name}.py`.
'''


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def connector_files(name: str, port: int = 8800) -> dict[str, str]:
    """The files of a new connector ``name``, keyed by their path relative to the project root."""
    if not _NAME.match(name):
        raise HubError(f"connector name {name!r}: use lower-case letters, digits and _ (2-41 characters, a letter first)")
    values = {"name": name, "Class": _class_name(name), "title": name.replace("_", " ").title(), "port": str(port)}
    templates = {
        f"connectors/{name}/__init__.py": _INIT,
        f"connectors/{name}/settings.py": _SETTINGS,
        f"connectors/{name}/connector.py": _CONNECTOR,
        f"connectors/{name}/simulator.py": _SIMULATOR,
        f"tests/connectors/test_{name}.py": _TEST,
        f"docs/connectors/{name}.md": _DOCS,
    }
    return {path: Template(text).substitute(values) for path, text in templates.items()}


def write_connector(root: Path, name: str, port: int = 8800) -> list[Path]:
    """Write the new connector under ``root``; refuse to overwrite anything. Returns the files written."""
    files = connector_files(name, port)
    existing = [path for path in files if (root / path).exists()]
    if existing:
        raise HubError(f"not overwriting existing files: {', '.join(existing)}")
    written = []
    package_init = root / "connectors" / "__init__.py"
    if not package_init.exists():
        files["connectors/__init__.py"] = '"""Built-in connectors: one package per external system."""\n'
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
