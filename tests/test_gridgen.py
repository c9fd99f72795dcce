"""The generated sample grids: the shipped file covers every district and county of Chengdu with every level,
and appending districts to a tessellation leaves the cells of the ones before unchanged."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from hub.gridgen import ADMIN_LEVELS, tessellate

SHIPPED = Path(__file__).resolve().parents[1] / "hub" / "data" / "grids" / "chengdu_admin_gcj02.geojson"
CHENGDU_COUNTY_LEVEL_UNITS = 20  # 12 districts, 3 counties, 5 county-level cities


def shipped() -> list[dict]:
    return orjson.loads(SHIPPED.read_bytes())["features"]


def outlines(*ids: str) -> dict:
    """Real district outlines from the shipped file, in the order asked, as tessellate's input."""
    by_id = {f["properties"]["id"]: f for f in shipped() if f["properties"]["level"] == "district"}
    return {
        "type": "FeatureCollection",
        "features": [{**by_id[i], "properties": {"adcode": i, "name": by_id[i]["properties"]["name"]}} for i in ids],
    }


def test_the_shipped_grids_cover_every_district_and_county_of_chengdu_on_every_level():
    features = shipped()
    districts = {f["properties"]["id"] for f in features if f["properties"]["level"] == "district"}
    assert len(districts) == CHENGDU_COUNTY_LEVEL_UNITS
    levels_per_district = Counter((f["properties"]["id"].split("-")[0], f["properties"]["level"]) for f in features)
    assert all(levels_per_district[(district, level)] >= 1 for district in districts for level in ADMIN_LEVELS)
    assert all(f["properties"]["generated"] == (f["properties"]["level"] != "district") for f in features)


def test_appending_districts_keeps_the_cells_before_and_sizes_apply_per_district():
    alone = tessellate(outlines("510104"), sizes_m=(4000, 2000, 1000, 800))["features"]
    appended = tessellate(
        outlines("510104", "510121"),
        sizes_m=(4000, 2000, 1000, 800),
        sizes_by_district={"510121": (20000, 10000, 8000, 6000)},
    )["features"]
    assert appended[: len(alone)] == alone
    county = Counter(f["properties"]["level"] for f in appended[len(alone) :])
    city = Counter(f["properties"]["level"] for f in alone)
    assert county["micro_grid"] < city["micro_grid"]  # 金堂县 is ten times 锦江区's area, cut far coarser
