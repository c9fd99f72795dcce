//! The grid index: every cell of every layer, stored flat (one coordinate array, ring and cell offsets)
//! under static packed R-trees (flatbush) of cell bounding boxes: one per admin depth and one per overlay
//! (layer, level), so district-sized boxes never inflate the nodes that hold micro-grid boxes. Two rasters
//! built at load take the common point queries off the trees: a bucket grid of the deepest admin level's
//! cells ([`CellGrid`]) and a mask of where every admin cell is beyond the tolerance ([`FarMask`]).
//!
//! Rules a caller can rely on (docs/geofence.md repeats them):
//! - Containment is closed: a point on a cell's boundary is in that cell. Rings are evaluated by the
//!   even-odd rule, so self-intersecting polygons accepted with `strict = false` behave predictably.
//! - Shared-edge rule: on each level exactly one cell wins. A cell whose interior holds the point beats a
//!   cell that only has it on its boundary; between equals, the cell with the smallest id (byte order) wins.
//! - Admin layers form one hierarchy linked by parent ids. The answer is the deepest admin cell that holds
//!   the point (edge rule above) and its chain of ancestors; overlay layers answer per (layer, level).
//! - A point outside every cell of a group (the admin hierarchy, or an overlay level) resolves to the
//!   nearest cell within the tolerance, with its distance; ties go to the deeper, then smaller-id cell.
//! - Distances are metres on a local equirectangular projection at the query point (exact to well
//!   under 0.1 % at tolerance scale). Cells must not cross the antimeridian.

use std::collections::HashMap;

use geo::{
    BoundingRect, Coord, Geometry, Intersects, LineString, MapCoords, MultiPolygon, Polygon, Validation,
};
use rayon::prelude::*;
use static_aabb2d_index::{StaticAABB2DIndex, StaticAABB2DIndexBuilder};

use super::cell_grid::CellGrid;
use super::coords::{convert_point, coordinate_problem, CoordSystem};
use super::far_mask::FarMask;
use super::geojson::{parse_geometry, parse_layer, ParsedFeature, PropertyNames};
use super::GeoError;

/// Metres per degree of latitude on a sphere of the mean Earth radius (6,371,008.8 m).
pub(super) const METRES_PER_DEGREE: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;
/// Distances closer than this count as ties when picking the nearest cell (shared edges).
const DISTANCE_TIE_M: f64 = 1e-3;
const NO_PARENT: u32 = u32::MAX;
const NO_BANDS: u32 = u32::MAX;
/// Batches larger than this are split across rayon's threads, this many points per task.
const PARALLEL_CHUNK: usize = 16_384;
/// Batches at least this large are resolved in spatial (Hilbert) order.
const SPATIAL_SORT_MIN: usize = 4_096;
/// Children per node of the packed trees (flatbush's default).
const NODE_SIZE: usize = 16;
/// Cells with at least this many edges get a y-band edge index (like GEOS's indexed point-in-area
/// locator), so a point test reads a few edges instead of all of a district outline's thousands.
const BAND_INDEX_MIN_EDGES: usize = 64;
const EDGES_PER_BAND: usize = 4;

/// Admin layers build the hierarchy; overlay layers (schools, reservoirs, ...) sit beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    Admin,
    Overlay,
}

/// One layer to load: its GeoJSON text and how to read it.
pub struct LayerSource<'a> {
    pub name: String,
    pub kind: LayerKind,
    pub geojson: &'a [u8],
    pub crs: CoordSystem,
    pub properties: PropertyNames,
    /// Reject polygons that are not OGC-valid (self-intersections, ...) instead of accepting them
    /// under the even-odd rule.
    pub strict: bool,
}

/// The answer for a batch of points, flat: point `i` owns `cells[offsets[i]..offsets[i+1]]` (and the
/// same range of `distances_m`); its first `admin_counts[i]` cells are the admin chain, deepest first,
/// the rest are overlay cells in layer order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LocateBatch {
    pub offsets: Vec<u32>,
    pub cells: Vec<u32>,
    pub distances_m: Vec<f64>,
    pub admin_counts: Vec<u8>,
}

/// Cells met by each of a batch of areas, flat: area `i` owns `cells[offsets[i]..offsets[i+1]]`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AreaCells {
    pub offsets: Vec<u32>,
    pub cells: Vec<u32>,
}

/// Bytes held by the index, next to the GeoJSON vertex data it was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// Coordinates, ring and cell offsets.
    pub geometry: usize,
    /// R*-tree nodes.
    pub spatial_index: usize,
    /// Ids, names, levels, parents.
    pub metadata: usize,
    /// Vertices as the GeoJSON held them (closing vertices included), 16 bytes each.
    pub raw_vertex_bytes: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Position {
    Outside,
    Boundary,
    Inside,
}

/// A bounding box: [min_x, min_y, max_x, max_y].
type Envelope = [f64; 4];

struct CellBox {
    envelope: Envelope,
    cell: u32,
}

/// A static packed Hilbert R-tree (flatbush) over cell boxes: built once, flat arrays, queried with a
/// reusable stack. Queries are closed: a box touching the search box counts.
struct BoxTree {
    index: StaticAABB2DIndex<f64>,
    cells: Vec<u32>,
}

impl BoxTree {
    fn build(boxes: &[CellBox]) -> Result<Self, GeoError> {
        let mut builder = StaticAABB2DIndexBuilder::new_with_node_size(boxes.len(), NODE_SIZE);
        for cell_box in boxes {
            let [min_x, min_y, max_x, max_y] = cell_box.envelope;
            builder.add(min_x, min_y, max_x, max_y);
        }
        let index = builder.build().map_err(|e| GeoError::new(format!("spatial index: {e}")))?;
        Ok(Self { index, cells: boxes.iter().map(|b| b.cell).collect() })
    }

    /// Appends the cells whose box meets `envelope`.
    fn query(&self, envelope: Envelope, stack: &mut Vec<usize>, out: &mut Vec<u32>) {
        let [min_x, min_y, max_x, max_y] = envelope;
        let found = self.index.query_iter_with_stack(min_x, min_y, max_x, max_y, stack);
        out.extend(found.filter_map(|position| self.cells.get(position).copied()));
    }

    fn memory_bytes(&self) -> usize {
        let boxes = self.index.all_boxes().len();
        boxes * (std::mem::size_of::<Envelope>() + std::mem::size_of::<usize>())
            + std::mem::size_of_val(self.index.level_bounds())
            + self.cells.capacity() * 4
    }
}

struct CellInfo {
    layer: u16,
    level: u16,
    depth: u16,
    /// Admin cells: parent cell index or NO_PARENT. Overlay cells: their (layer, level) group.
    parent_or_group: u32,
    /// Index into `GridIndex::edge_bands`, or NO_BANDS for small cells.
    bands: u32,
}

/// Edges of one large cell bucketed by horizontal band: an edge is listed in every band its y-range
/// touches, so the band holding a point's y lists every edge a horizontal ray through it can meet.
struct EdgeBands {
    y0: f64,
    band_height: f64,
    starts: Vec<u32>,
    edges: Vec<(u32, u32)>,
}

impl EdgeBands {
    fn band_of(&self, y: f64) -> usize {
        let bands = self.starts.len().saturating_sub(2);
        (((y - self.y0) / self.band_height).max(0.0) as usize).min(bands)
    }

    /// Buckets `edges` (pairs of indices into `coords`); `None` when they span no height.
    fn build(coords: &[Coord<f64>], edges: &[(u32, u32)]) -> Option<Self> {
        let y = |i: u32| coords.get(i as usize).map_or(0.0, |c| c.y);
        let (y0, y1) = edges.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (a, _)| (lo.min(y(*a)), hi.max(y(*a))));
        let band_count = (edges.len() / EDGES_PER_BAND).max(1);
        let band_height = (y1 - y0) / band_count as f64;
        if band_height.is_nan() || band_height <= 0.0 {
            return None;
        }
        let mut bands = Self { y0, band_height, starts: vec![0; band_count + 2], edges: Vec::new() };
        let span = |(a, b): (u32, u32)| {
            let (lo, hi) = (y(a).min(y(b)), y(a).max(y(b)));
            bands.band_of(lo)..=bands.band_of(hi)
        };
        let mut counts = vec![0u32; band_count + 1];
        for edge in edges {
            for band in span(*edge) {
                if let Some(count) = counts.get_mut(band) {
                    *count += 1;
                }
            }
        }
        let mut starts = vec![0u32; band_count + 2];
        for band in 0..=band_count {
            let next = starts.get(band).copied().unwrap_or(0) + counts.get(band).copied().unwrap_or(0);
            if let Some(slot) = starts.get_mut(band + 1) {
                *slot = next;
            }
        }
        let mut filled = vec![(0u32, 0u32); starts.last().copied().unwrap_or(0) as usize];
        let mut cursor = starts.clone();
        for edge in edges {
            for band in span(*edge) {
                if let Some(position) = cursor.get_mut(band) {
                    if let Some(slot) = filled.get_mut(*position as usize) {
                        *slot = *edge;
                    }
                    *position += 1;
                }
            }
        }
        bands.starts = starts;
        bands.edges = filled;
        Some(bands)
    }

    fn edges_at(&self, y: f64) -> &[(u32, u32)] {
        self.edges_between(y, y)
    }

    /// Edges listed in the bands from `low`'s to `high`'s (consecutive in storage; may repeat edges).
    fn edges_between(&self, low: f64, high: f64) -> &[(u32, u32)] {
        let start = self.starts.get(self.band_of(low)).copied().unwrap_or(0) as usize;
        let end = self.starts.get(self.band_of(high) + 1).copied().unwrap_or(0) as usize;
        self.edges.get(start..end).unwrap_or(&[])
    }
}

/// All strings of all cells in one buffer: id of cell `i` is piece `2i`, its name piece `2i+1`.
#[derive(Default)]
struct StringArena {
    text: String,
    ends: Vec<u32>,
}

impl StringArena {
    fn push(&mut self, piece: &str) {
        self.text.push_str(piece);
        self.ends.push(self.text.len() as u32);
    }

    fn get(&self, piece: usize) -> &str {
        let start = match piece.checked_sub(1) {
            Some(previous) => self.ends.get(previous).copied().unwrap_or(0) as usize,
            None => 0,
        };
        let end = self.ends.get(piece).copied().unwrap_or(0) as usize;
        self.text.get(start..end).unwrap_or("")
    }
}

/// One cell's description for callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellView<'a> {
    pub layer: &'a str,
    pub level: &'a str,
    pub id: &'a str,
    pub name: &'a str,
}

/// Reusable per-thread buffers of the point query.
#[derive(Default)]
struct Scratch {
    stack: Vec<usize>,
    holding: Vec<u32>,
    nearby: Vec<u32>,
    measured: Vec<(u32, f64)>,
}

/// Point → cells on every layer, and area → intersecting cells. Immutable once built; swap a new one in
/// to reload.
pub struct GridIndex {
    layer_names: Vec<String>,
    layer_kinds: Vec<LayerKind>,
    levels: Vec<String>,
    cells: Vec<CellInfo>,
    strings: StringArena,
    coords: Vec<Coord<f64>>,
    ring_starts: Vec<u32>,
    ring_is_exterior: Vec<bool>,
    cell_ring_starts: Vec<u32>,
    edge_bands: Vec<EdgeBands>,
    /// Admin trees, deepest level first.
    admin_trees: Vec<BoxTree>,
    /// Overlay trees in group rank order.
    overlay_trees: Vec<BoxTree>,
    /// The deepest admin level's cells on a bucket grid: point queries of that level read one list.
    leaf_grid: Option<CellGrid>,
    /// Where a point is farther than the tolerance from every admin cell; `None` when not built.
    far_mask: Option<FarMask>,
    tolerance_m: f64,
    raw_vertex_count: usize,
    /// Union of all cell boxes, the frame of the Hilbert sort.
    extent: Envelope,
}

struct PendingCell {
    layer: u16,
    feature: ParsedFeature,
}

impl GridIndex {
    /// Parses, validates, converts to WGS-84 and indexes every layer.
    pub fn build(sources: &[LayerSource<'_>], tolerance_m: f64) -> Result<Self, GeoError> {
        if !tolerance_m.is_finite() || tolerance_m < 0.0 {
            return Err(GeoError::new(format!("tolerance_m must be a finite number ≥ 0, got {tolerance_m}")));
        }
        if sources.len() > usize::from(u16::MAX) {
            return Err(GeoError::new("too many layers (at most 65535)"));
        }
        let mut pending = Vec::new();
        let mut layer_names: Vec<String> = Vec::new();
        for (layer, source) in sources.iter().enumerate() {
            if layer_names.contains(&source.name) {
                return Err(GeoError::new(format!("layer {:?} is listed twice", source.name)));
            }
            layer_names.push(source.name.clone());
            let features = load_layer(source).map_err(|e| e.within(&format!("layer {:?}", source.name)))?;
            pending.extend(features.into_iter().map(|feature| PendingCell { layer: layer as u16, feature }));
        }
        if pending.len() >= NO_PARENT as usize {
            return Err(GeoError::new("too many cells"));
        }
        // Index order is id order, so "smaller id wins" is "smaller index wins" at query time.
        pending.sort_by(|a, b| a.feature.id.cmp(&b.feature.id).then(a.layer.cmp(&b.layer)));
        let layer_kinds: Vec<LayerKind> = sources.iter().map(|s| s.kind).collect();
        Self::assemble(pending, layer_names, layer_kinds, tolerance_m)
    }

    fn assemble(
        pending: Vec<PendingCell>,
        layer_names: Vec<String>,
        layer_kinds: Vec<LayerKind>,
        tolerance_m: f64,
    ) -> Result<Self, GeoError> {
        let is_admin = |cell: &PendingCell| layer_kinds.get(usize::from(cell.layer)) == Some(&LayerKind::Admin);
        let describe = |cell: &PendingCell| {
            let layer = layer_names.get(usize::from(cell.layer)).map_or("?", String::as_str);
            format!("layer {layer:?}, {}", cell.feature.describe())
        };
        let mut admin_by_id: HashMap<&str, u32> = HashMap::new();
        let mut overlay_ids: HashMap<(u16, &str), u32> = HashMap::new();
        for (index, cell) in pending.iter().enumerate() {
            let previous = if is_admin(cell) {
                admin_by_id.insert(cell.feature.id.as_str(), index as u32)
            } else {
                overlay_ids.insert((cell.layer, cell.feature.id.as_str()), index as u32)
            };
            if let Some(previous) = previous.and_then(|p| pending.get(p as usize)) {
                return Err(GeoError::new(format!(
                    "{}: id is used twice (also {})",
                    describe(cell),
                    describe(previous)
                )));
            }
        }
        let mut levels: Vec<String> = Vec::new();
        let mut groups: Vec<(u16, u16)> = Vec::new();
        let mut cells = Vec::with_capacity(pending.len());
        for cell in &pending {
            let level = intern(&mut levels, &cell.feature.level)?;
            let parent_or_group = if is_admin(cell) {
                match &cell.feature.parent {
                    None => NO_PARENT,
                    Some(parent) => *admin_by_id.get(parent.as_str()).ok_or_else(|| {
                        GeoError::new(format!("{}: parent id {parent:?} is not a cell of any admin layer", describe(cell)))
                    })?,
                }
            } else {
                let key = (cell.layer, level);
                match groups.iter().position(|g| *g == key) {
                    Some(group) => group as u32,
                    None => {
                        groups.push(key);
                        (groups.len() - 1) as u32
                    }
                }
            };
            cells.push(CellInfo { layer: cell.layer, level, depth: 0, parent_or_group, bands: NO_BANDS });
        }
        // Overlay groups answer in layer order, then level order of first appearance.
        let mut group_order: Vec<u32> = (0..groups.len() as u32).collect();
        group_order.sort_by_key(|g| groups.get(*g as usize).copied());
        let mut rank_of_group = vec![0u32; groups.len()];
        for (rank, group) in group_order.iter().enumerate() {
            if let Some(slot) = rank_of_group.get_mut(*group as usize) {
                *slot = rank as u32;
            }
        }
        for (cell, pending_cell) in cells.iter_mut().zip(&pending) {
            if !is_admin(pending_cell) {
                cell.parent_or_group = rank_of_group.get(cell.parent_or_group as usize).copied().unwrap_or(0);
            }
        }
        assign_depths(&mut cells, &layer_kinds, |index| pending.get(index).map(describe).unwrap_or_default())?;

        let mut index = Self {
            layer_names,
            layer_kinds,
            levels,
            cells,
            strings: StringArena::default(),
            coords: Vec::new(),
            ring_starts: vec![0],
            ring_is_exterior: Vec::new(),
            cell_ring_starts: vec![0],
            edge_bands: Vec::new(),
            admin_trees: Vec::new(),
            overlay_trees: Vec::new(),
            leaf_grid: None,
            far_mask: None,
            tolerance_m,
            raw_vertex_count: 0,
            extent: [0.0; 4],
        };
        let mut boxes = Vec::with_capacity(pending.len());
        for (cell, pending_cell) in pending.iter().enumerate() {
            index.strings.push(&pending_cell.feature.id);
            index.strings.push(&pending_cell.feature.name);
            if let Some(envelope) = index.push_geometry(&pending_cell.feature.shape) {
                boxes.push(CellBox { envelope, cell: cell as u32 });
            }
        }
        for cell in 0..index.cells.len() {
            if let Some(bands) = index.build_bands(cell) {
                if let Some(info) = index.cells.get_mut(cell) {
                    info.bands = index.edge_bands.len() as u32;
                    index.edge_bands.push(bands);
                }
            }
        }
        index.coords.shrink_to_fit();
        index.strings.text.shrink_to_fit();
        index.extent = union_of(boxes.iter());
        let admin_extent = union_of(boxes.iter().filter(|b| index.is_admin(b.cell)));
        let admin_cells = boxes.iter().filter(|b| index.is_admin(b.cell)).count();
        index.plant_trees(boxes, groups.len())?;
        index.far_mask = index.build_far_mask(admin_extent, admin_cells);
        Ok(index)
    }

    fn build_far_mask(&self, admin_extent: Envelope, admin_cells: usize) -> Option<FarMask> {
        let admin_edges = (0..self.cells.len())
            .filter(|&cell| self.is_admin(cell as u32))
            .flat_map(|cell| self.rings(cell).flat_map(|(ring, _)| ring_edges(ring)));
        let mut stack = Vec::new();
        let mut holding = Vec::new();
        let in_any_cell = |point: Coord<f64>| {
            self.admin_trees.iter().any(|tree| {
                holding.clear();
                tree.query([point.x, point.y, point.x, point.y], &mut stack, &mut holding);
                holding.iter().any(|&cell| self.classify(cell as usize, point) != Position::Outside)
            })
        };
        FarMask::build(admin_extent, admin_cells, self.tolerance_m, admin_edges, in_any_cell)
    }

    /// Appends a cell's rings (closing vertex dropped) and returns its bounding box.
    fn push_geometry(&mut self, shape: &MultiPolygon<f64>) -> Option<Envelope> {
        for polygon in &shape.0 {
            let rings = std::iter::once((polygon.exterior(), true)).chain(polygon.interiors().iter().map(|r| (r, false)));
            for (ring, exterior) in rings {
                self.raw_vertex_count += ring.0.len();
                let open = ring.0.split_last().map_or(&[][..], |(_, rest)| rest);
                self.coords.extend_from_slice(open);
                self.ring_starts.push(self.coords.len() as u32);
                self.ring_is_exterior.push(exterior);
            }
        }
        self.cell_ring_starts.push(self.ring_is_exterior.len() as u32);
        let rect = shape.bounding_rect()?;
        Some([rect.min().x, rect.min().y, rect.max().x, rect.max().y])
    }

    pub fn cell_count(&self) -> usize {
        self.cells.len()
    }

    pub fn tolerance_m(&self) -> f64 {
        self.tolerance_m
    }

    /// Layer, level, id and name of a cell, or `None` for an index out of range.
    pub fn cell(&self, cell: usize) -> Option<CellView<'_>> {
        let info = self.cells.get(cell)?;
        Some(CellView {
            layer: self.layer_names.get(usize::from(info.layer))?,
            level: self.levels.get(usize::from(info.level))?,
            id: self.strings.get(2 * cell),
            name: self.strings.get(2 * cell + 1),
        })
    }

    pub fn memory_use(&self) -> MemoryUse {
        let geometry = self.coords.capacity() * std::mem::size_of::<Coord<f64>>()
            + (self.ring_starts.capacity() + self.cell_ring_starts.capacity()) * 4
            + self.ring_is_exterior.capacity()
            + self.edge_bands.iter().map(|b| b.starts.capacity() * 4 + b.edges.capacity() * 8 + 48).sum::<usize>();
        let spatial_index = self.trees().map(BoxTree::memory_bytes).sum::<usize>()
            + self.leaf_grid.as_ref().map_or(0, CellGrid::memory_bytes)
            + self.far_mask.as_ref().map_or(0, FarMask::memory_bytes);
        let metadata = self.cells.capacity() * std::mem::size_of::<CellInfo>()
            + self.strings.text.capacity()
            + self.strings.ends.capacity() * 4
            + self.levels.iter().chain(&self.layer_names).map(|s| s.capacity() + 24).sum::<usize>();
        MemoryUse { geometry, spatial_index, metadata, raw_vertex_bytes: self.raw_vertex_count * 16 }
    }

    /// Resolves a batch of points given in `crs`. Fails on the first unusable point, naming it.
    pub fn locate_batch(&self, lngs: &[f64], lats: &[f64], crs: CoordSystem) -> Result<LocateBatch, GeoError> {
        if lngs.len() != lats.len() {
            return Err(GeoError::new(format!(
                "longitude and latitude batches differ in length ({} vs {})",
                lngs.len(),
                lats.len()
            )));
        }
        for (position, (&lng, &lat)) in lngs.iter().zip(lats).enumerate() {
            if let Some(problem) = coordinate_problem(lng, lat) {
                return Err(GeoError::new(format!("point #{position}: {problem}")));
            }
        }
        if lngs.len() < SPATIAL_SORT_MIN {
            let points: Vec<Coord<f64>> = lngs.iter().zip(lats).map(|(&x, &y)| wgs84(x, y, crs)).collect();
            return Ok(self.locate_points(&points));
        }
        // Large batches are resolved in Hilbert order of the points, so consecutive queries touch the
        // same tree nodes and cells (cache hits instead of misses), then put back in the caller's order.
        // Points known to resolve to nothing are left out of the sort.
        let points: Vec<Coord<f64>> =
            lngs.par_iter().zip(lats.par_iter()).map(|(&x, &y)| wgs84(x, y, crs)).collect();
        let mut order: Vec<(u32, u32)> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| !self.resolves_to_nothing(**p))
            .map(|(i, p)| (self.hilbert_key(*p), i as u32))
            .collect();
        order.par_sort_unstable();
        let sorted: Vec<Coord<f64>> = order.iter().filter_map(|(_, i)| points.get(*i as usize).copied()).collect();
        let parts: Vec<LocateBatch> = sorted.par_chunks(PARALLEL_CHUNK).map(|chunk| self.locate_points(chunk)).collect();
        Ok(unsort(&concatenate(parts), &order, points.len()))
    }

    /// True when no layer can answer anything for the point: no overlays, and farther than the
    /// tolerance from every admin cell.
    fn resolves_to_nothing(&self, point: Coord<f64>) -> bool {
        self.overlay_trees.is_empty() && self.far_mask.as_ref().is_some_and(|mask| mask.is_far(point))
    }

    /// Position of a point on a Hilbert curve over the index's extent.
    fn hilbert_key(&self, p: Coord<f64>) -> u32 {
        let [min_x, min_y, max_x, max_y] = self.extent;
        let scale = |v: f64, lo: f64, hi: f64| {
            let span = hi - lo;
            if span > 0.0 { (((v - lo) / span).clamp(0.0, 1.0) * f64::from(u16::MAX)) as u16 } else { 0 }
        };
        static_aabb2d_index::hilbert_xy_to_index(scale(p.x, min_x, max_x), scale(p.y, min_y, max_y))
    }

    /// Resolves WGS-84 points on the calling thread.
    fn locate_points(&self, points: &[Coord<f64>]) -> LocateBatch {
        let cells_per_point = (self.admin_trees.len() + self.overlay_trees.len()).clamp(1, 8);
        let mut batch = LocateBatch {
            offsets: Vec::with_capacity(points.len() + 1),
            cells: Vec::with_capacity(points.len() * cells_per_point),
            distances_m: Vec::with_capacity(points.len() * cells_per_point),
            admin_counts: Vec::with_capacity(points.len()),
        };
        batch.offsets.push(0);
        let mut scratch = Scratch::default();
        for point in points {
            self.locate_into(point.x, point.y, &mut scratch, &mut batch);
        }
        batch
    }

    fn locate_into(&self, lng: f64, lat: f64, scratch: &mut Scratch, out: &mut LocateBatch) {
        let point = Coord { x: lng, y: lat };
        let admin_count = self.resolve_admin(point, scratch, out);
        out.admin_counts.push(admin_count.min(usize::from(u8::MAX)) as u8);
        self.resolve_overlays(point, scratch, out);
        out.offsets.push(out.cells.len() as u32);
    }

    /// Splits the cell boxes into the per-depth admin trees and the per-group overlay trees.
    fn plant_trees(&mut self, boxes: Vec<CellBox>, group_count: usize) -> Result<(), GeoError> {
        let max_depth = self.cells.iter().map(|c| usize::from(c.depth)).max().unwrap_or(0);
        let mut admin: Vec<Vec<CellBox>> = (0..=max_depth).map(|_| Vec::new()).collect();
        let mut overlay: Vec<Vec<CellBox>> = (0..group_count).map(|_| Vec::new()).collect();
        for cell_box in boxes {
            let bucket = if self.is_admin(cell_box.cell) {
                admin.get_mut(max_depth - usize::from(self.depth(cell_box.cell)))
            } else {
                overlay.get_mut(self.parent_or_group(cell_box.cell) as usize)
            };
            if let Some(bucket) = bucket {
                bucket.push(cell_box);
            }
        }
        admin.retain(|b| !b.is_empty());
        self.leaf_grid = admin.first().and_then(|leaves| {
            CellGrid::build(union_of(leaves.iter()), &leaves.iter().map(|b| (b.envelope, b.cell)).collect::<Vec<_>>())
        });
        self.admin_trees = admin.iter().map(|b| BoxTree::build(b)).collect::<Result<_, _>>()?;
        self.overlay_trees = overlay.iter().filter(|b| !b.is_empty()).map(|b| BoxTree::build(b)).collect::<Result<_, _>>()?;
        Ok(())
    }

    fn trees(&self) -> impl Iterator<Item = &BoxTree> {
        self.admin_trees.iter().chain(&self.overlay_trees)
    }

    /// The point's box grown by the tolerance: where nearest-cell candidates can be.
    fn search_envelope(&self, point: Coord<f64>) -> Envelope {
        let dlat = self.tolerance_m / METRES_PER_DEGREE;
        let dlng = (self.tolerance_m / (METRES_PER_DEGREE * point.y.to_radians().cos().max(1e-9))).min(360.0);
        [point.x - dlng, point.y - dlat, point.x + dlng, point.y + dlat]
    }

    fn is_admin(&self, cell: u32) -> bool {
        self.cells
            .get(cell as usize)
            .and_then(|info| self.layer_kinds.get(usize::from(info.layer)))
            == Some(&LayerKind::Admin)
    }

    fn depth(&self, cell: u32) -> u16 {
        self.cells.get(cell as usize).map_or(0, |info| info.depth)
    }

    fn parent_or_group(&self, cell: u32) -> u32 {
        self.cells.get(cell as usize).map_or(NO_PARENT, |info| info.parent_or_group)
    }

    /// Writes the admin chain (deepest first) and returns its length. Levels are tried deepest first;
    /// a shallower level is only tested when no deeper cell holds the point.
    fn resolve_admin(&self, point: Coord<f64>, scratch: &mut Scratch, out: &mut LocateBatch) -> usize {
        if self.far_mask.as_ref().is_some_and(|mask| mask.is_far(point)) {
            return 0;
        }
        let at_point = [point.x, point.y, point.x, point.y];
        let mut found = None;
        for (rank, tree) in self.admin_trees.iter().enumerate() {
            let candidates = match self.leaf_grid.as_ref().filter(|_| rank == 0) {
                Some(grid) => grid.candidates(point),
                None => {
                    scratch.holding.clear();
                    tree.query(at_point, &mut scratch.stack, &mut scratch.holding);
                    scratch.holding.sort_unstable();
                    &scratch.holding
                }
            };
            found = self.holding_cell(candidates, point);
            if found.is_some() {
                break;
            }
        }
        let (leaf, distance) = match found {
            Some(cell) => (cell, 0.0),
            None => {
                let envelope = self.search_envelope(point);
                scratch.nearby.clear();
                for tree in &self.admin_trees {
                    tree.query(envelope, &mut scratch.stack, &mut scratch.nearby);
                }
                match self.nearest(point, &scratch.nearby, &mut scratch.measured) {
                    Some(nearest) => nearest,
                    None => return 0,
                }
            }
        };
        let before = out.cells.len();
        out.cells.extend(self.admin_chain_from(leaf));
        let length = out.cells.len() - before;
        out.distances_m.extend(std::iter::repeat_n(distance, length));
        length
    }

    /// The cell of `candidates` (in index order) that holds the point by the edge rule: the first whose
    /// interior holds it, else the first that has it on its boundary.
    fn holding_cell(&self, candidates: &[u32], point: Coord<f64>) -> Option<u32> {
        let mut on_boundary = None;
        for &cell in candidates {
            match self.classify(cell as usize, point) {
                Position::Inside => return Some(cell),
                Position::Boundary => on_boundary = on_boundary.or(Some(cell)),
                Position::Outside => {}
            }
        }
        on_boundary
    }

    /// An admin cell and its ancestors up to the root, deepest first (load-time checks rule out cycles;
    /// the bound keeps even a corrupted chain finite).
    fn admin_chain_from(&self, cell: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(cell), |&cell| Some(self.parent_or_group(cell)))
            .take_while(|&cell| cell != NO_PARENT)
            .take(self.cells.len())
    }

    /// The admin chain of a cell, deepest first: the cell itself and its ancestors up to the root; empty for
    /// an overlay cell or an index out of range. Used to place what names a cell rather than a point (an
    /// area warning) in the admin hierarchy.
    pub fn admin_chain(&self, cell: u32) -> Vec<u32> {
        if !self.is_admin(cell) {
            return Vec::new();
        }
        self.admin_chain_from(cell).collect()
    }

    /// Writes one cell per overlay (layer, level) group that holds the point or lies within tolerance.
    fn resolve_overlays(&self, point: Coord<f64>, scratch: &mut Scratch, out: &mut LocateBatch) {
        if self.overlay_trees.is_empty() {
            return;
        }
        let envelope = self.search_envelope(point);
        for tree in &self.overlay_trees {
            scratch.nearby.clear();
            tree.query(envelope, &mut scratch.stack, &mut scratch.nearby);
            let mut best: Option<(Position, f64, u32)> = None;
            for &cell in &scratch.nearby {
                let position = self.classify(cell as usize, point);
                let distance = match position {
                    Position::Outside => self.near_distance_m(cell as usize, point),
                    _ => 0.0,
                };
                if distance > self.tolerance_m {
                    continue;
                }
                let candidate = (position, distance, cell);
                if best.is_none_or(|best| overlay_rank(&candidate) < overlay_rank(&best)) {
                    best = Some(candidate);
                }
            }
            if let Some((_, distance, cell)) = best {
                out.cells.push(cell);
                out.distances_m.push(distance);
            }
        }
    }

    /// Nearest of cells known not to hold the point, within tolerance; ties (shared edges) go to the
    /// deeper, then smaller-id cell.
    fn nearest(&self, point: Coord<f64>, cells: &[u32], measured: &mut Vec<(u32, f64)>) -> Option<(u32, f64)> {
        if self.tolerance_m <= 0.0 {
            return None;
        }
        measured.clear();
        measured.extend(
            cells
                .iter()
                .map(|&cell| (cell, self.near_distance_m(cell as usize, point)))
                .filter(|(_, distance)| *distance <= self.tolerance_m),
        );
        let closest = measured.iter().map(|(_, d)| *d).fold(f64::INFINITY, f64::min);
        measured
            .iter()
            .filter(|(_, distance)| *distance <= closest + DISTANCE_TIE_M)
            .max_by_key(|(cell, _)| (self.depth(*cell), std::cmp::Reverse(*cell)))
            .copied()
    }

    fn rings(&self, cell: usize) -> impl Iterator<Item = (&[Coord<f64>], bool)> + '_ {
        let first = self.cell_ring_starts.get(cell).copied().unwrap_or(0) as usize;
        let last = self.cell_ring_starts.get(cell + 1).copied().unwrap_or(0) as usize;
        (first..last).filter_map(move |ring| {
            let start = *self.ring_starts.get(ring)? as usize;
            let end = *self.ring_starts.get(ring + 1)? as usize;
            Some((self.coords.get(start..end)?, *self.ring_is_exterior.get(ring)?))
        })
    }

    /// Edges of a cell as pairs of coordinate indices.
    fn edge_indices(&self, cell: usize) -> Vec<(u32, u32)> {
        let first = self.cell_ring_starts.get(cell).copied().unwrap_or(0) as usize;
        let last = self.cell_ring_starts.get(cell + 1).copied().unwrap_or(0) as usize;
        let mut edges = Vec::new();
        for ring in first..last {
            let (Some(&start), Some(&end)) = (self.ring_starts.get(ring), self.ring_starts.get(ring + 1)) else {
                continue;
            };
            edges.extend((start..end).map(|i| (i, if i + 1 < end { i + 1 } else { start })));
        }
        edges
    }

    fn build_bands(&self, cell: usize) -> Option<EdgeBands> {
        let edges = self.edge_indices(cell);
        if edges.len() < BAND_INDEX_MIN_EDGES {
            return None;
        }
        EdgeBands::build(&self.coords, &edges)
    }

    fn classify(&self, cell: usize, p: Coord<f64>) -> Position {
        let bands = self.cells.get(cell).and_then(|info| self.edge_bands.get(info.bands as usize));
        match bands {
            Some(bands) => {
                let coord = |i: u32| self.coords.get(i as usize).copied().unwrap_or(Coord { x: f64::NAN, y: f64::NAN });
                classify_edges(bands.edges_at(p.y).iter().map(|(a, b)| (coord(*a), coord(*b))), p)
            }
            None => self.classify_small(cell, p),
        }
    }

    /// [`classify_edges`] over a cell's rings read in place: each ring's closing edge first, then the rest
    /// in order (the point query's innermost loop, so no iterator adapters).
    fn classify_small(&self, cell: usize, p: Coord<f64>) -> Position {
        let first = self.cell_ring_starts.get(cell).copied().unwrap_or(0) as usize;
        let last = self.cell_ring_starts.get(cell + 1).copied().unwrap_or(0) as usize;
        let mut inside = false;
        for ring in first..last {
            let start = self.ring_starts.get(ring).copied().unwrap_or(0) as usize;
            let end = self.ring_starts.get(ring + 1).copied().unwrap_or(0) as usize;
            let vertices = self.coords.get(start..end).unwrap_or(&[]);
            let Some(mut a) = vertices.last().copied() else {
                continue;
            };
            for &b in vertices {
                if crosses_or_touches(a, b, p, &mut inside) {
                    return Position::Boundary;
                }
                a = b;
            }
        }
        if inside {
            Position::Inside
        } else {
            Position::Outside
        }
    }

    /// Distance in metres from a point outside the cell to its boundary, exact whenever it is within the
    /// tolerance (farther distances may come back as any larger value, infinity included). Large cells
    /// only read the edges in the bands within the tolerance of the point.
    fn near_distance_m(&self, cell: usize, p: Coord<f64>) -> f64 {
        let kx = METRES_PER_DEGREE * p.y.to_radians().cos();
        let ky = METRES_PER_DEGREE;
        let local = |c: Coord<f64>| ((c.x - p.x) * kx, (c.y - p.y) * ky);
        let bands = self.cells.get(cell).and_then(|info| self.edge_bands.get(info.bands as usize));
        match bands {
            Some(bands) => {
                let reach = self.tolerance_m / METRES_PER_DEGREE;
                let coord = |i: u32| self.coords.get(i as usize).copied().unwrap_or(Coord { x: f64::NAN, y: f64::NAN });
                bands
                    .edges_between(p.y - reach, p.y + reach)
                    .iter()
                    .map(|(a, b)| distance_to_origin(local(coord(*a)), local(coord(*b))))
                    .fold(f64::INFINITY, f64::min)
            }
            None => self
                .rings(cell)
                .flat_map(|(ring, _)| ring_edges(ring))
                .map(|(a, b)| distance_to_origin(local(a), local(b)))
                .fold(f64::INFINITY, f64::min),
        }
    }

    /// Cells (any layer) whose closed area intersects the closed geometry, in index (id) order.
    /// Polygonal areas take the prepared path ([`PreparedArea`]); points and lines use geo's `Intersects`.
    pub fn cells_intersecting(&self, geojson: &[u8], crs: CoordSystem) -> Result<Vec<u32>, GeoError> {
        let geometry = parse_geometry(geojson)?.map_coords(|c| {
            let (x, y) = convert_point(c.x, c.y, crs, CoordSystem::Wgs84);
            Coord { x, y }
        });
        let Some(rect) = geometry.bounding_rect() else {
            return Ok(Vec::new());
        };
        let envelope = [rect.min().x, rect.min().y, rect.max().x, rect.max().y];
        let (mut stack, mut candidates) = (Vec::new(), Vec::new());
        for tree in self.trees() {
            tree.query(envelope, &mut stack, &mut candidates);
        }
        let area = match &geometry {
            Geometry::Polygon(polygon) => PreparedArea::new(std::slice::from_ref(polygon)),
            Geometry::MultiPolygon(polygons) => PreparedArea::new(&polygons.0),
            _ => None,
        };
        let mut hits: Vec<u32> = match area {
            Some(area) => candidates.into_iter().filter(|cell| self.cell_meets_area(*cell as usize, &area)).collect(),
            None => candidates.into_iter().filter(|cell| geometry.intersects(&self.shape(*cell as usize))).collect(),
        };
        hits.sort_unstable();
        Ok(hits)
    }

    /// [`Self::cells_intersecting`] for a batch of GeoJSON geometries, areas spread over rayon's threads.
    /// Fails on the first unusable geometry, naming its position.
    pub fn cells_intersecting_many(&self, geometries: &[&[u8]], crs: CoordSystem) -> Result<AreaCells, GeoError> {
        let per_area: Vec<Vec<u32>> = geometries
            .par_iter()
            .enumerate()
            .map(|(position, geojson)| {
                self.cells_intersecting(geojson, crs).map_err(|e| e.within(&format!("geometry #{position}")))
            })
            .collect::<Result<_, _>>()?;
        let mut joined = AreaCells {
            offsets: Vec::with_capacity(per_area.len() + 1),
            cells: Vec::with_capacity(per_area.iter().map(Vec::len).sum()),
        };
        joined.offsets.push(0);
        for cells in per_area {
            joined.cells.extend_from_slice(&cells);
            joined.offsets.push(joined.cells.len() as u32);
        }
        Ok(joined)
    }

    /// Closed regions meet iff their boundaries touch or, failing that, one holds a vertex of the other.
    fn cell_meets_area(&self, cell: usize, area: &PreparedArea) -> bool {
        let edges_touch = self.rings(cell).flat_map(|(ring, _)| ring_edges(ring)).any(|(a, b)| {
            area.bands.edges_between(a.y.min(b.y), a.y.max(b.y)).iter().any(|(c, d)| {
                let (c, d) = (area.coord(*c), area.coord(*d));
                segments_touch(a, b, c, d)
            })
        });
        edges_touch
            || self.rings(cell).filter_map(|(ring, _)| ring.first()).any(|v| area.classify(*v) != Position::Outside)
            || area.ring_firsts.iter().any(|v| self.classify(cell, *v) != Position::Outside)
    }

    /// Rebuilds a cell as a geo MultiPolygon (closing vertices restored) for the area query.
    fn shape(&self, cell: usize) -> MultiPolygon<f64> {
        let mut polygons: Vec<Polygon<f64>> = Vec::new();
        for (ring, exterior) in self.rings(cell) {
            let closed = LineString::new(ring.iter().chain(ring.first()).copied().collect());
            match polygons.last_mut() {
                Some(polygon) if !exterior => polygon.interiors_push(closed),
                _ => polygons.push(Polygon::new(closed, Vec::new())),
            }
        }
        MultiPolygon(polygons)
    }
}

/// A query area's edges bucketed by band, for many cell tests against one area.
struct PreparedArea {
    coords: Vec<Coord<f64>>,
    bands: EdgeBands,
    ring_firsts: Vec<Coord<f64>>,
}

impl PreparedArea {
    fn new(polygons: &[Polygon<f64>]) -> Option<Self> {
        let mut coords = Vec::new();
        let mut edges = Vec::new();
        let mut ring_firsts = Vec::new();
        for ring in polygons.iter().flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors())) {
            let open = ring.0.split_last().map_or(&[][..], |(_, rest)| rest);
            let start = coords.len() as u32;
            coords.extend_from_slice(open);
            let end = coords.len() as u32;
            edges.extend((start..end).map(|i| (i, if i + 1 < end { i + 1 } else { start })));
            ring_firsts.extend(open.first());
        }
        let bands = EdgeBands::build(&coords, &edges)?;
        Some(Self { coords, bands, ring_firsts })
    }

    fn coord(&self, index: u32) -> Coord<f64> {
        self.coords.get(index as usize).copied().unwrap_or(Coord { x: f64::NAN, y: f64::NAN })
    }

    fn classify(&self, p: Coord<f64>) -> Position {
        classify_edges(self.bands.edges_at(p.y).iter().map(|(a, b)| (self.coord(*a), self.coord(*b))), p)
    }
}

fn orientation(a: Coord<f64>, b: Coord<f64>, p: Coord<f64>) -> f64 {
    robust::orient2d(robust::Coord { x: a.x, y: a.y }, robust::Coord { x: b.x, y: b.y }, robust::Coord { x: p.x, y: p.y })
}

/// Closed segments ab and cd share at least one point (exact, robust orientation tests).
fn segments_touch(a: Coord<f64>, b: Coord<f64>, c: Coord<f64>, d: Coord<f64>) -> bool {
    if a.x.max(b.x) < c.x.min(d.x) || c.x.max(d.x) < a.x.min(b.x) || a.y.max(b.y) < c.y.min(d.y) || c.y.max(d.y) < a.y.min(b.y) {
        return false;
    }
    let (o1, o2) = (orientation(a, b, c), orientation(a, b, d));
    let (o3, o4) = (orientation(c, d, a), orientation(c, d, b));
    let opposite = |p: f64, q: f64| (p > 0.0 && q < 0.0) || (p < 0.0 && q > 0.0);
    let strictly_crossing = opposite(o1, o2) && opposite(o3, o4);
    let within = |p: Coord<f64>, q: Coord<f64>, r: Coord<f64>| {
        r.x >= p.x.min(q.x) && r.x <= p.x.max(q.x) && r.y >= p.y.min(q.y) && r.y <= p.y.max(q.y)
    };
    strictly_crossing
        || (o1 == 0.0 && within(a, b, c))
        || (o2 == 0.0 && within(a, b, d))
        || (o3 == 0.0 && within(c, d, a))
        || (o4 == 0.0 && within(c, d, b))
}

fn wgs84(lng: f64, lat: f64, crs: CoordSystem) -> Coord<f64> {
    let (x, y) = convert_point(lng, lat, crs, CoordSystem::Wgs84);
    Coord { x, y }
}

/// The smallest box holding all of `boxes` (inverted, with infinities, when there are none).
fn union_of<'a>(boxes: impl Iterator<Item = &'a CellBox>) -> Envelope {
    boxes.fold([f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY], |e, b| {
        [e[0].min(b.envelope[0]), e[1].min(b.envelope[1]), e[2].max(b.envelope[2]), e[3].max(b.envelope[3])]
    })
}

/// Puts answers computed in `order` (pairs of sort key and original position) back in original order;
/// the `count - order.len()` points left out get empty answers.
fn unsort(sorted: &LocateBatch, order: &[(u32, u32)], count: usize) -> LocateBatch {
    // A point left out keeps rank u32::MAX, past the end of `sorted`: every lookup below finds nothing.
    let mut rank = vec![u32::MAX; count];
    for (position_in_sorted, (_, original)) in order.iter().enumerate() {
        if let Some(slot) = rank.get_mut(*original as usize) {
            *slot = position_in_sorted as u32;
        }
    }
    let mut out = LocateBatch {
        offsets: Vec::with_capacity(count + 1),
        cells: Vec::with_capacity(sorted.cells.len()),
        distances_m: Vec::with_capacity(sorted.cells.len()),
        admin_counts: Vec::with_capacity(count),
    };
    out.offsets.push(0);
    for &j in &rank {
        let j = j as usize;
        let start = sorted.offsets.get(j).copied().unwrap_or(0) as usize;
        let end = sorted.offsets.get(j + 1).copied().unwrap_or(0) as usize;
        out.cells.extend_from_slice(sorted.cells.get(start..end).unwrap_or(&[]));
        out.distances_m.extend_from_slice(sorted.distances_m.get(start..end).unwrap_or(&[]));
        out.admin_counts.push(sorted.admin_counts.get(j).copied().unwrap_or(0));
        out.offsets.push(out.cells.len() as u32);
    }
    out
}

/// Joins per-chunk answers in order, shifting each chunk's offsets by the cells before it.
fn concatenate(parts: Vec<LocateBatch>) -> LocateBatch {
    let points: usize = parts.iter().map(|p| p.admin_counts.len()).sum();
    let cells: usize = parts.iter().map(|p| p.cells.len()).sum();
    let mut joined = LocateBatch {
        offsets: Vec::with_capacity(points + 1),
        cells: Vec::with_capacity(cells),
        distances_m: Vec::with_capacity(cells),
        admin_counts: Vec::with_capacity(points),
    };
    joined.offsets.push(0);
    for part in parts {
        let base = joined.cells.len() as u32;
        joined.offsets.extend(part.offsets.iter().skip(1).map(|offset| offset + base));
        joined.cells.extend_from_slice(&part.cells);
        joined.distances_m.extend_from_slice(&part.distances_m);
        joined.admin_counts.extend_from_slice(&part.admin_counts);
    }
    joined
}

fn load_layer(source: &LayerSource<'_>) -> Result<Vec<ParsedFeature>, GeoError> {
    let mut features = parse_layer(source.geojson, &source.properties)?;
    for feature in &mut features {
        if source.strict {
            if let Err(problem) = feature.shape.check_validation() {
                return Err(GeoError::new(format!("{}: invalid polygon: {problem}", feature.describe())));
            }
        }
        if source.crs != CoordSystem::Wgs84 {
            feature.shape = feature.shape.map_coords(|c| {
                let (x, y) = convert_point(c.x, c.y, source.crs, CoordSystem::Wgs84);
                Coord { x, y }
            });
        }
    }
    Ok(features)
}

fn intern(levels: &mut Vec<String>, level: &str) -> Result<u16, GeoError> {
    if let Some(found) = levels.iter().position(|l| l == level) {
        return Ok(found as u16);
    }
    if levels.len() >= usize::from(u16::MAX) {
        return Err(GeoError::new("too many distinct levels (at most 65535)"));
    }
    levels.push(level.to_owned());
    Ok((levels.len() - 1) as u16)
}

/// Depth of every admin cell along its parent chain; a cycle is an error naming a cell on it.
fn assign_depths(
    cells: &mut [CellInfo],
    layer_kinds: &[LayerKind],
    describe: impl Fn(usize) -> String,
) -> Result<(), GeoError> {
    let parents: Vec<Option<u32>> = cells
        .iter()
        .map(|c| {
            let admin = layer_kinds.get(usize::from(c.layer)) == Some(&LayerKind::Admin);
            (admin && c.parent_or_group != NO_PARENT).then_some(c.parent_or_group)
        })
        .collect();
    for (index, cell) in cells.iter_mut().enumerate() {
        let mut depth: usize = 0;
        let mut cursor = parents.get(index).copied().flatten();
        while let Some(parent) = cursor {
            depth += 1;
            if depth > parents.len() || depth > usize::from(u16::MAX) {
                return Err(GeoError::new(format!("{}: its parent chain forms a cycle", describe(index))));
            }
            cursor = parents.get(parent as usize).copied().flatten();
        }
        cell.depth = depth as u16;
    }
    Ok(())
}

/// Inside beats boundary beats near; then the smaller distance; then the smaller id.
fn overlay_rank(candidate: &(Position, f64, u32)) -> (u8, f64, u32) {
    let position_rank = match candidate.0 {
        Position::Inside => 0,
        Position::Boundary => 1,
        Position::Outside => 2,
    };
    (position_rank, candidate.1, candidate.2)
}

/// Crossing-number test with exact boundary detection (robust orient2d); edges may come in any order.
fn classify_edges(edges: impl Iterator<Item = (Coord<f64>, Coord<f64>)>, p: Coord<f64>) -> Position {
    let mut inside = false;
    for (a, b) in edges {
        if crosses_or_touches(a, b, p, &mut inside) {
            return Position::Boundary;
        }
    }
    if inside {
        Position::Inside
    } else {
        Position::Outside
    }
}

/// One edge of the crossing-number test: flips `inside` when a rightward ray from `p` crosses edge ab;
/// true when `p` lies on the edge.
#[inline(always)]
fn crosses_or_touches(a: Coord<f64>, b: Coord<f64>, p: Coord<f64>, inside: &mut bool) -> bool {
    if a == p {
        return true;
    }
    if (a.y > p.y) != (b.y > p.y) {
        let orientation = robust::orient2d(
            robust::Coord { x: a.x, y: a.y },
            robust::Coord { x: b.x, y: b.y },
            robust::Coord { x: p.x, y: p.y },
        );
        if orientation == 0.0 {
            return true;
        }
        if (orientation > 0.0) == (b.y > a.y) {
            *inside = !*inside;
        }
        false
    } else {
        a.y == p.y && b.y == p.y && (a.x.min(b.x)..=a.x.max(b.x)).contains(&p.x)
    }
}

/// Edges of an open ring, closing edge included.
fn ring_edges(ring: &[Coord<f64>]) -> impl Iterator<Item = (Coord<f64>, Coord<f64>)> + '_ {
    ring.iter().copied().zip(ring.iter().skip(1).chain(ring.first()).copied())
}

fn distance_to_origin((ax, ay): (f64, f64), (bx, by): (f64, f64)) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let length_sq = dx * dx + dy * dy;
    let t = if length_sq > 0.0 { (-(ax * dx + ay * dy) / length_sq).clamp(0.0, 1.0) } else { 0.0 };
    // Metres on a city-sized patch: no overflow to guard against, so plain sqrt rather than libm's hypot.
    let (x, y) = (ax + t * dx, ay + t * dy);
    (x * x + y * y).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(id: &str, level: &str, parent: Option<&str>, x0: f64, y0: f64, size: f64) -> String {
        let parent = parent.map_or("null".to_string(), |p| format!("{p:?}"));
        let (x1, y1) = (x0 + size, y0 + size);
        format!(
            r#"{{"type":"Feature","properties":{{"id":{id:?},"name":{id:?},"level":{level:?},"parent":{parent}}},
            "geometry":{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}"#
        )
    }

    fn collection(features: &[String]) -> Vec<u8> {
        format!(r#"{{"type":"FeatureCollection","features":[{}]}}"#, features.join(",")).into_bytes()
    }

    fn admin_source(geojson: &[u8], strict: bool) -> LayerSource<'_> {
        LayerSource {
            name: "admin".into(),
            kind: LayerKind::Admin,
            geojson,
            crs: CoordSystem::Wgs84,
            properties: names(),
            strict,
        }
    }

    fn names() -> PropertyNames {
        PropertyNames { id: "id".into(), name: "name".into(), level: "level".into(), parent: "parent".into() }
    }

    fn admin_index() -> GridIndex {
        let layer = collection(&[
            square("d", "district", None, 0.0, 0.0, 0.002),
            square("s2", "street", Some("d"), 0.001, 0.0, 0.001),
            square("s1", "street", Some("d"), 0.0, 0.0, 0.001),
        ]);
        let source = admin_source(&layer, true);
        GridIndex::build(&[source], 30.0).unwrap()
    }

    fn ids(index: &GridIndex, batch: &LocateBatch) -> Vec<String> {
        batch.cells.iter().map(|c| index.cell(*c as usize).unwrap().id.to_string()).collect()
    }

    #[test]
    fn inside_point_gets_leaf_and_chain() {
        let index = admin_index();
        let batch = index.locate_batch(&[0.0015], &[0.0005], CoordSystem::Wgs84).unwrap();
        assert_eq!(ids(&index, &batch), ["s2", "d"]);
        assert_eq!(batch.admin_counts, [2]);
    }

    #[test]
    fn admin_chain_of_a_cell_runs_up_to_the_root() {
        let index = admin_index();
        let batch = index.locate_batch(&[0.0015], &[0.0005], CoordSystem::Wgs84).unwrap();
        assert_eq!(index.admin_chain(batch.cells[0]), batch.cells);
        assert!(index.admin_chain(u32::MAX).is_empty());
    }

    #[test]
    fn shared_edge_goes_to_smaller_id() {
        let index = admin_index();
        let batch = index.locate_batch(&[0.001], &[0.0005], CoordSystem::Wgs84).unwrap();
        assert_eq!(ids(&index, &batch), ["s1", "d"]);
    }

    #[test]
    fn near_point_resolves_with_distance_and_far_point_is_outside() {
        let index = admin_index();
        let near = index.locate_batch(&[-0.0001], &[0.0005], CoordSystem::Wgs84).unwrap();
        assert_eq!(ids(&index, &near), ["s1", "d"]);
        assert!((near.distances_m[0] - 11.1).abs() < 0.1);
        let far = index.locate_batch(&[-0.01], &[0.0005], CoordSystem::Wgs84).unwrap();
        assert!(far.cells.is_empty());
    }

    #[test]
    fn sorted_parallel_batches_equal_one_sequential_pass() {
        let index = admin_index();
        let n = 3 * PARALLEL_CHUNK + 17;
        let lngs: Vec<f64> = (0..n).map(|i| -0.0005 + 0.003 * (i % 101) as f64 / 100.0).collect();
        let lats: Vec<f64> = (0..n).map(|i| -0.0005 + 0.002 * (i % 37) as f64 / 36.0).collect();
        let parallel = index.locate_batch(&lngs, &lats, CoordSystem::Wgs84).unwrap();
        let points: Vec<Coord<f64>> = lngs.iter().zip(&lats).map(|(&x, &y)| Coord { x, y }).collect();
        assert_eq!(parallel, index.locate_points(&points));
    }

    fn shipped_admin(tolerance_m: f64) -> GridIndex {
        let layer = include_bytes!("../../../hub/data/grids/chengdu_admin_gcj02.geojson");
        GridIndex::build(&[admin_source(layer, false)], tolerance_m).unwrap()
    }

    /// Evenly spread points (an additive recurrence) over the index's extent grown by `margin` degrees.
    fn spread_points(index: &GridIndex, margin: f64, count: usize) -> Vec<Coord<f64>> {
        let [min_x, min_y, max_x, max_y] = index.extent;
        let (width, height) = (max_x - min_x + 2.0 * margin, max_y - min_y + 2.0 * margin);
        (0..count)
            .map(|i| Coord {
                x: min_x - margin + width * (i as f64 * 0.618_033_988_749_895).fract(),
                y: min_y - margin + height * (i as f64 * 0.414_213_562_373_095).fract(),
            })
            .collect()
    }

    #[test]
    fn far_mask_and_leaf_grid_change_no_answer() {
        for tolerance_m in [0.0, 30.0, 400.0] {
            let mut index = shipped_admin(tolerance_m);
            let mut points = spread_points(&index, 0.02, 300_000);
            points.extend_from_slice(&index.coords);
            let fast = index.locate_points(&points);
            assert!(index.far_mask.is_some() && index.leaf_grid.is_some());
            assert!(fast.admin_counts.contains(&0));
            assert!(fast.distances_m.iter().any(|&distance| distance > 0.0) == (tolerance_m > 0.0));
            index.far_mask = None;
            index.leaf_grid = None;
            assert_eq!(fast, index.locate_points(&points), "tolerance {tolerance_m} m");
        }
    }

    #[test]
    fn points_just_beyond_the_tolerance_are_outside_and_just_within_resolve() {
        let index = admin_index();
        let metres = |m: f64| m / METRES_PER_DEGREE;
        let lngs = [-metres(29.9), -metres(30.1), 0.002 + metres(29.9), 0.002 + metres(30.1)];
        let batch = index.locate_batch(&lngs, &[0.0005; 4], CoordSystem::Wgs84).unwrap();
        assert_eq!(batch.admin_counts, [2, 0, 2, 0]);
    }

    #[test]
    fn missing_parent_is_an_error_naming_the_feature() {
        let layer = collection(&[square("s1", "street", Some("nowhere"), 0.0, 0.0, 1.0)]);
        let source = admin_source(&layer, false);
        let err = GridIndex::build(&[source], 30.0).err().unwrap().to_string();
        assert!(err.contains("\"s1\"") && err.contains("nowhere"), "{err}");
    }

    #[test]
    fn polygon_query_includes_touching_cells() {
        let index = admin_index();
        let area = br#"{"type":"Polygon","coordinates":[[[0.0005,0.0005],[0.001,0.0005],[0.001,0.0006],[0.0005,0.0005]]]}"#;
        let hits = index.cells_intersecting(area, CoordSystem::Wgs84).unwrap();
        let ids: Vec<&str> = hits.iter().map(|c| index.cell(*c as usize).unwrap().id).collect();
        assert_eq!(ids, ["d", "s1", "s2"]);
    }
}
