"""Geofence benchmarks: 150,000+ cells, 1,000,000 points, CityHub beside shapely 2's STRtree in the same run.

The cells are a deterministic tessellation (hub.gridgen) inside the three real Chengdu districts shipped in
hub/data/grids: district → street → community → grid → micro-grid (40 m micro-grids, as in the dense centre),
about 157,000 cells. Points are uniform over the districts' bounding box (some fall outside every cell).
shapely's peer query is the vectorised ``STRtree.query(points, predicate=...)`` over all cells, which
returns (point, polygon) pairs; CityHub returns one cell per level plus the admin chain per point.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from benchmarks.report import label
from hub.geofence import GridIndex, LayerSpec
from hub.gridgen import tessellate

GRIDS = Path(__file__).resolve().parents[1] / "hub" / "data" / "grids"
POINTS = 1_000_000
SIZES_M = (1000.0, 500.0, 150.0, 40.0)
# The three central districts (Jinjiang, Qingyang, Chenghua): about 150k cells at SIZES_M. All twenty districts
# of the shipped grids would make millions.
CENTRAL_DISTRICTS = ("510104", "510105", "510108")


@pytest.fixture(scope="module")
def tessellation() -> dict:
    shipped = json.loads((GRIDS / "chengdu_admin_gcj02.geojson").read_text())
    districts = [f for f in shipped["features"] if f["properties"]["id"] in CENTRAL_DISTRICTS]
    for district in districts:
        district["properties"]["adcode"] = district["properties"]["id"]
    return tessellate({"type": "FeatureCollection", "features": districts}, sizes_m=SIZES_M, seed=11)


@pytest.fixture(scope="module")
def index(tessellation) -> GridIndex:
    return GridIndex.load([LayerSpec(name="admin", geojson=tessellation)])


@pytest.fixture(scope="module")
def shapely_tree(tessellation) -> shapely.STRtree:
    geometries = shapely.from_geojson([json.dumps(f["geometry"]) for f in tessellation["features"]])
    shapely.prepare(geometries)
    return shapely.STRtree(geometries)


@pytest.fixture(scope="module")
def points(index, shapely_tree) -> tuple[np.ndarray, np.ndarray]:
    west, south, east, north = shapely.total_bounds(shapely_tree.geometries)
    rng = np.random.default_rng(0)
    return rng.uniform(west, east, POINTS), rng.uniform(south, north, POINTS)


def memory_note(index: GridIndex) -> str:
    memory = index.memory_use()
    raw = memory["raw_vertex_bytes"]
    core = memory["geometry"] + memory["spatial_index"]
    with_metadata = core + memory["metadata"]
    return (
        f"{len(index):,} cells; raw vertex data {raw / 1e6:.1f} MB; geometry + spatial index "
        f"{core / 1e6:.1f} MB = {core / raw:.2f}x raw; "
        f"with ids/names/levels {with_metadata / 1e6:.1f} MB = {with_metadata / raw:.2f}x raw"
    )


POINT_GROUP = "geofence: point → cells, 150k cells, 1M points"


def test_cityhub_locate_arrays(benchmark, index, points):
    label(benchmark, POINT_GROUP, "cityhub", POINTS, memory_note(index))
    result = benchmark.pedantic(index.locate_arrays, args=points, rounds=3, iterations=1)
    assert len(result.admin_counts) == POINTS


def test_cityhub_locate_many_python_objects(benchmark, index, points):
    lons, lats = points[0][:200_000], points[1][:200_000]
    label(benchmark, POINT_GROUP, "cityhub", len(lons), "locate_many: Resolution/Cell objects for every point")
    result = benchmark.pedantic(index.locate_many, args=(lons, lats), rounds=2, iterations=1)
    assert len(result) == len(lons)


@pytest.mark.parametrize("predicate", ["within", "intersects"])
def test_shapely_strtree_query(benchmark, shapely_tree, points, predicate):
    shapely_points = shapely.points(*points)
    label(
        benchmark,
        POINT_GROUP,
        "peer",
        POINTS,
        f"shapely {shapely.__version__} STRtree.query(points, predicate={predicate!r}), prepared",
    )
    pairs = benchmark.pedantic(
        shapely_tree.query, args=(shapely_points,), kwargs={"predicate": predicate}, rounds=2, iterations=1
    )
    assert pairs.shape[0] == 2


@pytest.mark.parametrize("batch", [1, 100, 10_000])
def test_boundary_crossing_cost(benchmark, index, points, batch):
    lons, lats = points[0][:batch].copy(), points[1][:batch].copy()
    label(benchmark, f"geofence: crossing into Rust, batch of {batch:,}", "cityhub", batch)
    benchmark(index.locate_arrays, lons, lats)


@pytest.mark.parametrize("batch", [1, 100, 10_000])
def test_boundary_crossing_shapely(benchmark, shapely_tree, points, batch):
    shapely_points = shapely.points(points[0][:batch], points[1][:batch])
    label(benchmark, f"geofence: crossing into Rust, batch of {batch:,}", "peer", batch, "shapely STRtree.query within")
    benchmark(shapely_tree.query, shapely_points, predicate="within")


AREAS = 200


@pytest.fixture(scope="module")
def areas(points) -> list:
    rng = np.random.default_rng(1)
    picks = rng.integers(0, POINTS, AREAS)
    return [shapely.Point(points[0][i], points[1][i]).buffer(rng.uniform(0.002, 0.01), 8) for i in picks]


AREA_GROUP = f"geofence: polygon → intersecting cells, {AREAS} warning areas (200–1,000 m)"


@pytest.fixture(scope="module")
def areas_geojson(areas) -> list:
    return [json.loads(shapely.to_geojson(area)) for area in areas]


def test_cityhub_cells_intersecting_arrays(benchmark, index, areas_geojson):
    label(
        benchmark,
        AREA_GROUP,
        "cityhub",
        AREAS,
        "cells_intersecting_arrays: all areas in one crossing, cell indices (like shapely)",
    )
    result = benchmark.pedantic(index.cells_intersecting_arrays, args=(areas_geojson,), rounds=3, iterations=1)
    assert len(result.offsets) == AREAS + 1


def test_cityhub_cells_intersecting_cells(benchmark, index, areas_geojson):
    label(benchmark, AREA_GROUP, "cityhub", AREAS, "cells_intersecting: one call per area, Cell objects")

    def run():
        return [index.cells_intersecting(area) for area in areas_geojson]

    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert len(result) == AREAS


def test_shapely_cells_intersecting(benchmark, shapely_tree, areas):
    label(benchmark, AREA_GROUP, "peer", AREAS, "shapely STRtree.query(areas, predicate='intersects'), prepared cells")
    result = benchmark.pedantic(
        shapely_tree.query, args=(np.array(areas),), kwargs={"predicate": "intersects"}, rounds=3, iterations=1
    )
    assert result.shape[0] == 2


def test_cityhub_load(benchmark, tessellation):
    text = json.dumps(tessellation).encode()
    label(
        benchmark,
        "geofence: load 150k cells from GeoJSON",
        "cityhub",
        len(tessellation["features"]),
        f"{len(text) / 1e6:.0f} MB of GeoJSON",
    )

    def load():
        return GridIndex.load([LayerSpec(name="admin", geojson=tessellation)])

    benchmark.pedantic(load, rounds=2, iterations=1)


def test_shapely_load(benchmark, tessellation):
    label(
        benchmark,
        "geofence: load 150k cells from GeoJSON",
        "peer",
        len(tessellation["features"]),
        "shapely.from_geojson + STRtree",
    )

    def load():
        geometries = shapely.from_geojson([json.dumps(f["geometry"]) for f in tessellation["features"]])
        return shapely.STRtree(geometries)

    benchmark.pedantic(load, rounds=2, iterations=1)
