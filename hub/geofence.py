"""Geofence lookup: a point → the grid cells it falls in, on every level of every layer.

Layers are GeoJSON FeatureCollections of Polygon / MultiPolygon cells (holes included). *Admin* layers
together form one hierarchy (district → street → community → grid → micro-grid) linked by parent ids;
*overlay* layers (schools, reservoirs, construction sites, key areas) sit beside it. Layers declare their
coordinate system and are converted to WGS-84 on load; queries declare theirs too.

Rules (the Rust core implements them; docs/geofence.md explains them with examples):

* A point on a cell boundary is in the cell. On each level exactly one cell wins: a cell whose interior
  holds the point beats one that only has it on its boundary, and between equals the smallest id wins
  (so a point on a shared edge goes to the cell with the smaller id).
* The admin answer is the deepest admin cell holding the point plus its ancestors (the admin path).
  Overlays answer one cell per (layer, level).
* A point outside every cell of the hierarchy (or of an overlay level) but within ``tolerance_m``
  resolves to the nearest cell, with ``distance_m`` set; farther points resolve to nothing.
* Polygons that are not OGC-valid (e.g. self-intersecting, as 4 of Chengdu's 20 public district
  outlines are) are accepted and evaluated by the even-odd rule; ``LayerSpec(strict=True)`` rejects them.

Example::

    index = GridIndex.load([LayerSpec(name="admin", path="grids.geojson", crs="gcj02")])
    res = index.locate(104.08, 30.66, crs="wgs84")
    [c.name for c in res.admin_path]  # district first
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub import _core
from hub.coords import coord_system
from hub.errors import GeoError
from hub.models import CoordSystem, GridCell

__all__ = ["AreaCells", "Cell", "GridIndex", "LayerSpec", "LocateArrays", "Resolution"]

DEFAULT_TOLERANCE_M = 30.0


class LayerSpec(BaseModel):
    """One layer of cells: where its GeoJSON is, which system it is in, and which properties to read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Layer name, reported in every Cell.")
    path: Path | None = Field(None, description="GeoJSON file (FeatureCollection or Feature).")
    geojson: dict[str, Any] | None = Field(None, description="The GeoJSON itself, instead of a path.")
    crs: CoordSystem = Field(CoordSystem.WGS84, description="Coordinate system of the layer's coordinates.")
    kind: Literal["admin", "overlay"] = Field("admin", description="Part of the admin hierarchy, or an overlay.")
    id_property: str = Field("id", description="Property holding the cell id (the feature's top-level id if absent).")
    name_property: str = Field("name", description="Property holding the display name (the id if absent).")
    level_property: str = Field("level", description="Property holding the level (district, street, ...).")
    parent_property: str = Field("parent", description="Property holding the parent cell id (admin layers).")
    strict: bool = Field(False, description="Reject polygons that are not OGC-valid instead of accepting them.")

    @model_validator(mode="after")
    def _one_source(self) -> LayerSpec:
        if (self.path is None) == (self.geojson is None):
            raise ValueError(f"layer {self.name!r}: give exactly one of path or geojson")
        return self

    def geojson_bytes(self) -> bytes:
        """The layer's GeoJSON text; :class:`GeoError` naming the file when it cannot be read."""
        if self.path is None:
            return _geojson_bytes(self.geojson, f"layer {self.name!r}")
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise GeoError(f"layer {self.name!r}: cannot read {self.path}: {exc.strerror}") from exc


def _geojson_bytes(value: Any, what: str) -> bytes:
    """GeoJSON text of a dict (numpy numbers allowed; NaN becomes null, which the core rejects by name)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise GeoError(f"{what}: not serialisable as JSON: {exc}") from exc


class Cell(NamedTuple):
    """One resolved cell. Field names match :class:`hub.models.GridCell`."""

    layer: str
    level: str
    id: str
    name: str
    distance_m: float = 0.0

    def to_grid_cell(self) -> GridCell:
        return GridCell(**self._asdict())


class Resolution(NamedTuple):
    """Where a point is. ``cells``: admin cells deepest first, then one cell per overlay (layer, level);
    ``admin_path``: the admin cells from the root (district) down; ``outside``: no cell at all resolved."""

    cells: list[Cell]
    admin_path: list[Cell]
    outside: bool


class LocateArrays(NamedTuple):
    """A batch answer as flat buffers (``numpy.asarray`` works on each without copying). Point ``i`` owns
    ``cells[offsets[i]:offsets[i+1]]`` (cell indices for :meth:`GridIndex.cell`) and the same range of
    ``distances_m``; its first ``admin_counts[i]`` cells are the admin chain, deepest first."""

    offsets: memoryview[int]
    cells: memoryview[int]
    distances_m: memoryview[float]
    admin_counts: memoryview[int]


class AreaCells(NamedTuple):
    """Cells met by a batch of areas as flat buffers: area ``i`` owns ``cells[offsets[i]:offsets[i+1]]``
    (cell indices for :meth:`GridIndex.cell`, in index order)."""

    offsets: memoryview
    cells: memoryview


class GridIndex:
    """An immutable, thread-safe index over all layers. Build with :meth:`load`; a running hub reloads by
    building a new one and using it from the next batch on (``Pipeline.swap_engines``). Queries release the
    GIL while Rust works."""

    def __init__(self, core: _core.GeoIndex, layers: Sequence[LayerSpec]):
        self._core = core
        self._layers = tuple(layers)
        self._cells: dict[int, Cell] = {}

    @classmethod
    def load(cls, layers: Iterable[LayerSpec], tolerance_m: float = DEFAULT_TOLERANCE_M) -> GridIndex:
        """Reads, validates, converts to WGS-84 and indexes every layer.

        Raises :class:`GeoError` naming the layer, feature number and id for broken GeoJSON, missing
        properties, NaN or out-of-range coordinates, unknown parents and (strict layers) invalid polygons.
        """
        specs = list(layers)
        payload = [
            (
                spec.name,
                spec.kind,
                spec.geojson_bytes(),
                spec.crs.value,
                spec.id_property,
                spec.name_property,
                spec.level_property,
                spec.parent_property,
                spec.strict,
            )
            for spec in specs
        ]
        return cls(_core.GeoIndex.build(payload, float(tolerance_m)), specs)

    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        return self._layers

    @property
    def tolerance_m(self) -> float:
        return self._core.tolerance_m

    def __len__(self) -> int:
        return len(self._core)

    def cell(self, index: int, distance_m: float = 0.0) -> Cell:
        """The cell at a core index (as found in :class:`LocateArrays`)."""
        cell = self._cells.get(index)
        if cell is None:
            cell = self._cells[index] = Cell(*self._core.cell(index))
        return cell if distance_m == 0.0 else cell._replace(distance_m=distance_m)

    def admin_path(self, index: int) -> list[Cell]:
        """The admin path of the cell at a core index, from the root (district) down to that cell; empty for
        an overlay cell. Places what names a cell rather than a point (an area warning) in the hierarchy."""
        path = [self.cell(chain_index) for chain_index in self._core.admin_chain(index)]
        path.reverse()
        return path

    def locate(self, lon: float, lat: float, crs: CoordSystem | str = CoordSystem.WGS84) -> Resolution:
        """Resolves one point (a batch of one; see :meth:`locate_many` for throughput)."""
        return self.locate_many([lon], [lat], crs)[0]

    def locate_many(self, lons: Any, lats: Any, crs: CoordSystem | str = CoordSystem.WGS84) -> list[Resolution]:
        """Resolves a batch of points in one crossing into Rust (sequences or float buffers)."""
        arrays = self.locate_arrays(lons, lats, crs)
        offsets = arrays.offsets.tolist()
        cells = arrays.cells.tolist()
        distances = arrays.distances_m.tolist()
        admin_counts = arrays.admin_counts.tolist()
        cache, cell = self._cells, self.cell
        results = []
        for point, admin_count in enumerate(admin_counts):
            start, end = offsets[point], offsets[point + 1]
            resolved = [
                (cache.get(c) or cell(c)) if d == 0.0 else cell(c, d)
                for c, d in zip(cells[start:end], distances[start:end], strict=True)
            ]
            admin_path = resolved[:admin_count]
            admin_path.reverse()
            results.append(Resolution(resolved, admin_path, not resolved))
        return results

    def locate_arrays(self, lons: Any, lats: Any, crs: CoordSystem | str = CoordSystem.WGS84) -> LocateArrays:
        """Like :meth:`locate_many` but returns flat buffers instead of Python objects: the fast path for
        millions of points."""
        offsets, cells, distances, admin_counts = self._core.locate_many(lons, lats, coord_system(crs).value)
        return LocateArrays(
            memoryview(offsets).cast("I"),
            memoryview(cells).cast("I"),
            memoryview(distances).cast("d"),
            memoryview(admin_counts),
        )

    def cells_intersecting(self, geometry: dict[str, Any], crs: CoordSystem | str = CoordSystem.WGS84) -> list[Cell]:
        """Every cell (any layer, any level) whose area intersects a GeoJSON geometry or Feature —
        touching counts, as in shapely's ``intersects``. Used to fan an area warning out to its grids."""
        indices = self._core.cells_intersecting(_geojson_bytes(geometry, "geometry"), coord_system(crs).value)
        cache, cell = self._cells, self.cell
        return [cache.get(index) or cell(index) for index in indices]

    def cells_intersecting_arrays(
        self, geometries: Iterable[dict[str, Any]], crs: CoordSystem | str = CoordSystem.WGS84
    ) -> AreaCells:
        """Like :meth:`cells_intersecting` for many areas in one crossing (spread over the cores), returning
        cell indices instead of :class:`Cell` objects: the fast path for fanning out many warnings."""
        texts = [_geojson_bytes(geometry, f"geometry #{position}") for position, geometry in enumerate(geometries)]
        offsets, cells = self._core.cells_intersecting_many(texts, coord_system(crs).value)
        return AreaCells(memoryview(offsets).cast("I"), memoryview(cells).cast("I"))

    def memory_use(self) -> dict[str, int]:
        """Bytes held by geometry, spatial index and metadata, beside the raw GeoJSON vertex bytes."""
        return self._core.memory_use()
