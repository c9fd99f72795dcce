"""``cityhub demo``: a hub on an embedded nats-server with the sample grids, every connector with its simulator,
and the unified stream on the terminal (:mod:`~hub.demo.config` writes its config, :mod:`~hub.demo.terminal`
shows it). ``cityhub demo --tiers`` is :mod:`hub.federation.demo`."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import shutil
from pathlib import Path

from hub.app import Hub, serve
from hub.demo.config import DEMO_SECRET_VARIABLE, demo_config
from hub.demo.terminal import show_demo
from hub.errors import HubError
from hub.logs import LOG_FILE_VARIABLE, configure_logging

DEMO_LOG = "demo.log"
DEMO_MARKER = ".cityhub-demo"


def demo(stop_after_s: float | None = None, *, verbose: bool = False, data_dir: Path = Path(".cityhub/demo")) -> int:
    """``cityhub demo``: embedded NATS, sample grids, every connector with its simulator; Ctrl-C (or
    ``stop_after_s``) stops everything. ``data_dir`` (emptied first) holds the demo's config, NATS store and
    log; the terminal shows the stream, the logs go to ``demo.log`` there (with ``verbose``, to the
    terminal instead). The connectors' webhook secret is generated for each run."""
    prepare_demo_folder(data_dir)
    log_file = None if verbose else data_dir / DEMO_LOG
    if log_file is not None:
        os.environ[LOG_FILE_VARIABLE] = str(log_file)  # the environment: connector processes log there too
    configure_logging(logging.INFO)
    os.environ[DEMO_SECRET_VARIABLE] = secrets.token_urlsafe(24)  # the environment: config reloads see it too
    path = data_dir / "cityhub.toml"
    path.write_text(demo_config(data_dir.resolve()))
    hub = Hub.from_file(path)
    banner = functools.partial(show_demo, stop_after_s=stop_after_s, config_path=path, log_file=log_file)
    asyncio.run(serve(hub, banner))
    return 0


def prepare_demo_folder(folder: Path) -> None:
    """Empty ``folder`` for a fresh demo (a first look shows nothing older than the demo), refusing one that
    holds something other than an earlier demo's files."""
    marker = folder / DEMO_MARKER
    if folder.exists() and any(folder.iterdir()) and not marker.exists():
        raise HubError(
            f"{folder} is not empty and was not made by `cityhub demo`; "
            "choose another folder with --data-dir (the demo empties its folder at each start)"
        )
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    marker.write_text("made by `cityhub demo`, emptied at its next start\n")
