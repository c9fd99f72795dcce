"""The demo's ``cityhub.toml``: embedded NATS, the shipped sample grids, a few rules, who answers for what, and
the demo section every installed plugin ships (``demo.toml``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import orjson

from hub.nats.embedded import free_port
from hub.plugins import demo_section_file, installed_plugins

SAMPLE_GRIDS = Path(__file__).parent.parent / "data" / "grids"
DEMO_SECRET_VARIABLE = "CITYHUB_DEMO_SECRET"
_DEMO_PORT = re.compile(r"\b18\d{3}\b")


def demo_sections(names: Iterable[str] | None = None) -> str:
    """The ``[plugins.<name>]`` sections installed plugins ship for the demo (``demo.toml`` in the plugin's
    package; of every plugin that has one, or just ``names``), each demo port (18000-18999) moved to a free
    one so the demo runs beside anything else on the machine."""
    plugins = installed_plugins()
    if names is None:
        names = sorted(name for name, entry_point in plugins.items() if demo_section_file(entry_point).is_file())
    sections = "\n".join(demo_section_file(plugins[name]).read_text(encoding="utf-8") for name in names)
    ports = {port: str(free_port()) for port in sorted(set(_DEMO_PORT.findall(sections)))}
    return _DEMO_PORT.sub(lambda match: ports[match.group(0)], sections)


def demo_config(data_dir: Path, placement: str | None = None, connectors: Iterable[str] | None = None) -> str:
    """The demo's ``cityhub.toml``: embedded NATS with MQTT (or the ``placement`` tables: ``[nats]`` and
    ``[tier]`` of a hub among tiers), the shipped sample grids, a few rules and the demo section of every
    connector (or of ``connectors``). Their secrets are ``${CITYHUB_DEMO_SECRET}``, which :func:`demo` generates."""
    admin = SAMPLE_GRIDS / "chengdu_admin_gcj02.geojson"
    overlays = SAMPLE_GRIDS / "chengdu_overlays_gcj02.geojson"
    embedded = f'[nats.embedded]\nstore_dir = "{data_dir / "nats"}"\nmqtt_port = {free_port()}\n'
    return f"""
timezone = "Asia/Shanghai"
data_dir = "{data_dir}"

{placement or embedded}

[admin]
port = 0

[geo]
layers = [
  {{ name = "admin", path = "{admin}", crs = "gcj02", kind = "admin" }},
  {{ name = "overlays", path = "{overlays}", crs = "gcj02", kind = "overlay" }},
]

[merge]
category_groups = {{ gas = ["gas_leak", "smoke", "fire"], elder = ["elder_sos", "elder_fall", "elder_vitals"] }}

[[rules]]
id = "gas-critical"
when = 'category == "gas_leak"'
actions = {{ severity = "critical", route = ["gridworker", "five_way"], escalate_after_s = 600 }}

[[rules]]
id = "fire-to-grid-worker"
description = "The storyline's overdue order: the e-bike shed's grid worker never accepts; escalated after 50 s."
when = 'category == "fire" || category == "smoke"'
actions = {{ severity = "critical", route = ["gridworker", "five_way:fire"], escalate_after_s = 50 }}

[[rules]]
id = "area-warning-to-each-grid"
description = "Every grid an area warning touches confirms it through its grid worker."
when = 'category == "area_warning"'
actions = {{ route = ["gridworker"], escalate_after_s = 900 }}

[[rules]]
id = "elder-first-to-grid-worker"
when = 'category == "elder_sos" || category == "elder_fall"'
actions = {{ severity = "high", route = ["gridworker"], escalate_after_s = 300 }}

[[rules]]
id = "eldercare-visit"
when = 'source == "eldercare"'
actions = {{ route = ["connector:eldercare"] }}

[[rules]]
id = "answer-12345"
when = 'source == "hotline12345" && payload.channel == "webhook"'
actions = {{ route = ["connector:hotline12345"] }}

{demo_contacts(admin)}

{demo_sections(connectors)}
"""


# Who answers for what in the demo, beside each district's duty desk (the enrichment plugin's contact table).
DEMO_CITY_CONTACTS = (
    '{ cell = "*", categories = ["gas_leak", "smoke"], name = "燃气抢修中心（演示）", role = "department", '
    'department = "燃气公司" }',
    '{ cell = "*", categories = ["flooding", "water_leak"], name = "排水抢险队（演示）", role = "department", '
    'department = "水务局" }',
    '{ cell = "*", categories = ["elder_sos", "elder_fall", "elder_vitals"], name = "社区卫生服务中心（演示）", '
    'role = "department", department = "卫健委" }',
    '{ cell = "*", name = "市城运中心值班台（演示）", role = "duty_desk" }',
)


def demo_contacts(admin_grids: Path) -> str:
    """The demo's ``[plugins.enrichment]`` section: a duty desk per district of ``admin_grids`` and the
    city's departments per category, so every event gets its responsible contacts."""
    districts = [
        feature["properties"]
        for feature in orjson.loads(admin_grids.read_bytes())["features"]
        if feature["properties"]["level"] == "district"
    ]
    desks = [
        f'{{ cell = "{d["id"]}", name = "{d["name"]}城运中心值班台（演示）", role = "duty_desk" }}' for d in districts
    ]
    rows = ",\n  ".join([*desks, *DEMO_CITY_CONTACTS])
    return f"[plugins.enrichment]\ncontacts = [\n  {rows},\n]"
