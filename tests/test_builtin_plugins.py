"""The built-in pipeline plugins, through the real plugin host: redaction and enrichment."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityhub_enrichment.contacts import ContactBook, Enrichment, read_contacts_csv
from cityhub_enrichment.settings import Contact, EnrichmentSettings
from cityhub_redaction.settings import RedactionSettings
from cityhub_redaction.transform import Redaction, mask_id_card, mask_name, mask_phone
from hub.admin import create_admin_app
from hub.errors import ConfigError
from hub.models import Category, Event, GridCell, Reporter
from hub.pipeline.columns import EventColumns, layout
from hub.transforms import Stage
from standin_hub import StandInHub

CHENGHUA = GridCell(layer="admin", level="district", id="510108", name="成华区")
JIANSHE = GridCell(layer="admin", level="street", id="510108003", name="建设路街道")
GRID_7 = GridCell(layer="admin", level="grid", id="510108003-007", name="第七网格")

CONFIG = """
[pipeline.personal_data]
"reporter.account" = "hash"
"payload.plate" = "drop"
"payload.caller_id" = "hash"

[plugins.redaction]
hash_key = "${REDACTION_TEST_KEY:-test-key}"

[[plugins.enrichment.contacts]]
cell = "510108003-007"
name = "王网格员"
phone = "13900001111"
department = "建设路街道办"

[[plugins.enrichment.contacts]]
cell = "510108"
categories = ["gas_leak"]
name = "成华区燃气抢修"
role = "department"
phone = "028-84300000"

[[plugins.enrichment.contacts]]
cell = "*"
name = "城运中心值班"
role = "duty_desk"
"""


def gas_report(**changes) -> Event:
    values = dict(
        source="hotline12345",
        source_event_id="GD-1",
        category=Category.GAS_LEAK,
        time=datetime(2026, 5, 1, 8, 0, tzinfo=UTC),
        grid_path=[GRID_7, JIANSHE, CHENGHUA],
        reporter=Reporter(name="张三", phone="13812345678", id_card="51010419900307123X", account="wx-openid-42"),
        text="居民张三来电(13812345678)，称楼道有燃气味，身份证51010419900307123X，座机028-85551234",
        payload={"plate": "川A12345", "caller_id": "C-9", "ppm": 5200},
    )
    values.update(changes)
    return Event(**values)


@pytest.fixture
async def hub(tmp_path):
    path = tmp_path / "cityhub.toml"
    path.write_text(CONFIG, encoding="utf-8")
    hub = StandInHub(path, {}, installed=True)
    await hub.plugins.startup()
    return hub


async def pipeline_transforms(hub):
    transforms = [transform for _, found in await hub.plugins.call("register_transforms") for transform in found]
    return sorted(transforms, key=lambda transform: (transform.stage, transform.order))


async def test_enrichment_then_redaction_on_a_batch(hub):
    transforms = await pipeline_transforms(hub)
    assert [(t.name, t.stage) for t in transforms] == [("enrichment", Stage.ENRICH), ("redaction", Stage.REDACT)]
    batch = [gas_report(), gas_report(category=Category.NOISE, grid_path=[JIANSHE, CHENGHUA]), gas_report(grid_path=[])]
    for transform in transforms:
        batch = transform.apply(batch)
    first, noise, nowhere = batch
    assert first.reporter.name == "张*" and first.reporter.phone == "138****5678"
    assert first.reporter.id_card == "510104********123X"
    assert first.reporter.account.startswith("h:") and first.reporter.account == noise.reporter.account
    assert first.text == "居民张三来电(138****5678)，称楼道有燃气味，身份证510104********123X，座机028-******34"
    assert "plate" not in first.payload and first.payload["caller_id"].startswith("h:") and first.payload["ppm"] == 5200
    assert first.payload["responsible"] == [
        {
            "cell": "510108003-007",
            "name": "王网格员",
            "role": "grid_worker",
            "phone": "13900001111",
            "department": "建设路街道办",
            "level": "grid",
        }
    ]
    assert [c["name"] for c in noise.payload["responsible"]] == ["城运中心值班"]  # gas desk is gas-only
    assert nowhere.payload["responsible"][0]["role"] == "duty_desk"


async def test_health_metrics_and_contact_route(hub):
    batch = [gas_report()]
    for transform in await pipeline_transforms(hub):
        transform.apply(batch)
    app = create_admin_app(hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin") as client:
        health = (await client.get("/health")).json()["plugins"]
        metrics = (await client.get("/metrics")).text
        contacts = (
            await client.get("/plugins/enrichment/contacts", params={"cell": "510108", "category": "gas_leak"})
        ).json()
    assert health["enrichment"]["details"] == {"contacts": 3, "events": {"enriched": 1}}
    assert health["redaction"]["details"]["redacted"]["text.mobile"] == 1
    assert 'cityhub_redacted_fields_total{field="reporter.phone"} 1.0' in metrics
    assert 'cityhub_enrichment_events_total{outcome="enriched"} 1.0' in metrics
    assert [contact["name"] for contact in contacts] == ["成华区燃气抢修"]


async def test_keep_policy_and_reload_rebuilds_with_new_policy(hub, tmp_path):
    path = tmp_path / "cityhub.toml"
    path.write_text(CONFIG.replace('"payload.plate" = "drop"', '"payload.plate" = "drop"\n"reporter.phone" = "keep"'))
    await hub.apply_config(
        __import__("hub.config", fromlist=["load_config"]).load_config(
            path, plugin_models=hub.plugins.settings_models()
        )
    )
    [_, redaction] = await pipeline_transforms(hub)
    [event] = redaction.apply([gas_report()])
    assert event.reporter.phone == "13812345678" and event.reporter.name == "张*"


def test_contacts_csv_and_its_errors(tmp_path):
    good = tmp_path / "contacts.csv"
    good.write_text(
        "cell,categories,name,role,phone,department\n510108,gas_leak|fire,燃气抢修,department,028-1,\n",
        encoding="utf-8",
    )
    [contact] = read_contacts_csv(good)
    assert contact.categories == [Category.GAS_LEAK, Category.FIRE] and contact.department is None
    bad = tmp_path / "bad.csv"
    bad.write_text("cell,categories,name\n510108,,甲\n510109,smells,乙\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.csv:3: categories\.0: Input should be"):
        read_contacts_csv(bad)


def test_masks():
    assert mask_phone("13812345678") == "138****5678" and mask_phone("85551234") == "****1234"
    assert mask_id_card("51010419900307123X") == "510104********123X"
    assert mask_name("欧阳娜娜") == "欧***" and mask_name("John Smith") == "J*** S****" and mask_name("李") == "*"


MOBILES = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
ID_CARDS = st.from_regex(r"[1-9][0-9]{16}[0-9X]", fullmatch=True)
FILLER = st.text(alphabet=st.characters(blacklist_categories=("Nd",)), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.tuples(FILLER, st.one_of(MOBILES, ID_CARDS)), min_size=1, max_size=5), tail=FILLER)
def test_no_phone_or_id_number_survives_in_free_text(parts, tail):
    """Oracle: every number put into the text (apart from other digits) is gone from the output, and the text
    around it is intact."""
    redaction = Redaction({"text": "mask"}, RedactionSettings())
    text = "".join(filler + number for filler, number in parts) + tail
    masked = redaction.mask_text(text)
    for filler, number in parts:
        assert number not in masked and filler in masked
    assert len(masked) == len(text)


@pytest.mark.parametrize("extra", [[], [{"name": "plate", "regex": "川[A-Z][0-9A-Z]{5}", "keep_start": 2}]])
def test_numbers_in_every_shape_are_masked(extra):
    """Both text paths: whole-run shapes (no extra patterns) and the full pattern set (extra patterns)."""
    redaction = Redaction({"text": "mask"}, RedactionSettings(text_patterns=extra))
    text = "分机13812345678-1234，+86 13912345678，座机028-85551234，证件51010419900307123X，车牌川A12345"
    masked = redaction.mask_text(text)
    for secret in ("13812345678", "13912345678", "85551234", "51010419900307123X"):
        assert secret not in masked
    assert masked.startswith("分机138****5678-1234，")
    assert ("川A*****" in masked) == bool(extra)


NUMBERISH = st.text(alphabet="0123456789-+86 Xx１٣", min_size=1, max_size=22)
TEXTS = st.lists(
    st.one_of(
        FILLER,
        MOBILES,
        ID_CARDS,
        NUMBERISH,
        st.sampled_from(
            ["028-85551234", "13812345678-1234", "+86 13912345678", "8613812345678", "2026-05-01", "0028-8555123456"]
        ),
    ),
    max_size=6,
).map("".join)
REPORTERS = st.none() | st.builds(
    Reporter,
    name=st.none() | st.text(max_size=5),
    phone=st.none() | NUMBERISH,
    id_card=st.none() | ID_CARDS,
    account=st.none() | st.text(max_size=6),
)


CONTACTS = [
    Contact(cell="510108003-007", name="王网格员", phone="13900001111"),
    Contact(cell="510108", categories=[Category.GAS_LEAK], name="成华区燃气抢修", role="department"),
    Contact(cell="*", name="城运中心值班", role="duty_desk"),
]


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.none() | TEXTS, min_size=1, max_size=6),
    data=st.data(),
    policy=st.sampled_from(["mask", "hash", "drop"]),
    extra=st.booleans(),
)
def test_both_transforms_give_the_same_events_on_columns_as_on_models(texts, data, policy, extra):
    """The pipeline runs the built-in transforms on its columns (text masking in the Rust core): the same events
    and the same counts as on Event objects."""
    settings_ = RedactionSettings(text_patterns=[{"name": "plate", "regex": "川[A-Z][0-9A-Z]{5}"}] if extra else [])
    policies = {"reporter.account": policy, "address": policy, "payload.plate": policy, "payload.caller_id": "hash"}
    paths = [[GRID_7, JIANSHE, CHENGHUA], [JIANSHE], []]
    events = [
        gas_report(
            text=text,
            reporter=data.draw(REPORTERS),
            address=data.draw(st.none() | TEXTS),
            category=data.draw(st.sampled_from([Category.GAS_LEAK, Category.NOISE])),
            grid_path=data.draw(st.sampled_from(paths)),
            payload=data.draw(st.sampled_from([{}, {"plate": "川A12345", "n": 1.5}, {"caller_id": 7}])),
        )
        for text in texts
    ]
    on_models = [Enrichment(ContactBook(CONTACTS), EnrichmentSettings()), Redaction(policies, settings_)]
    on_columns = [Enrichment(ContactBook(CONTACTS), EnrichmentSettings()), Redaction(policies, settings_)]
    columns = EventColumns.from_events(events, layout())
    for transform in on_models:
        events = transform.apply(events)
    for transform in on_columns:
        transform.apply_columns(columns)
    assert columns.events() == events
    assert [t.counts for t in on_columns] == [t.counts for t in on_models]
