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

mod area;
mod build;
mod point;
mod polygon;
#[cfg(test)]
mod tests;

use geo::Coord;
use static_aabb2d_index::{StaticAABB2DIndex, StaticAABB2DIndexBuilder};

use self::polygon::EdgeBands;
use super::cell_grid::CellGrid;
use super::coords::CoordSystem;
use super::far_mask::FarMask;
use super::geojson::PropertyNames;
use super::GeoError;

/// Metres per degree of latitude on a sphere of the mean Earth radius (6,371,008.8 m).
pub(super) const METRES_PER_DEGREE: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

const NO_PARENT: u32 = u32::MAX;

/// Children per node of the packed trees (flatbush's default).
const NODE_SIZE: usize = 16;

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

impl GridIndex {
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
            + self.edge_bands.iter().map(EdgeBands::memory_bytes).sum::<usize>();
        let spatial_index = self.trees().map(BoxTree::memory_bytes).sum::<usize>()
            + self.leaf_grid.as_ref().map_or(0, CellGrid::memory_bytes)
            + self.far_mask.as_ref().map_or(0, FarMask::memory_bytes);
        let metadata = self.cells.capacity() * std::mem::size_of::<CellInfo>()
            + self.strings.text.capacity()
            + self.strings.ends.capacity() * 4
            + self.levels.iter().chain(&self.layer_names).map(|s| s.capacity() + 24).sum::<usize>();
        MemoryUse { geometry, spatial_index, metadata, raw_vertex_bytes: self.raw_vertex_count * 16 }
    }

    fn trees(&self) -> impl Iterator<Item = &BoxTree> {
        self.admin_trees.iter().chain(&self.overlay_trees)
    }

    fn is_admin(&self, cell: u32) -> bool {
        self.cells.get(cell as usize).and_then(|info| self.layer_kinds.get(usize::from(info.layer)))
            == Some(&LayerKind::Admin)
    }

    fn depth(&self, cell: u32) -> u16 {
        self.cells.get(cell as usize).map_or(0, |info| info.depth)
    }

    fn parent_or_group(&self, cell: u32) -> u32 {
        self.cells.get(cell as usize).map_or(NO_PARENT, |info| info.parent_or_group)
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
}
