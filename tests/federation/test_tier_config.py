"""``[tier]`` is checked against the admin grids: unknown codes, a parent that is not one tier up and children
that are not one tier down are config errors at their lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import load_config
from hub.errors import ConfigError
from hub.federation.scope import GridHierarchy, Scope
from hub.geofence import LayerSpec

REPO = Path(__file__).resolve().parents[2]
GRIDS = REPO / "hub" / "data" / "grids" / "chengdu_admin_gcj02.geojson"


def config_with(tmp_path: Path, tier: str) -> Path:
    path = tmp_path / "cityhub.toml"
    path.write_text(f'[[geo.layers]]\nname = "admin"\npath = "{GRIDS}"\ncrs = "gcj02"\n\n{tier}', encoding="utf-8")
    return path


def issues_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return [str(issue) for issue in caught.value.issues]


def test_a_street_under_its_district_and_a_district_with_its_streets_are_valid(tmp_path):
    street = load_config(config_with(tmp_path, '[tier]\nscope = "510104-01"\nparent = { scope = "510104" }\n'))
    assert street.tier.parent.scope == "510104"
    district = load_config(
        config_with(
            tmp_path, '[tier]\nscope = "510104"\nchildren = ["510104-01", "510104-02"]\n[tier.parent]\nscope = "city"\n'
        )
    )
    assert district.tier.children == ["510104-01", "510104-02"]


def test_an_unknown_code_is_an_error_at_its_line(tmp_path):
    path = config_with(tmp_path, '[tier]\nscope = "510199"\n')
    [issue] = issues_of(path)
    assert issue.startswith(f"{path}:7: tier.scope: '510199' is not a cell of the admin grids")
    assert all(known in issue for known in ("510104", "510105", "510108"))  # the known district codes named


def test_a_street_whose_district_is_not_the_parents_scope_is_an_error_at_its_line(tmp_path):
    path = config_with(tmp_path, '[tier]\nscope = "510104-01"\n\n[tier.parent]\nscope = "510105"\n')
    [issue] = issues_of(path)
    assert issue == (
        f"{path}:10: tier.parent.scope: street 510104-01 is in district 510104, not in the parent's scope '510105'"
    )


def test_a_community_a_city_with_a_parent_and_a_foreign_child_are_errors(tmp_path):
    community = config_with(tmp_path, '[tier]\nscope = "510104-01-01"\n')
    assert "is a community: a hub's scope is the city, a district or a street" in issues_of(community)[0]
    city = config_with(tmp_path, '[tier]\nparent = { scope = "510104" }\n')
    assert "the city hub has no parent" in issues_of(city)[0]
    foreign = config_with(tmp_path, '[tier]\nscope = "510104"\nchildren = ["510104-01",\n  "510105-02"]\n')
    [issue] = issues_of(foreign)
    assert issue.startswith(f"{foreign}:9: tier.children[1]: not a child of this hub: street 510105-02 is in district")


def test_scopes_hold_their_own_places():
    hierarchy = GridHierarchy.from_layers([LayerSpec(name="admin", path=GRIDS, crs="gcj02")])
    street, district = hierarchy.scope("510104-01"), hierarchy.scope("510104")
    assert street == Scope("street", "510104-01", "510104") and district == Scope("district", "510104", "510104")
    assert street.holds("510104", "510104-01") and not street.holds("510104", "510104-02")
    assert district.holds("510104", None) and not district.holds("510105", "510105-01")
    assert hierarchy.scope("city").holds(None, None)
