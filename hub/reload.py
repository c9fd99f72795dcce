"""Live configuration: reload ``cityhub.toml`` when it (or a rules file or grid it names) changes, or when
``POST /config/reload`` asks. A new config that does not validate is rejected with every error logged as
file:line: key: message, and the running config stays; a valid one goes to ``hub.apply_config``.

The file watching is ``watchfiles`` (Rust ``notify`` underneath): it debounces editors' bursts of writes and
sees files replaced by rename, which is how most editors save.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import watchfiles

from hub.config import HubConfig, load_config
from hub.errors import ConfigError, ConfigIssue, HubError

log = logging.getLogger("cityhub.reload")


@dataclass
class ReloadOutcome:
    """What a reload did: applied, or rejected with the issues found."""

    applied: bool
    issues: list[ConfigIssue] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "issues": [
                {"file": issue.file, "line": issue.line, "key": issue.key, "message": issue.message}
                for issue in self.issues
            ],
        }


def watched_files(config: HubConfig) -> set[Path]:
    """The config file and every file it names whose change should reload: rule files and grids."""
    paths = {config.source} if config.source else set()
    paths |= set(config.rule_files) | {layer.path for layer in config.geo.layers}
    return {path.resolve() for path in paths if path is not None}


class ConfigReloader:
    """Reloads ``hub.config.source`` into ``hub`` (anything with ``config``, ``plugins`` and an async
    ``apply_config``). Reloads are serialised: one at a time, in the order asked."""

    def __init__(self, hub: Any):
        self.hub = hub
        self.last: ReloadOutcome | None = None
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        source = self.hub.config.source
        if source is None:
            raise ConfigError("this hub's config was not loaded from a file, so it cannot be reloaded")
        return source

    async def reload(self) -> ReloadOutcome:
        """Load the file again; apply it when valid, else log every issue and keep the running config."""
        async with self._lock:
            try:
                config = load_config(self.path, plugin_models=self.hub.plugins.settings_models())
            except ConfigError as exc:
                for problem in [str(issue) for issue in exc.issues] or [str(exc)]:  # records are one line each
                    log.error("config reload rejected, keeping the running config: %s", problem)
                self.last = ReloadOutcome(False, exc.issues)
                return self.last
            try:
                await self.hub.apply_config(config)
            except HubError as exc:  # e.g. a grid file that does not load: the running config stays
                log.error("config reload could not be applied, keeping the running config: %s", exc)
                self.last = ReloadOutcome(False, [ConfigIssue(str(self.path), None, "(apply)", str(exc))])
                return self.last
            log.info("config reloaded from %s", self.path)
            self.last = ReloadOutcome(True)
            return self.last

    async def watch(self, stop: asyncio.Event | None = None) -> None:
        """Reload whenever a watched file changes, until ``stop`` is set (or the task is cancelled)."""
        while stop is None or not stop.is_set():
            files = watched_files(self.hub.config)
            folders = {path.parent for path in files if path.parent.exists()}

            def relevant(_change: watchfiles.Change, changed: str, files: set[Path] = files) -> bool:
                return Path(changed).resolve() in files

            async for _changes in watchfiles.awatch(*folders, watch_filter=relevant, stop_event=stop):
                await self.reload()
                if watched_files(self.hub.config) != files:
                    break  # the set of files changed: watch the new set
            else:
                return
