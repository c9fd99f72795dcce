"""Pipeline-plugin transforms, per batch of 10,000 events: the built-in redaction and enrichment beside the
straightforward versions a plugin author writes first, in the same run. Both transforms touch every event of
the unified stream, so their events/s bound the pipeline's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cityhub_enrichment.contacts import ContactBook, Enrichment
from cityhub_enrichment.settings import Contact, EnrichmentSettings
from cityhub_redaction.settings import RedactionSettings
from cityhub_redaction.transform import (
    ID_CARD,
    LANDLINE,
    MOBILE,
    Redaction,
    mask_id_card,
    mask_middle,
    mask_name,
    mask_phone,
)
from hub.config import HubConfig
from hub.models import Category, Event, GridCell, Reporter

EVENTS = 10_000
LEVELS = ("micro_grid", "grid", "community", "street", "district")
TEXTS = (
    "居民来电(13812345678)，称楼道有燃气味，请尽快处理。身份证51010419900307123X",
    "小区东门井盖松动，有行人绊倒，座机028-85551234",
    "垃圾站满溢，异味严重，已多次反映",
)


def batch() -> list[Event]:
    events = []
    for n in range(EVENTS):
        cell = n % 500
        grid_path = [
            GridCell(layer="admin", level=level, id=f"{level}-{cell // (i + 1)}", name=level)
            for i, level in enumerate(LEVELS)
        ]
        events.append(
            Event(
                source="hotline12345",
                source_event_id=str(n),
                category=list(Category)[n % 8],
                time=datetime(2026, 5, 1, tzinfo=UTC),
                grid_path=grid_path,
                text=TEXTS[n % 3],
                reporter=Reporter(
                    name="张三", phone="13812345678", id_card="51010419900307123X", account=f"wx-{n % 900}"
                ),
            )
        )
    return events


def hand_written_redaction(events: list[Event]) -> list[Event]:
    """Field by field and pattern by pattern: one re.sub pass per pattern, a hash per value."""
    import hashlib
    import hmac

    for event in events:
        reporter = event.reporter
        reporter.name = mask_name(reporter.name)
        reporter.phone = mask_phone(reporter.phone)
        reporter.id_card = mask_id_card(reporter.id_card)
        reporter.account = "h:" + hmac.new(b"key", reporter.account.encode(), hashlib.sha256).hexdigest()[:16]
        text = event.text
        text = MOBILE.sub(lambda match: mask_phone(match.group(0)), text)
        text = LANDLINE.sub(lambda match: mask_middle(match.group(0), 4, 2), text)
        text = ID_CARD.sub(lambda match: mask_id_card(match.group(0)), text)
        event.text = text
    return events


def contacts() -> list[Contact]:
    table = [Contact(cell=f"district-{n}", categories=[Category.GAS_LEAK], name=f"gas desk {n}") for n in range(500)]
    table += [Contact(cell=f"grid-{n}", name=f"grid worker {n}", phone="13900000000") for n in range(250)]
    table += [Contact(cell=f"other-{n}", name=f"unused {n}") for n in range(9_000)]
    return [*table, Contact(cell="*", name="duty desk")]


def hand_written_enrichment(table: list[Contact]):
    """A dict from cell id to contacts, walked per event, building each answer afresh."""
    by_cell: dict[str, list[Contact]] = {}
    for contact in table:
        by_cell.setdefault(contact.cell, []).append(contact)

    def apply(events: list[Event]) -> list[Event]:
        for event in events:
            for cell_id, level in [(cell.id, cell.level) for cell in event.grid_path] + [("*", None)]:
                found = [
                    {**c.model_dump(exclude={"categories"}, exclude_none=True), "level": level}
                    for c in by_cell.get(cell_id, ())
                    if not c.categories or event.category in c.categories
                ]
                if found:
                    event.payload["responsible"] = found[:3]
                    break
        return events

    return apply


def run(benchmark, transform, group: str, role: str, note: str) -> None:
    source = batch()
    benchmark.group = group
    benchmark.extra_info.update(items=EVENTS, role=role, note=note)
    benchmark.pedantic(transform, setup=lambda: (([event.model_copy(deep=True) for event in source],), {}), rounds=5)


REDACTION = "Personal-data redaction, 10,000 events (reporter fields + phone/ID numbers in free text)"
ENRICHMENT = "Responsible-contact enrichment, 10,000 events over a 5-level grid path, 9,751 contacts"


def test_redaction_cityhub(benchmark):
    redaction = Redaction(HubConfig().pipeline.personal_data, RedactionSettings())
    run(benchmark, redaction.apply, REDACTION, "cityhub", "one regex pass per text, policy decided per config")


def test_redaction_hand_written(benchmark):
    run(benchmark, hand_written_redaction, REDACTION, "peer", "per-field masks, one re.sub per pattern")


@pytest.fixture(scope="module")
def table() -> list[Contact]:
    return contacts()


def test_enrichment_cityhub(benchmark, table):
    enrichment = Enrichment(ContactBook(table), EnrichmentSettings())
    run(benchmark, enrichment.apply, ENRICHMENT, "cityhub", "lookups cached per grid path and category")


def test_enrichment_hand_written(benchmark, table):
    run(benchmark, hand_written_enrichment(table), ENRICHMENT, "peer", "dict index, answer built per event")
