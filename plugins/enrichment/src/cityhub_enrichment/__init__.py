"""Responsible-contact enrichment (``enrichment``): each event gets the grid worker and department contacts
responsible for its cell and category (``event.payload["responsible"]``), so the centre and the dispatch
orders know whom to call first. The contact table lives in config or a CSV file; ``GET
/plugins/enrichment/contacts?cell=...&category=...`` answers the same question for ops and the dashboard.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Query
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from cityhub_enrichment.contacts import ContactBook, Enrichment
from cityhub_enrichment.settings import EnrichmentSettings
from hub.connector_kit import HubHandle
from hub.hookspecs import hookimpl
from hub.models import Category, GridCell

# The contact book and transform each hub uses now (rebuilt on start-up and reload).
_books: weakref.WeakKeyDictionary[Any, ContactBook] = weakref.WeakKeyDictionary()
_transforms: weakref.WeakKeyDictionary[Any, Enrichment] = weakref.WeakKeyDictionary()


class EnrichmentCollector(Collector):
    """``cityhub_enrichment_events_total{outcome}``: events enriched, and events no contact covers."""

    def __init__(self, hub: HubHandle):
        self._hub = weakref.ref(hub)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("cityhub_enrichment_events", "Events by enrichment outcome.", labels=["outcome"])
        hub = self._hub()
        transform = _transforms.get(hub) if hub is not None else None
        for outcome in ("enriched", "no_contact"):
            family.add_metric([outcome], transform.counts[outcome] if transform else 0)
        yield family


def _book(hub: HubHandle, settings: EnrichmentSettings) -> ContactBook:
    if hub not in _books:
        _books[hub] = ContactBook.from_settings(settings)
    return _books[hub]


@hookimpl
def plugin_settings_model() -> type[EnrichmentSettings]:
    return EnrichmentSettings


@hookimpl
async def startup(hub: HubHandle, settings: EnrichmentSettings) -> None:
    """Read the contact table (the CSV file may have changed since the last start or reload)."""
    _books[hub] = ContactBook.from_settings(settings)


@hookimpl
async def shutdown(hub: HubHandle) -> None:
    _books.pop(hub, None)
    _transforms.pop(hub, None)


@hookimpl
def register_transforms(hub: HubHandle, settings: EnrichmentSettings) -> list[Enrichment]:
    transform = Enrichment(_book(hub, settings), settings)
    _transforms[hub] = transform
    return [transform]


@hookimpl
def register_routes(hub: HubHandle) -> APIRouter:
    router = APIRouter(tags=["enrichment"])

    @router.get("/contacts", summary="Who answers for a cell and category")
    def contacts(
        cell: str = Query(description="Grid cell id"), category: Category = Query(Category.OTHER)
    ) -> list[dict[str, Any]]:
        book = _books.get(hub, ContactBook([]))
        return book.lookup([GridCell(layer="admin", level="cell", id=cell, name=cell)], category, limit=10)

    return router


@hookimpl
def register_metrics(hub: HubHandle) -> list[Collector]:
    return [EnrichmentCollector(hub)]


@hookimpl
def plugin_health(hub: HubHandle) -> dict[str, Any]:
    book = _books.get(hub)
    transform = _transforms.get(hub)
    return {"contacts": len(book) if book else 0, "events": dict(transform.counts) if transform else {}}
