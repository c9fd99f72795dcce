"""What must be equal between hubs that share one set of streams: everything that decides the pipeline's
outputs. A standby that takes over replays the input of the hub before it, so a different rule, grid or
merge policy would give different incidents for the same input, and the unified stream would mix both."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from hub.config import HubConfig


def pipeline_fingerprint(config: HubConfig) -> str:
    """A short digest of the time zone, every rule (inline and from rule files), the grids (their files'
    contents, not their paths, which may differ between machines), dedup, merging, the pipeline section,
    the enabled plugins and the lease TTL. Process-local settings (admin port, data_dir, NATS connection,
    connector ports) are left out."""
    decisive: dict[str, Any] = {
        "timezone": config.timezone,
        "rules": [rule.model_dump(mode="json") for rule in config.all_rules()],
        "geo": _geo(config),
        "dedup": config.dedup.model_dump(mode="json"),
        "merge": config.merge.model_dump(mode="json"),
        "pipeline": config.pipeline.model_dump(mode="json"),
        "plugins": sorted(name for name in config.plugins if config.plugin_enabled(name)),
        "lease_ttl": config.availability.lease_ttl.total_seconds(),
    }
    return hashlib.sha256(orjson.dumps(decisive, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _geo(config: HubConfig) -> dict[str, Any]:
    layers = [
        {**layer.model_dump(mode="json", exclude={"path"}), "content": _file_digest(layer.path)}
        for layer in config.geo.layers
    ]
    return {"layers": layers, "tolerance_m": config.geo.tolerance_m}


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
