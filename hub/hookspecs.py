"""Every extension point of CityHub, on one screen. Each docstring is the hook's documentation
(``docs/plugin_hooks.md`` is checked against it by a test).

Plugins are ordinary modules with ``@hookimpl`` functions, each an installed distribution found through the
entry-point group ``cityhub.plugins``; the built-ins (``connectors/<name>/``, ``plugins/<name>/``) take the same
path as third-party plugins. Hooks run at start-up and on reload, never per message: they return objects
(connectors, transforms, routers) that the runtime calls directly, per batch. The plugin host calls each
plugin's implementation on its own, with a timeout, so one failing plugin is reported and contained.

Every hook receives ``hub`` (a :class:`hub.handle.HubHandle`: config, metrics, plugins, logger) by keyword; hooks
that configure a plugin also receive ``settings``, the plugin's validated ``[plugins.<name>]`` section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from fastapi import APIRouter
    from pydantic import BaseModel

    from hub.connector import Connector
    from hub.handle import HubHandle
    from hub.taxonomy import CategoryInfo
    from hub.transforms import Transform

PROJECT = "cityhub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- Configuration ---------------------------------------------------------------------------------


@hookspec(firstresult=True)
def plugin_settings_model() -> type[BaseModel] | None:
    """Return the pydantic model of this plugin's ``[plugins.<name>]`` section (``extra="forbid"``)."""


# --- Lifecycle -------------------------------------------------------------------------------------


@hookspec
async def startup(hub: HubHandle, settings: BaseModel | None) -> None:
    """Run once when the hub starts or the plugin is enabled; acquire what the plugin needs."""


@hookspec
async def shutdown(hub: HubHandle) -> None:
    """Run once when the hub stops or the plugin is disabled; release what startup acquired."""


@hookspec
def plugin_health(hub: HubHandle) -> dict[str, Any] | None:
    """Return this plugin's health details (shown by ``/health`` and the dashboard's plugin panel)."""


# --- Connectors ------------------------------------------------------------------------------------


@hookspec
def register_connectors(hub: HubHandle, settings: BaseModel | None) -> Iterable[Connector] | None:
    """Return the connectors this plugin provides, built from its settings. Each runs isolated from the
    pipeline and reaches it only through NATS (``cityhub.ingest.<source>``)."""


@hookspec
def register_simulators(hub: HubHandle, settings: BaseModel | None) -> Iterable[Any] | None:
    """Return simulators of external systems for ``cityhub demo``: objects with async ``start()``/``stop()``
    that speak the real protocol (HTTP server, MQTT client, ...)."""


# --- Taxonomy ------------------------------------------------------------------------------------


@hookspec
def register_categories(hub: HubHandle) -> Mapping[str, CategoryInfo] | None:
    """Return categories to add to the taxonomy (or built-in ones to replace), by name: labels, default
    severity, merge group. ``[categories.<name>]`` of the config still overrides them."""


# --- Pipeline --------------------------------------------------------------------------------------


@hookspec
def register_transforms(hub: HubHandle, settings: BaseModel | None) -> Iterable[Transform] | None:
    """Return pipeline transforms (enrich, redact) that the pipeline applies to each batch of events,
    after rules and before publishing, in the order of their ``stage`` and then ``order``."""


# --- Admin API and metrics -------------------------------------------------------------------------


@hookspec
def register_routes(hub: HubHandle) -> APIRouter | None:
    """Return a FastAPI router mounted under ``/plugins/<name>/`` on the admin API."""


@hookspec
def register_metrics(hub: HubHandle) -> Iterable[Any] | None:
    """Return extra prometheus-client collectors to expose on ``/metrics``."""
