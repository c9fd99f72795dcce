"""The taxonomy grows: built-in categories, then plugins' (``register_categories``), then ``[categories.<name>]``;
the pipeline's decoder, the merge policy, the AsyncAPI enum, the dashboard's labels and docs/categories.md read
the one registry, and an unknown category goes to the DLQ with a reason naming the known ones."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from hub.app import build_taxonomy, merge_policy
from hub.asyncapi import asyncapi_document
from hub.config import HubConfig
from hub.errors import ConfigError
from hub.metrics import Metrics
from hub.pipeline import EventTimeWindow, IngestMessage, decode_events
from hub.plugins import build_plugin_host
from hub.taxonomy import BUILTIN_TAXONOMY, CategoryInfo, categories_page

DOCS = Path(__file__).resolve().parents[1] / "docs" / "categories.md"
WATERLOGGING = CategoryInfo(label_zh="积水", label_en="Waterlogging", default_severity="high", merge_group="water")
CONFIG = HubConfig.model_validate(
    {
        "categories": {"road_collapse": {"label_zh": "路面塌陷", "label_en": "Road collapse", "merge_group": "water"}},
        "merge": {"category_groups": {"gas": ["gas_leak", "smoke"]}},
    }
)


def taxonomy():
    return build_taxonomy(CONFIG, [("drainage", {"waterlogging": WATERLOGGING})])


def message(seq: int, **event) -> IngestMessage:
    document = {"source": "drainage", "time": datetime.now(UTC).isoformat(), **event}
    return IngestMessage(seq, "cityhub.ingest.drainage", orjson.dumps(document), time.time())


def test_the_built_in_list_is_the_default_and_plugins_and_config_add_to_it():
    grown = taxonomy()
    assert list(grown)[: len(BUILTIN_TAXONOMY)] == list(BUILTIN_TAXONOMY)
    assert grown["waterlogging"] == WATERLOGGING and grown["road_collapse"].label_en == "Road collapse"
    assert grown.merge_groups() == {"water": ["waterlogging", "road_collapse"]}


def test_the_decoder_accepts_registered_categories_and_sends_unknown_ones_to_the_dlq_naming_the_known():
    decoded = decode_events(
        [
            message(1, category="waterlogging"),
            message(2, category="road_collapse", severity="low"),
            message(3, category="sinkhole"),
        ],
        1 << 20,
        EventTimeWindow(),
        taxonomy(),
    )
    assert [(event.category, event.severity) for event in decoded.events] == [
        ("waterlogging", "high"),
        ("road_collapse", "low"),
    ]
    [rejected] = decoded.rejected
    assert rejected.kind == "unknown_category"
    assert rejected.reason.startswith("unknown category 'sinkhole'; known: ")
    assert "waterlogging" in rejected.reason and "gas_leak" in rejected.reason


def test_the_built_in_decoder_still_refuses_what_only_a_plugin_registers():
    decoded = decode_events([message(1, category="waterlogging")], 1 << 20, EventTimeWindow())
    assert [rejection.kind for rejection in decoded.rejected] == ["unknown_category"]


def test_merge_groups_of_the_taxonomy_join_the_configured_ones():
    assert merge_policy(CONFIG, taxonomy()).groups == {
        "gas": ["gas_leak", "smoke"],
        "water": ["waterlogging", "road_collapse"],
    }


def test_a_merge_setting_naming_an_unknown_category_says_which_are_known():
    config = HubConfig.model_validate({"merge": {"category_groups": {"wet": ["waterlogging"]}}})
    with pytest.raises(
        ConfigError, match=r"\[merge\]: unknown category 'waterlogging'; known: .*gas_leak.*\[categories"
    ):
        build_taxonomy(config)


def test_a_bad_category_name_from_a_plugin_names_the_plugin():
    with pytest.raises(ConfigError, match="plugin 'drainage'.*'Water Logging'"):
        build_taxonomy(HubConfig(), [("drainage", {"Water Logging": WATERLOGGING})])


def test_asyncapi_enum_and_dashboard_labels_come_from_the_registry():
    grown = taxonomy()
    assert asyncapi_document(grown)["components"]["schemas"]["Category"]["enum"] == list(grown)
    assert {
        "name": "waterlogging",
        "label_zh": "积水",
        "label_en": "Waterlogging",
        "default_severity": "high",
        "merge_group": "water",
    } in grown.public()


async def test_eldercare_puts_its_alerts_in_one_merge_group_through_the_hook(monkeypatch):
    monkeypatch.setenv("CITYHUB_PLUGINS", "eldercare")
    host = build_plugin_host(Metrics())
    [(plugin, categories)] = [
        (result.plugin, result.value) for result in await host.call("register_categories", only="eldercare")
    ]
    grown = build_taxonomy(HubConfig(), [(plugin, categories)])
    assert grown.merge_groups() == {"elder": ["elder_sos", "elder_fall", "elder_vitals"]}
    assert grown["elder_sos"].label_zh == BUILTIN_TAXONOMY["elder_sos"].label_zh


def test_the_categories_page_is_generated_from_the_registry():
    assert DOCS.read_text(encoding="utf-8") == categories_page(), (
        "regenerate: python -m hub.taxonomy > docs/categories.md"
    )
