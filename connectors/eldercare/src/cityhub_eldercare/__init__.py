"""Eldercare platform (``eldercare``): a community smart-care platform's alerts over a signed HTTP webhook.

SOS buttons, fall detection, abnormal vitals, no activity for hours (elders living alone) and gas alarms at an
elder's home become events routed to the grid worker first (``payload.route_hint``). Dispatch orders for this
connector are posted to the platform as visit orders; the platform reports their outcomes back, which become
dispatch updates. The elder registry stays in the connector; only what a responder needs is published.
"""

from __future__ import annotations

from cityhub_eldercare.connector import EldercareConnector
from cityhub_eldercare.settings import EldercareSettings
from cityhub_eldercare.simulator import EldercarePlatformSimulator
from hub.connector_kit import HubHandle
from hub.hookspecs import hookimpl
from hub.models import Category
from hub.taxonomy import BUILTIN_CATEGORIES, CategoryInfo

# An elder's SOS, fall and abnormal vitals at one home within the merge window are one situation, one visit.
ELDER_MERGE_GROUP = "elder"
ONE_SITUATION = (Category.ELDER_SOS, Category.ELDER_FALL, Category.ELDER_VITALS)


@hookimpl
def plugin_settings_model() -> type[EldercareSettings]:
    return EldercareSettings


@hookimpl
def register_connectors(hub: HubHandle, settings: EldercareSettings) -> list[EldercareConnector]:
    return [EldercareConnector(settings)]


@hookimpl
def register_simulators(hub: HubHandle, settings: EldercareSettings) -> list[EldercarePlatformSimulator]:
    return [EldercarePlatformSimulator(settings)]


@hookimpl
def register_categories(hub: HubHandle) -> dict[str, CategoryInfo]:
    """The elder alerts that describe one situation, in one merge group (labels stay the built-in ones)."""
    return {
        category: BUILTIN_CATEGORIES[category].model_copy(update={"merge_group": ELDER_MERGE_GROUP})
        for category in ONE_SITUATION
    }
