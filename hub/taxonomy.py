"""The event taxonomy: every category an event may carry, with its Chinese and English labels, the severity an
event of it gets when its source sets none, and the merge group whose categories may describe one incident.

The registry grows in three layers, later ones adding categories or replacing an entry of the same name:
the built-in list below (the default), the ``register_categories`` hook of plugins, and ``[categories.<name>]``
sections of ``cityhub.toml``. The running hub holds one :class:`Taxonomy` (``hub.taxonomy``); the pipeline
rejects an event of a category it does not know to the DLQ with a reason naming the known ones, and the
dashboard, the AsyncAPI document and ``docs/categories.md`` read the same registry. A validator outside
Python (the Rust core) takes it whole: :meth:`Taxonomy.names` is the set of accepted names.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.errors import HubError
from hub.models import CATEGORY_NAME_PATTERN, Severity


class CategoryInfo(BaseModel):
    """One category of the taxonomy (``[categories.<name>]`` in cityhub.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label_zh: str = Field(min_length=1, max_length=64, description="Chinese label (dashboard, docs).")
    label_en: str = Field(min_length=1, max_length=64, description="English label (dashboard, docs).")
    default_severity: Severity = Field(
        Severity.MEDIUM, description="Severity of an event of this category whose source sets none."
    )
    merge_group: str | None = Field(
        None,
        pattern=CATEGORY_NAME_PATTERN,
        description="Categories of one merge group may describe one incident (merged like [merge].category_groups).",
    )


class UnknownCategoryError(HubError, ValueError):
    """A category the taxonomy does not know."""


def _builtin(label_zh: str, label_en: str) -> CategoryInfo:
    return CategoryInfo(label_zh=label_zh, label_en=label_en)


# The default set: every built-in category, medium by default and in no merge group (what config adds).
BUILTIN_CATEGORIES: dict[str, CategoryInfo] = {
    "gas_leak": _builtin("燃气泄漏", "Gas leak"),
    "fire": _builtin("火情", "Fire"),
    "smoke": _builtin("烟雾", "Smoke"),
    "water_leak": _builtin("漏水", "Water leak"),
    "flooding": _builtin("积水内涝", "Flooding"),
    "manhole_cover": _builtin("井盖异常", "Manhole cover"),
    "hydrant_pressure": _builtin("消火栓水压", "Hydrant pressure"),
    "elevator_fault": _builtin("电梯故障", "Elevator fault"),
    "door_alarm": _builtin("门磁告警", "Door alarm"),
    "high_altitude_throwing": _builtin("高空抛物", "High-altitude throwing"),
    "person_alert": _builtin("人员预警", "Person alert"),
    "billboard_tilt": _builtin("广告牌倾斜", "Billboard tilt"),
    "device_offline": _builtin("设备离线", "Device offline"),
    "elder_sos": _builtin("老人紧急呼叫", "Elder SOS"),
    "elder_fall": _builtin("老人跌倒", "Elder fall"),
    "elder_vitals": _builtin("老人体征异常", "Elder vital signs"),
    "elder_inactivity": _builtin("独居老人无活动", "Elder inactivity"),
    "bin_full": _builtin("垃圾桶满溢", "Bin full"),
    "station_fault": _builtin("回收站故障", "Station fault"),
    "noise": _builtin("噪音扰民", "Noise"),
    "road_damage": _builtin("道路破损", "Road damage"),
    "street_light": _builtin("路灯故障", "Street light"),
    "sanitation": _builtin("环境卫生", "Sanitation"),
    "illegal_parking": _builtin("违章停车", "Illegal parking"),
    "tree": _builtin("树木倒伏", "Tree"),
    "environment": _builtin("生态环境", "Environment"),
    "area_warning": _builtin("区域预警", "Area warning"),
    "complaint": _builtin("投诉", "Complaint"),
    "other": _builtin("其他", "Other"),
}


class Taxonomy(Mapping[str, CategoryInfo]):
    """The categories the hub accepts, by name, in the order they were registered. Immutable: a reload
    builds a new one."""

    def __init__(self, categories: Mapping[str, CategoryInfo]):
        self._categories = dict(categories)

    def __getitem__(self, name: str) -> CategoryInfo:
        return self._categories[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._categories)

    def __len__(self) -> int:
        return len(self._categories)

    def __hash__(self) -> int:  # immutable, so hashable (a Mapping's __eq__ would otherwise drop __hash__)
        return hash(tuple(self._categories.items()))

    def names(self) -> frozenset[str]:
        """The accepted category names."""
        return frozenset(self._categories)

    def extended(self, layers: Iterable[tuple[str, Mapping[str, CategoryInfo]]]) -> Taxonomy:
        """This taxonomy with each ``(where, categories)`` layer added in order (a later entry replaces an
        earlier one of the same name); :class:`HubError` naming ``where`` for a malformed name."""
        categories = dict(self._categories)
        for where, layer in layers:
            for name, info in layer.items():
                if not isinstance(name, str) or re.fullmatch(CATEGORY_NAME_PATTERN, name) is None:
                    raise HubError(f"{where}: category name {name!r} must match {CATEGORY_NAME_PATTERN}")
                categories[name] = CategoryInfo.model_validate(info)
        return Taxonomy(categories)

    def unknown(self, name: object) -> str:
        """The reason an event of category ``name`` is refused, naming the known categories."""
        return f"unknown category {name!r}; known: {', '.join(sorted(self._categories))}"

    def check(self, name: str) -> str:
        """``name`` when known; :class:`UnknownCategoryError` naming the known ones otherwise."""
        if name not in self._categories:
            raise UnknownCategoryError(self.unknown(name))
        return name

    def default_severity(self, name: str) -> Severity:
        info = self._categories.get(name)
        return info.default_severity if info else Severity.MEDIUM

    def merge_groups(self) -> dict[str, list[str]]:
        """Each merge group with its categories (for :class:`hub.incidents.MergePolicy`)."""
        groups: dict[str, list[str]] = {}
        for name, info in self._categories.items():
            if info.merge_group is not None:
                groups.setdefault(info.merge_group, []).append(name)
        return groups

    def public(self) -> list[dict[str, Any]]:
        """Every category as JSON-ready dicts (``GET /api/categories``, the dashboard's labels)."""
        return [{"name": name, **info.model_dump(mode="json")} for name, info in self._categories.items()]


BUILTIN_TAXONOMY = Taxonomy(BUILTIN_CATEGORIES)


def categories_page(taxonomy: Taxonomy = BUILTIN_TAXONOMY) -> str:
    """``docs/categories.md``: the built-in taxonomy as a table, generated from the registry (a test keeps the
    committed page in step)."""
    rows = [
        f"| `{name}` | {info.label_zh} | {info.label_en} | `{info.default_severity.value}` | {info.merge_group or ''} |"
        for name, info in taxonomy.items()
    ]
    return "\n".join(
        [
            "# Event categories",
            "",
            "Generated from `hub.taxonomy` (`python -m hub.taxonomy > docs/categories.md`). These are the built-in",
            "categories, the default set. Plugins add categories or replace built-in ones through the",
            "`register_categories` hook ([plugin hooks](plugin_hooks.md#register_categorieshub)), and the config",
            "through `[categories.<name>]` sections ([config](config.md)); the running hub shows its whole taxonomy at",
            "`GET /api/categories` and in the category enum of `/asyncapi.json`. An event of a category the hub does",
            "not know goes to the DLQ (`CityHub-Reason-Kind: unknown_category`) with a reason naming the known ones.",
            "",
            "| name | 中文 | English | default severity | merge group |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(categories_page())
