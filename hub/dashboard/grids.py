"""The loaded grid polygons, simplified for drawing on the dashboard map.

A city's grid file is made for exact lookups (tens of thousands of vertices per district); the map only needs
what is visible at screen resolution. Simplification uses GEOS through shapely (topology-preserving
Douglas-Peucker), so neighbouring cells stay closed shapes without slivers. Results are cached per file and
modification time, so a grid reload shows up on the next request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from shapely.geometry import mapping, shape

from hub.errors import GeoError

if TYPE_CHECKING:
    from hub.config import GeoLayer

DEFAULT_TOLERANCE_DEG = 0.00005  # about 5 m: invisible at street zoom, removes most vertices of survey data
COORD_DECIMALS = 6


class GridDrawing:
    """GeoJSON of every configured layer, simplified, with properties ``id``, ``name``, ``level``, ``layer``."""

    def __init__(self, tolerance_deg: float = DEFAULT_TOLERANCE_DEG) -> None:
        self.tolerance_deg = tolerance_deg
        self._cache: dict[tuple[str, float], list[dict[str, Any]]] = {}

    def collection(self, layers: list[GeoLayer]) -> dict[str, Any]:
        """The layers of ``[[geo.layers]]`` as one FeatureCollection, in configuration order."""
        features: list[dict[str, Any]] = []
        for layer in layers:
            features += self._layer_features(layer)
        return {"type": "FeatureCollection", "features": features}

    def _layer_features(self, layer: GeoLayer) -> list[dict[str, Any]]:
        try:
            key = (layer.model_dump_json(), layer.path.stat().st_mtime)
        except OSError as exc:
            raise GeoError(f"grid layer {layer.name!r}: cannot read {layer.path}: {exc.strerror}") from None
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != key[0]}
            self._cache[key] = self._simplified(layer)
        return self._cache[key]

    def _simplified(self, layer: GeoLayer) -> list[dict[str, Any]]:
        try:
            collection = orjson.loads(layer.path.read_bytes())
            return [self._feature(layer, number, feature) for number, feature in enumerate(collection["features"])]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise GeoError(f"grid layer {layer.name!r}: {layer.path} is not a GeoJSON FeatureCollection: {exc}") from None

    def _feature(self, layer: GeoLayer, number: int, feature: dict[str, Any]) -> dict[str, Any]:
        properties = feature.get("properties") or {}
        try:
            geometry = shape(feature["geometry"]).simplify(self.tolerance_deg, preserve_topology=True)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise GeoError(f"grid layer {layer.name!r}: feature {number} in {layer.path} has no usable geometry: {exc}") from None
        return {
            "type": "Feature",
            "properties": {
                "id": str(properties.get(layer.id_property, number)),
                "name": properties.get(layer.name_property),
                "level": properties.get(layer.level_property),
                "layer": layer.name,
            },
            "geometry": _rounded(mapping(geometry)),
        }


def _rounded(geometry: dict[str, Any]) -> dict[str, Any]:
    """Coordinates rounded to about 10 cm: a third of the JSON size, no visible difference."""

    def walk(node: Any) -> Any:
        if isinstance(node, (tuple, list)) and node and isinstance(node[0], (int, float)):
            return [round(value, COORD_DECIMALS) for value in node]
        return [walk(child) for child in node]

    return {"type": geometry["type"], "coordinates": walk(geometry["coordinates"])}
