"""A hub's scope — the whole city, one district or one street — read from the admin grid hierarchy the hub
already loads, and the checks ``cityhub validate`` makes of ``[tier]`` against it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import orjson

from hub.errors import GeoError
from hub.geofence import LayerSpec

CITY = "city"
Level = Literal["city", "district", "street"]
HUB_LEVELS: tuple[Level, ...] = ("city", "district", "street")


@dataclass(frozen=True)
class Scope:
    """What one hub owns: ``code`` is ``city``, a district's cell id or a street's; ``district`` is the district
    that holds it (None for the city)."""

    level: Level
    code: str
    district: str | None = None

    @property
    def domain(self) -> str:
        """The JetStream domain of this scope's hub: its API is ``$JS.<domain>.API`` from the other tiers."""
        return self.code

    def holds(self, district: str | None, street: str | None) -> bool:
        """Whether a location in ``district`` / ``street`` is this scope's."""
        if self.level == "city":
            return True
        if self.level == "district":
            return district == self.code
        return street == self.code


CITY_SCOPE = Scope("city", CITY)


@dataclass(frozen=True)
class GridCode:
    level: str
    parent: str | None


class GridHierarchy:
    """The admin cells' levels and parents, by cell id (from the ``kind = "admin"`` layers)."""

    def __init__(self, codes: dict[str, GridCode]):
        self._codes = codes

    @classmethod
    def from_layers(cls, layers: Iterable[LayerSpec]) -> GridHierarchy:
        codes: dict[str, GridCode] = {}
        for layer in layers:
            if layer.kind == "admin":
                codes.update(_layer_codes(layer))
        return cls(codes)

    def codes_on(self, level: str) -> list[str]:
        return sorted(code for code, cell in self._codes.items() if cell.level == level)

    def scope(self, code: str) -> Scope:
        """The scope named by ``code``; :class:`ValueError` saying why it cannot be one."""
        if code == CITY:
            return CITY_SCOPE
        cell = self._codes.get(code)
        if cell is None:
            known = ", ".join(self.codes_on("district")) or "none"
            raise ValueError(
                f"{code!r} is not a cell of the admin grids (write 'city', a district code such as "
                f"one of {known}, or a street code)"
            )
        if cell.level == "district":
            return Scope("district", code, code)
        if cell.level == "street":
            return Scope("street", code, cell.parent)
        raise ValueError(f"{code!r} is a {cell.level}: a hub's scope is the city, a district or a street")


def _layer_codes(layer: LayerSpec) -> dict[str, GridCode]:
    try:
        collection = orjson.loads(layer.geojson_bytes())
    except orjson.JSONDecodeError as exc:
        raise GeoError(f"layer {layer.name!r}: not JSON: {exc}") from None
    codes = {}
    for feature in collection.get("features", [collection]):
        properties = feature.get("properties") or {}
        code = properties.get(layer.id_property, feature.get("id"))
        if code is not None:
            codes[str(code)] = GridCode(
                str(properties.get(layer.level_property)), properties.get(layer.parent_property)
            )
    return codes


def parent_code(scope: Scope) -> str | None:
    """The scope one tier up in the grid hierarchy (None for the city)."""
    return {"city": None, "district": CITY, "street": scope.district}[scope.level]


def parent_problem(scope: Scope, parent: Scope) -> str | None:
    """Why ``parent`` cannot be the parent hub of ``scope`` (None when it can): a district's parent is the city,
    a street's is the district that holds it."""
    if scope.level == "city":
        return "the city hub has no parent: remove [tier.parent]"
    if parent.code == parent_code(scope):
        return None
    if scope.level == "district":
        return f"district {scope.code}'s parent hub is the city, not {parent.code!r}"
    return f"street {scope.code} is in district {scope.district}, not in the parent's scope {parent.code!r}"
