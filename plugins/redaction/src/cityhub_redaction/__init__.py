"""Personal-data redaction (``redaction``): the reporter's name, phone and ID-card number, and phone and
ID-card numbers inside free text, are masked in the unified stream by default. Per field, ``[pipeline]
.personal_data`` chooses keep, mask, hash (a keyed pseudonym) or drop; ``[plugins.redaction]`` adds text
patterns and the pseudonym key. It runs last (``Stage.REDACT``), after enrichment and rules saw the real data.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from cityhub_redaction.settings import RedactionSettings
from cityhub_redaction.transform import Redaction
from hub.connector_kit import HubHandle
from hub.hookspecs import hookimpl

# The transform each hub uses now (rebuilt on reload), for health and metrics.
_current: weakref.WeakKeyDictionary[Any, Redaction] = weakref.WeakKeyDictionary()


class RedactionCollector(Collector):
    """``cityhub_redacted_fields_total{field}``: values masked, hashed or dropped, per field or text pattern."""

    def __init__(self, hub: HubHandle):
        self._hub = weakref.ref(hub)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "cityhub_redacted_fields", "Personal-data values masked, hashed or dropped.", labels=["field"]
        )
        hub = self._hub()
        redaction = _current.get(hub) if hub is not None else None
        for field, count in sorted(redaction.counts.items()) if redaction else ():
            family.add_metric([field], count)
        yield family


@hookimpl
def plugin_settings_model() -> type[RedactionSettings]:
    return RedactionSettings


@hookimpl
def register_transforms(hub: HubHandle, settings: RedactionSettings) -> list[Redaction]:
    redaction = Redaction(hub.config.pipeline.personal_data, settings)
    _current[hub] = redaction
    return [redaction]


@hookimpl
def register_metrics(hub: HubHandle) -> list[Collector]:
    return [RedactionCollector(hub)]


@hookimpl
def plugin_health(hub: HubHandle) -> dict[str, Any]:
    redaction = _current.get(hub)
    return {"redacted": dict(redaction.counts) if redaction else {}}
