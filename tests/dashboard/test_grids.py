"""Grid drawing: the configured layers simplified, converted to WGS-84, with clear errors for bad files."""

from __future__ import annotations

import os

import orjson
import pytest
from shapely.geometry import shape
from stream_samples import grid_collection

from hub.config import GeoLayer
from hub.coords import convert
from hub.dashboard.grids import GridDrawing
from hub.errors import GeoError
from tests.pipeline_support import GRIDS


def _vertices(collection: dict) -> int:
    return sum(
        len(shape(f["geometry"]).exterior.coords)
        if f["geometry"]["type"] == "Polygon"
        else sum(len(p.exterior.coords) for p in shape(f["geometry"]).geoms)
        for f in collection["features"]
    )


def test_sample_grids_are_drawn_in_wgs84_with_fewer_vertices():
    source = orjson.loads((GRIDS / "chengdu_admin_gcj02.geojson").read_bytes())
    layer = GeoLayer(name="admin", path=GRIDS / "chengdu_admin_gcj02.geojson", crs="gcj02")
    drawn = orjson.loads(GridDrawing().geojson([layer]))
    assert len(drawn["features"]) == len(source["features"])
    assert _vertices(drawn) < _vertices(source)
    district = next(f for f in drawn["features"] if f["properties"]["id"] == "510104")
    assert district["properties"] == {"id": "510104", "name": "锦江区", "level": "district", "layer": "admin"}
    # GCJ-02 sits a few hundred metres north-east of WGS-84 in Chengdu: the drawn outline moved back.
    original = shape(next(f for f in source["features"] if f["properties"]["id"] == "510104")["geometry"])
    moved = shape(district["geometry"])
    (lon,), (lat,) = convert([original.centroid.x], [original.centroid.y], "gcj02", "wgs84")
    assert moved.centroid.distance(shape({"type": "Point", "coordinates": [lon, lat]})) < 1e-4
    assert original.centroid.x - moved.centroid.x > 0.002


def test_wgs84_layers_keep_their_coordinates(tmp_path):
    path = tmp_path / "grid.geojson"
    path.write_bytes(orjson.dumps(grid_collection()))
    drawn = orjson.loads(GridDrawing().geojson([GeoLayer(name="admin", path=path)]))
    assert (
        drawn["features"][0]["geometry"]["coordinates"] == grid_collection()["features"][0]["geometry"]["coordinates"]
    )


def test_a_changed_file_is_drawn_again(tmp_path):
    path = tmp_path / "grid.geojson"
    collection = grid_collection()
    path.write_bytes(orjson.dumps(collection))
    drawing, layer = GridDrawing(), GeoLayer(name="admin", path=path)
    assert len(orjson.loads(drawing.geojson([layer]))["features"]) == 42
    collection["features"] = collection["features"][:2]
    path.write_bytes(orjson.dumps(collection))
    os.utime(path, (1, 1))
    assert len(orjson.loads(drawing.geojson([layer]))["features"]) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not a GeoJSON FeatureCollection"),
        (b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}}]}', "feature 0"),
    ],
)
def test_bad_layer_files_say_which_layer_and_file(tmp_path, content, message):
    path = tmp_path / "broken.geojson"
    path.write_bytes(content)
    with pytest.raises(GeoError, match=message) as raised:
        GridDrawing().geojson([GeoLayer(name="schools", path=path)])
    assert "'schools'" in str(raised.value) and str(path) in str(raised.value)
