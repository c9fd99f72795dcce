"""Citizen reports (``citizen_report``) from the phone mini-program: one tap, text, photo, GCJ-02 location.

In: HTTP POST of a report as multipart/form-data (what ``wx.uploadFile`` sends) or JSON with a base64 photo;
attachment size and type limits (413 / 415), per-reporter rate limits (429), photos stored by content hash and
served by the connector, events published with ``location.crs = "gcj02"`` (the pipeline converts).
No outbound side. Docs: docs/connectors/citizen_report.md.
"""

from __future__ import annotations

from cityhub_citizen_report.connector import CitizenReportConnector
from cityhub_citizen_report.settings import CitizenReportSettings
from cityhub_citizen_report.simulator import CitizenAppSimulator
from hub.connector_kit import HubHandle, ServiceArea, required_layers
from hub.hookspecs import hookimpl


@hookimpl
def plugin_settings_model() -> type[CitizenReportSettings]:
    return CitizenReportSettings


@hookimpl
def register_connectors(hub: HubHandle, settings: CitizenReportSettings) -> list[CitizenReportConnector]:
    """The intake; a relative ``photo_dir`` lives under the hub's ``data_dir``; ``reject_outside_area`` checks
    locations against the hub's [geo] layers."""
    data_dir = getattr(getattr(hub, "config", None), "data_dir", None)
    if data_dir is not None and not settings.photo_dir.is_absolute():
        settings = settings.model_copy(update={"photo_dir": data_dir / settings.photo_dir})
    area = None
    if settings.reject_outside_area:
        area = ServiceArea(required_layers(hub, "plugins.citizen_report.reject_outside_area"))
    return [CitizenReportConnector(settings, area)]


@hookimpl
def register_simulators(hub: HubHandle, settings: CitizenReportSettings) -> list[CitizenAppSimulator]:
    """A simulated mini-program posting a report every few seconds to the configured intake."""
    url = settings.listen.url(settings.path)
    return [CitizenAppSimulator(url, interval_s=5.0)]
