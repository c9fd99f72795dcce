"""The loaded grid polygons, simplified for drawing on the dashboard map.

A city's grid file is made for exact lookups (tens of thousands of vertices per district); the map only needs
what is visible at screen resolution. Simplification uses GEOS through shapely (topology-preserving
Douglas-Peucker), so neighbouring cells stay closed shapes without slivers. Layers in GCJ-02 or BD-09 are
converted to WGS-84, the system the pipeline puts every location in, so markers sit in the right cell.
Results are cached per layer and file modification time, so a grid reload shows on the next request.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from hub.coords import convert
from hub.errors import GeoError
from hub.models import CoordSystem

if TYPE_CHECKING:
    from hub.config import GeoLayer

DEFAULT_TOLERANCE_DEG = 0.00005  # about 5 m: invisible at street zoom, removes most vertices of survey data
COORD_DECIMALS = 6


class GridDrawing:
    """GeoJSON of every configured layer in WGS-84 (the hub's system: the pipeline converts every location
    to it), simplified, with properties ``id``, ``name``, ``level``, ``layer``."""

    def __init__(self, tolerance_deg: float = DEFAULT_TOLERANCE_DEG) -> None:
        self.tolerance_deg = tolerance_deg
        self._layers: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._encoded: tuple[tuple[tuple[str, float], ...], bytes] | None = None

    def geojson(self, layers: list[GeoLayer]) -> bytes:
        """The layers of ``[[geo.layers]]`` as one FeatureCollection (JSON bytes), in configuration order.
        Work is redone only for a layer whose settings or file changed."""
        keys = tuple((layer.model_dump_json(), _modified(layer)) for layer in layers)
        if self._encoded is None or self._encoded[0] != keys:
            features = [
                feature
                for layer, (_, modified) in zip(layers, keys, strict=True)
                for feature in self._layer(layer, modified)
            ]
            self._encoded = (keys, orjson.dumps({"type": "FeatureCollection", "features": features}))
        return self._encoded[1]

    def _layer(self, layer: GeoLayer, modified: float) -> list[dict[str, Any]]:
        key = layer.model_dump_json()
        cached = self._layers.get(key)
        if cached is None or cached[0] != modified:
            cached = self._layers[key] = (modified, self._drawn(layer))
        return cached[1]

    def _drawn(self, layer: GeoLayer) -> list[dict[str, Any]]:
        try:
            features = orjson.loads(layer.path.read_bytes())["features"]
            geometries = [self._geometry(layer, number, feature) for number, feature in enumerate(features)]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise GeoError(
                f"grid layer {layer.name!r}: {layer.path} is not a GeoJSON FeatureCollection: {exc}"
            ) from None
        if layer.crs is not CoordSystem.WGS84:
            geometries = list(shapely.transform(geometries, partial(_to_wgs84, layer.crs)))
        return [
            {
                "type": "Feature",
                "properties": _properties(layer, number, feature),
                "geometry": _rounded(mapping(geometry)),
            }
            for number, (feature, geometry) in enumerate(zip(features, geometries, strict=True))
        ]

    def _geometry(self, layer: GeoLayer, number: int, feature: dict[str, Any]) -> BaseGeometry:
        try:
            return shape(feature["geometry"]).simplify(self.tolerance_deg, preserve_topology=True)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise GeoError(
                f"grid layer {layer.name!r}: feature {number} in {layer.path} has no usable geometry: {exc}"
            ) from None


def _modified(layer: GeoLayer) -> float:
    try:
        return layer.path.stat().st_mtime
    except OSError as exc:
        raise GeoError(f"grid layer {layer.name!r}: cannot read {layer.path}: {exc.strerror}") from None


def _properties(layer: GeoLayer, number: int, feature: dict[str, Any]) -> dict[str, Any]:
    properties = feature.get("properties") or {}
    return {
        "id": str(properties.get(layer.id_property, number)),
        "name": properties.get(layer.name_property),
        "level": properties.get(layer.level_property),
        "layer": layer.name,
    }


def _to_wgs84(crs: CoordSystem, points: np.ndarray) -> np.ndarray:
    """Every vertex of a layer in one batch through the Rust converter (hub.coords)."""
    lons, lats = convert(points[:, 0], points[:, 1], crs, CoordSystem.WGS84)
    return np.column_stack([lons, lats])


def _rounded(geometry: dict[str, Any]) -> dict[str, Any]:
    """Coordinates rounded to about 10 cm: a third of the JSON size, no visible difference."""

    def walk(node: Any) -> Any:
        if isinstance(node, (tuple, list)) and node and isinstance(node[0], (int, float)):
            return [round(value, COORD_DECIMALS) for value in node]
        return [walk(child) for child in node]

    return {"type": geometry["type"], "coordinates": walk(geometry["coordinates"])}
