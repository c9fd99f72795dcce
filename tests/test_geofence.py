"""Geofence API: hierarchy and overlays, edge rule, tolerance, CRS, area query, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.coords import convert_point
from hub.errors import GeoError
from hub.geofence import Cell, GridIndex, LayerSpec
from hub.models import GridCell

GRIDS = Path(__file__).parent.parent / "hub" / "data" / "grids"
METRES_PER_DEGREE = 111_195.08


def square(cell_id, level, x0, y0, size, parent=None, holes=()):
    ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]
    return {
        "type": "Feature",
        "properties": {"id": cell_id, "name": f"name {cell_id}", "level": level, "parent": parent},
        "geometry": {"type": "Polygon", "coordinates": [ring, *holes]},
    }


def collection(*features):
    return {"type": "FeatureCollection", "features": list(features)}


@pytest.fixture(scope="module")
def small_index() -> GridIndex:
    hole = [[0.0004, 0.0004], [0.0006, 0.0004], [0.0006, 0.0006], [0.0004, 0.0006], [0.0004, 0.0004]]
    admin = collection(
        square("d1", "district", 0.0, 0.0, 0.002),
        square("s1", "street", 0.0, 0.0, 0.001, parent="d1", holes=[hole]),
        square("s2", "street", 0.001, 0.0, 0.001, parent="d1"),
    )
    overlay = collection(square("school-1", "school", 0.0015, 0.0005, 0.0002))
    return GridIndex.load(
        [LayerSpec(name="admin", geojson=admin), LayerSpec(name="zones", geojson=overlay, kind="overlay")],
        tolerance_m=30.0,
    )


def ids(resolution):
    return [cell.id for cell in resolution.cells]


def test_point_gets_every_level_most_specific_first_and_admin_path(small_index):
    res = small_index.locate(0.0016, 0.0006)
    assert ids(res) == ["s2", "d1", "school-1"]
    assert [c.level for c in res.admin_path] == ["district", "street"]
    assert res.cells[0] == Cell("admin", "street", "s2", "name s2", 0.0)
    assert not res.outside


def test_hole_is_not_in_its_cell(small_index):
    assert ids(small_index.locate(0.0005, 0.0005)) == ["d1"]


def test_shared_edge_goes_to_the_smaller_id(small_index):
    assert ids(small_index.locate(0.001, 0.0003)) == ["s1", "d1"]


def test_tolerance_resolves_nearest_cell_with_distance(small_index):
    res = small_index.locate(-10 / METRES_PER_DEGREE, 0.0003)
    assert ids(res) == ["s1", "d1"]
    assert res.cells[0].distance_m == pytest.approx(10.0, rel=1e-3)
    assert small_index.locate(-40 / METRES_PER_DEGREE, 0.0003).outside


def test_overlay_within_tolerance_reports_its_distance(small_index):
    res = small_index.locate(0.0015 - 5 / METRES_PER_DEGREE, 0.0006)
    assert res.cells[-1].id == "school-1" and res.cells[-1].distance_m == pytest.approx(5.0, rel=1e-2)


def test_locate_many_equals_single_and_cell_converts_to_grid_cell(small_index):
    lons, lats = [0.0016, 0.0005, 1.0], [0.0006, 0.0005, 1.0]
    batch = small_index.locate_many(np.array(lons), np.array(lats))
    assert batch == [small_index.locate(x, y) for x, y in zip(lons, lats, strict=True)]
    assert batch[0].cells[0].to_grid_cell() == GridCell(layer="admin", level="street", id="s2", name="name s2")


def test_gcj02_layer_and_queries_in_every_system():
    index = GridIndex.load([LayerSpec(name="admin", path=GRIDS / "chengdu_admin_gcj02.geojson", crs="gcj02")])
    gcj = (104.0807, 30.6570)
    expected = index.locate(*gcj, crs="gcj02")
    assert expected.admin_path[0].name == "锦江区"
    assert index.locate(*convert_point(*gcj, "gcj02", "wgs84"), crs="wgs84") == expected
    assert index.locate(*convert_point(*gcj, "gcj02", "bd09"), crs="bd09").admin_path == expected.admin_path


def test_polygon_query_matches_shapely_intersects():
    grid = json.loads((GRIDS / "chengdu_admin_gcj02.geojson").read_text())
    index = GridIndex.load([LayerSpec(name="admin", geojson=grid)], tolerance_m=0)
    geometries = shapely.from_geojson([json.dumps(f["geometry"]) for f in grid["features"]])
    rng = np.random.default_rng(0)
    west, south, east, north = shapely.total_bounds(geometries)
    for _ in range(30):
        x, y = rng.uniform(west, east), rng.uniform(south, north)
        area = shapely.Point(x, y).buffer(rng.uniform(0.001, 0.02), 6)
        expected = {
            grid["features"][i]["properties"]["id"] for i in np.flatnonzero(shapely.intersects(geometries, area))
        }
        actual = {cell.id for cell in index.cells_intersecting(json.loads(shapely.to_geojson(area)))}
        assert actual == expected
    for number in rng.integers(0, len(grid["features"]), 40):
        area = grid["features"][number]["geometry"]  # touches its neighbours exactly along shared edges
        expected = {
            grid["features"][i]["properties"]["id"]
            for i in np.flatnonzero(shapely.intersects(geometries, shapely.from_geojson(json.dumps(area))))
        }
        assert {cell.id for cell in index.cells_intersecting(area)} == expected
    ring = shapely.Point(104.08, 30.66).buffer(0.02, 8).difference(shapely.Point(104.08, 30.66).buffer(0.01, 8))
    holey = shapely.MultiPolygon([ring, shapely.Point(104.0, 30.7).buffer(0.005, 4)])
    expected = {grid["features"][i]["properties"]["id"] for i in np.flatnonzero(shapely.intersects(geometries, holey))}
    assert {
        cell.id for cell in index.cells_intersecting(json.loads(shapely.to_geojson(holey)), crs="wgs84")
    } == expected
    line = {"type": "LineString", "coordinates": [[west, south], [east, north]]}
    assert {c.id for c in index.cells_intersecting(line)} == {
        grid["features"][i]["properties"]["id"]
        for i in np.flatnonzero(shapely.intersects(geometries, shapely.from_geojson(json.dumps(line))))
    }


BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}


def feature(geometry, **properties):
    return {"type": "Feature", "properties": {"id": "a", "level": "x", **properties}, "geometry": geometry}


@pytest.mark.parametrize(
    ("geojson", "message"),
    [
        ({"type": "Topology"}, "expected a FeatureCollection or a Feature"),
        ({"type": "FeatureCollection"}, 'no "features" array'),
        (collection(feature({"type": "Point", "coordinates": [1, 2]})), r"feature #0 \(id \"a\"\).*not a Polygon"),
        (collection(feature(None)), 'no "type"'),
        (
            collection(
                square("a", "x", 0, 0, 1),
                feature({"type": "Polygon", "coordinates": [[[0, 0], [1, float("nan")], [1, 1], [0, 0]]]}, id="b"),
            ),
            r"feature #1 \(id \"b\"\).*not a number",
        ),
        (collection(feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 95], [1, 1], [0, 0]]]})), "out of range"),
        (collection(feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]})), "not closed"),
        (collection(feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]})), "at least 4"),
        (collection(square("a", "x", 0, 0, 1), square("a", "x", 2, 0, 1)), "id is used twice"),
        (collection(square("a", "x", 0, 0, 1, parent="zz")), 'parent id "zz" is not a cell'),
        (collection(square("a", "x", 0, 0, 1, parent="b"), square("b", "x", 0, 0, 1, parent="a")), "cycle"),
        (
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {"level": "x"}, "geometry": BOWTIE}],
            },
            "no id",
        ),
    ],
)
def test_bad_layers_raise_geo_error_naming_layer_and_feature(geojson, message):
    with pytest.raises(GeoError, match=message) as raised:
        GridIndex.load([LayerSpec(name="bad", geojson=geojson)])
    assert 'layer "bad"' in str(raised.value)


def test_self_intersecting_polygon_rejected_when_strict_accepted_even_odd_otherwise():
    layer = collection(feature(BOWTIE))
    with pytest.raises(GeoError, match=r"feature #0 \(id \"a\"\): invalid polygon: .*self-intersection"):
        GridIndex.load([LayerSpec(name="bad", geojson=layer, strict=True)])
    index = GridIndex.load([LayerSpec(name="lenient", geojson=layer)], tolerance_m=0)
    assert ids(index.locate(0.2, 0.5)) == ["a"]  # the left lobe of the bowtie
    assert index.locate(0.5, 0.2).outside  # between the lobes


def test_broken_json_file_and_missing_file(tmp_path):
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(GeoError, match=r"not valid JSON: .*line 1"):
        GridIndex.load([LayerSpec(name="x", path=broken)])
    with pytest.raises(GeoError, match="cannot read"):
        GridIndex.load([LayerSpec(name="x", path=tmp_path / "missing.geojson")])


def test_bad_query_points_name_their_position(small_index):
    with pytest.raises(GeoError, match="point #1"):
        small_index.locate_many([0.0, float("nan")], [0.0, 0.0])
    with pytest.raises(GeoError, match="out of range"):
        small_index.locate(0.0, 91.0)
    with pytest.raises(GeoError, match="unknown coordinate system"):
        small_index.locate(0.0, 0.0, crs="epsg:4326")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["type", "coordinates", "features", "geometry", "properties", "id", "level"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzzed_layers_load_or_raise_geo_error(value):
    try:
        index = GridIndex.load([LayerSpec(name="fuzz", geojson={"type": "FeatureCollection", "features": [value]})])
    except GeoError:
        return
    assert len(index) <= 1  # one feature makes at most one cell


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzzed_bytes_load_or_raise_geo_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "layer.geojson"
    path.write_bytes(data)
    with pytest.raises(GeoError):
        GridIndex.load([LayerSpec(name="fuzz", path=path)])


# Nanodegree resolution, like real data: double-precision orientation predicates (ours and GEOS's) are
# only exact while products of coordinate differences do not underflow (≈1e-150°), far below any map.
nano_degrees = st.integers(-2_000_000_000, 2_000_000_000).map(lambda n: n / 1e9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(nano_degrees, nano_degrees), min_size=3, max_size=12))
def test_fuzzed_rings_agree_with_shapely_or_are_rejected(points):
    ring = [list(p) for p in points] + [list(points[0])]
    layer = collection(feature({"type": "Polygon", "coordinates": [ring]}))
    try:
        index = GridIndex.load([LayerSpec(name="fuzz", geojson=layer, strict=True)], tolerance_m=0)
    except GeoError:
        return
    polygon = shapely.Polygon(ring)
    for x, y in [(0.0, 0.0), (0.5, 0.5), (-1.0, 1.0), *points]:
        assert (not index.locate(x, y).outside) == polygon.intersects(shapely.Point(x, y))


def test_layer_spec_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of path or geojson"):
        LayerSpec(name="x")


def test_memory_use_is_reported(small_index):
    memory = small_index.memory_use()
    assert memory["raw_vertex_bytes"] == 4 * 5 * 16 + 5 * 16
    assert set(memory) == {"geometry", "spatial_index", "metadata", "raw_vertex_bytes"}
    assert orjson.dumps(memory)


@pytest.fixture(scope="module")
def shipped_cells():
    grid = json.loads((GRIDS / "chengdu_admin_gcj02.geojson").read_text())
    index = GridIndex.load([LayerSpec(name="admin", geojson=grid)], tolerance_m=0)
    geometries = shapely.from_geojson([json.dumps(f["geometry"]) for f in grid["features"]])
    return index, geometries, [f["properties"]["id"] for f in grid["features"]]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(104.05, 104.12), st.floats(30.62, 30.70)), min_size=3, max_size=6))
def test_polygon_query_hypothesis(shipped_cells, corners):
    index, geometries, cell_ids = shipped_cells
    area = shapely.Polygon(corners)
    if not area.is_valid or area.area == 0:
        return
    expected = {cell_ids[i] for i in np.flatnonzero(shapely.intersects(geometries, area))}
    assert {c.id for c in index.cells_intersecting(json.loads(shapely.to_geojson(area)))} == expected


def test_polygon_batch_equals_one_area_at_a_time(shipped_cells):
    index, geometries, _ = shipped_cells
    rng = np.random.default_rng(3)
    west, south, east, north = shapely.total_bounds(geometries)
    areas = [
        json.loads(
            shapely.to_geojson(shapely.Point(rng.uniform(west, east), rng.uniform(south, north)).buffer(0.01, 6))
        )
        for _ in range(20)
    ]
    areas.append({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]})  # far away: no cells
    found = index.cells_intersecting_arrays(areas, crs="gcj02")
    assert len(found.offsets) == len(areas) + 1
    for number, area in enumerate(areas):
        cells = found.cells[found.offsets[number] : found.offsets[number + 1]]
        assert [index.cell(c) for c in cells] == index.cells_intersecting(area, crs="gcj02")


def test_polygon_batch_error_names_the_geometry(shipped_cells):
    index, _, _ = shipped_cells
    good = {"type": "Point", "coordinates": [104.08, 30.66]}
    with pytest.raises(GeoError, match="geometry #1"):
        index.cells_intersecting_arrays([good, {"type": "Polygon", "coordinates": "nope"}])


def test_admin_path_of_every_shipped_cell_follows_the_parent_ids_of_the_file(shipped_cells):
    index, _, _ = shipped_cells
    grid = json.loads((GRIDS / "chengdu_admin_gcj02.geojson").read_text())
    parents = {f["properties"]["id"]: f["properties"]["parent"] for f in grid["features"]}
    for position in range(len(index)):
        path = index.admin_path(position)
        expected = [index.cell(position).id]
        while parents[expected[0]] is not None:
            expected.insert(0, parents[expected[0]])
        assert [cell.id for cell in path] == expected
        assert path[-1] == index.cell(position)


def test_admin_path_is_what_locate_gives_for_a_point_in_the_cell(shipped_cells):
    index, geometries, _ = shipped_cells
    for geometry in geometries[::97]:
        lon, lat = shapely.get_coordinates(shapely.point_on_surface(geometry))[0]
        deepest = index.locate_arrays([lon], [lat]).cells[0]
        assert index.admin_path(deepest) == index.locate(lon, lat).admin_path
