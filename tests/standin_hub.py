"""A small real hub for testing the control plane before (and apart from) the runtime's pipeline: a real
config, plugin host and metrics registry; ``dry_run`` matches the config's compiled rules, without a pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.app import build_taxonomy
from hub.config import HubConfig, load_config
from hub.metrics import Metrics
from hub.models import Event
from hub.plugins import PluginHost, build_plugin_host


class StandInHub:
    def __init__(self, config_path: Path, plugins: dict[str, object], installed: bool = False):
        self.metrics = Metrics()
        self.plugins: PluginHost = build_plugin_host(self.metrics, extra=plugins.items(), installed=installed)
        self.config: HubConfig = load_config(config_path, plugin_models=self.plugins.settings_models())
        self.plugins.configure(self.config)
        self.plugins.attach(self)
        self.taxonomy = build_taxonomy(self.config)
        self.ready = True
        self.applied: list[HubConfig] = []
        self.close_requests: list[tuple[str, str]] = []

    def health(self) -> dict[str, Any]:
        return {"ok": True, "nats": "not used by the stand-in"}

    async def apply_config(self, config: HubConfig) -> None:
        await self.plugins.apply(config)
        self.config = config
        self.applied.append(config)

    async def dry_run(self, event: Event) -> dict[str, Any]:
        matched = [match.rule_id for match in self.config.rule_set.match(event.model_dump(mode="json"))]
        return {"event": event.model_dump(mode="json"), "grid_path": [], "incident": None, "matched_rules": matched}

    async def request_close(self, incident_id: str, reason: str) -> str:
        self.close_requests.append((incident_id, reason))
        return f"close:{incident_id}"
