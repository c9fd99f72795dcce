"""The contact book: which people and departments answer for a grid cell and a category, and the transform
that writes them into each event (``Stage.ENRICH``, before redaction)."""

from __future__ import annotations

import csv
import functools
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from cityhub_enrichment.settings import Contact, EnrichmentSettings
from hub.errors import ConfigError, validation_problems
from hub.models import Event, GridCell
from hub.transforms import Stage

if TYPE_CHECKING:
    from hub.pipeline.columns import EventColumns

EVERY_CELL = "*"


def read_contacts_csv(path: Path) -> list[Contact]:
    """Contacts from a CSV file; a bad row is an error naming the file and line."""
    contacts = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            values: dict[str, Any] = {key: value for key, value in row.items() if key and value}
            values["categories"] = [part for part in values.get("categories", "").split("|") if part]
            try:
                contacts.append(Contact.model_validate(values))
            except ValidationError as exc:
                where, message = validation_problems(exc, "row")[0]
                raise ConfigError(f"{path}:{reader.line_num}: {where}: {message}") from None
    return contacts


class ContactBook:
    """Contacts indexed by cell id; built once per config, looked up per event (and cached per grid path
    and category: the events of a batch share few cells)."""

    def __init__(self, contacts: list[Contact], cache_size: int = 65_536):
        self._by_cell: dict[str, list[tuple[frozenset[str], dict[str, Any]]]] = defaultdict(list)
        for contact in contacts:
            shown = contact.model_dump(exclude={"categories"}, exclude_none=True)
            self._by_cell[contact.cell].append((frozenset(contact.categories), shown))
        self._count = len(contacts)
        self._cached = functools.lru_cache(maxsize=cache_size)(self._lookup)
        self._cached_json = functools.lru_cache(maxsize=cache_size)(self._lookup_json)

    @classmethod
    def from_settings(cls, settings: EnrichmentSettings) -> ContactBook:
        contacts = list(settings.contacts)
        if settings.contacts_file is not None:
            contacts += read_contacts_csv(settings.contacts_file)
        return cls(contacts)

    def __len__(self) -> int:
        return self._count

    def lookup(self, grid_path: Sequence[GridCell], category: str, limit: int) -> list[dict[str, Any]]:
        """Contacts of the most specific cell that has any for this category, then the fallback ones.
        The answer is shared between calls: treat it as read-only."""
        return self._cached(tuple((cell.id, cell.level) for cell in grid_path), category, limit)

    def lookup_json(self, grid_path: str, category: str, limit: int) -> bytes | None:
        """:meth:`lookup` for a grid path as JSON (the pipeline's ``grid_path`` column), the answer as JSON;
        None when nobody answers."""
        return self._cached_json(grid_path, category, limit)

    def _lookup_json(self, grid_path: str, category: str, limit: int) -> bytes | None:
        cells = tuple((cell["id"], cell["level"]) for cell in orjson.loads(grid_path))
        found = self._cached(cells, category, limit)
        return orjson.dumps(found) if found else None

    def _lookup(self, cells: tuple[tuple[str, str], ...], category: str, limit: int) -> list[dict[str, Any]]:
        for cell_id, level in (*cells, (EVERY_CELL, None)):
            found = [
                {**shown, "level": level}
                for categories, shown in self._by_cell.get(cell_id, ())
                if not categories or category in categories
            ]
            if found:
                return found[:limit]
        return []


class Enrichment:
    """Writes the responsible contacts into ``event.payload[payload_key]``."""

    name = "enrichment"
    stage = Stage.ENRICH
    order = 0

    def __init__(self, book: ContactBook, settings: EnrichmentSettings):
        self.book = book
        self.key = settings.payload_key
        self.limit = settings.max_contacts
        self.counts: Counter[str] = Counter()

    def apply(self, events: list[Event]) -> list[Event]:
        for event in events:
            contacts = self.book.lookup(event.grid_path, event.category, self.limit)
            if contacts:
                event.payload[self.key] = contacts
            self.counts["enriched" if contacts else "no_contact"] += 1
        return events

    def apply_columns(self, columns: EventColumns) -> None:
        """:meth:`apply` for a batch of events as the pipeline's columns: the contacts looked up by each
        event's grid path (JSON, cached per path and category) and written into its ``payload`` (JSON)."""
        payloads = list(columns["payload"])
        for row, (grid_path, category) in enumerate(zip(columns["grid_path"], columns["category"], strict=True)):
            contacts = self.book.lookup_json(grid_path, category, self.limit)
            if contacts is not None:
                payload = orjson.loads(payloads[row])
                payload[self.key] = orjson.Fragment(contacts)
                payloads[row] = orjson.dumps(payload).decode()
            self.counts["enriched" if contacts is not None else "no_contact"] += 1
        columns["payload"] = payloads
