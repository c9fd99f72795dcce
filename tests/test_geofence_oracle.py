"""The geofence agrees with shapely on real polygons and on a 150,000-cell tessellation.

Oracle: for each point, shapely's STRtree gives the polygons whose interior holds it (``within``) and
those whose closure holds it (``intersects``). The documented rule picks the smallest id among the
interior hits, else among the closure hits, so every point is compared, on-edge points included.
Layers are declared in the system of their coordinates, so nothing is converted on either side.
More than 1,000,000 random points in all (the shared-data cases skip when ../shared/data is absent).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.geofence import GridIndex, LayerSpec
from hub.gridgen import tessellate

HERE = Path(__file__).parent
SHIPPED = HERE.parent / "hub" / "data" / "grids" / "chengdu_admin_gcj02.geojson"
MANHATTAN = HERE / "data" / "geo" / "nyc_manhattan_tracts_2010.geojson"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")


class Oracle:
    """One flat layer (every feature a root cell of one level) and shapely's answer for it."""

    def __init__(self, collection: dict, id_property: str):
        features = collection["features"]
        self.ids = np.array([str(f["properties"][id_property]) for f in features])
        self.geometries = shapely.from_geojson([json.dumps(f["geometry"]) for f in features])
        flat = {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {"id": i, "level": "cell"}, "geometry": f["geometry"]}
                for i, f in zip(self.ids.tolist(), features, strict=True)
            ],
        }
        self.index = GridIndex.load([LayerSpec(name="flat", geojson=flat)], tolerance_m=0.0)
        self.tree = shapely.STRtree(self.geometries)

    def expected(self, lons: np.ndarray, lats: np.ndarray) -> list[str | None]:
        points = shapely.points(lons, lats)
        answer: list[str | None] = [None] * len(points)
        for predicate, overrides in (("intersects", False), ("within", True)):
            point_idx, poly_idx = self.tree.query(points, predicate=predicate)
            best: dict[int, str] = {}
            for p, cell_id in zip(point_idx.tolist(), self.ids[poly_idx].tolist(), strict=True):
                if p not in best or cell_id < best[p]:
                    best[p] = cell_id
            for p, cell_id in best.items():
                if overrides or answer[p] is None:
                    answer[p] = cell_id
        return answer

    def actual(self, lons: np.ndarray, lats: np.ndarray) -> list[str | None]:
        arrays = self.index.locate_arrays(lons, lats)
        offsets, cells = arrays.offsets.tolist(), arrays.cells.tolist()
        return [
            self.index.cell(cells[offsets[i]]).id if offsets[i + 1] > offsets[i] else None for i in range(len(lons))
        ]

    def mismatches(self, lons, lats) -> list[tuple[float, float, str | None, str | None]]:
        lons, lats = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
        return [
            (x, y, e, a)
            for x, y, e, a in zip(
                lons.tolist(), lats.tolist(), self.expected(lons, lats), self.actual(lons, lats), strict=True
            )
            if e != a
        ]

    def random_points(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        west, south, east, north = shapely.total_bounds(self.geometries)
        rng = np.random.default_rng(seed)
        return rng.uniform(west, east, count), rng.uniform(south, north, count)

    def edge_points(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Points on polygon edges (interpolated, so exactly-on or within an ulp), on vertices, and a few
        nanodegrees to micro-degrees beside edges."""
        rng = np.random.default_rng(seed)
        coords = shapely.get_coordinates(shapely.boundary(self.geometries))
        starts = rng.integers(0, len(coords) - 1, count)
        a, b = coords[starts], coords[starts + 1]
        t = rng.uniform(0, 1, (count, 1))
        t[: count // 4] = 0.0
        points = a + t * (b - a)
        offset = rng.choice([0.0, 0.0, 1e-9, -1e-9, 1e-7, -1e-6], (count, 2))
        points += offset
        return points[:, 0], points[:, 1]


def features_of(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def shipped_levels() -> dict[str, Oracle]:
    grid = features_of(SHIPPED)
    levels = sorted({f["properties"]["level"] for f in grid["features"]})
    return {
        level: Oracle({"features": [f for f in grid["features"] if f["properties"]["level"] == level]}, "id")
        for level in levels
    }


@pytest.fixture(scope="module")
def manhattan() -> Oracle:
    return Oracle(features_of(MANHATTAN), "BoroCT2010")


def test_shipped_grid_every_level_random_points(shipped_levels):
    for number, (level, oracle) in enumerate(shipped_levels.items()):
        assert oracle.mismatches(*oracle.random_points(40_000, seed=number)) == [], level


def test_shipped_grid_edges_and_vertices(shipped_levels):
    for number, (level, oracle) in enumerate(shipped_levels.items()):
        assert oracle.mismatches(*oracle.edge_points(4_000, seed=number)) == [], level


def test_manhattan_tracts(manhattan):
    assert manhattan.mismatches(*manhattan.random_points(100_000, seed=1)) == []
    assert manhattan.mismatches(*manhattan.edge_points(10_000, seed=2)) == []


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1))
def test_manhattan_hypothesis(manhattan, fx, fy):
    west, south, east, north = shapely.total_bounds(manhattan.geometries)
    assert manhattan.mismatches([west + fx * (east - west)], [south + fy * (north - south)]) == []


@needs_shared
@pytest.mark.parametrize(
    ("path", "id_property", "random_count"),
    [
        ("china-admin/chengdu_districts_fullres_gcj02.geojson", "adcode", 100_000),
        ("china-admin/china_county_level_datav_gcj02.geojson.gz", "adcode", 200_000),
        ("nyc-polygons/nyc_census_tracts_2010.geojson", "BoroCT2010", 200_000),
    ],
)
def test_shared_real_polygons(path, id_property, random_count):
    oracle = Oracle(features_of(SHARED / path), id_property)
    mismatches = oracle.mismatches(*oracle.random_points(random_count, seed=3))
    mismatches += oracle.mismatches(*oracle.edge_points(20_000, seed=4))
    assert mismatches == []


@pytest.fixture(scope="module")
def tessellation_150k() -> dict:
    districts = features_of(SHARED / "china-admin" / "chengdu_districts_datav_gcj02.geojson")
    return tessellate(districts, sizes_m=(6000, 3000, 1200, 320), seed=7)


@needs_shared
def test_150k_cell_tessellation(tessellation_150k):
    features = tessellation_150k["features"]
    assert len(features) >= 150_000
    micro = Oracle({"features": [f for f in features if f["properties"]["level"] == "micro_grid"]}, "id")
    mismatches = micro.mismatches(*micro.random_points(300_000, seed=5))
    mismatches += micro.mismatches(*micro.edge_points(20_000, seed=6))
    assert mismatches == []
