//! The grid index: every cell of every layer, stored flat (one coordinate array, ring and cell offsets)
//! under one bulk-loaded R*-tree of cell bounding boxes.
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
    BoundingRect, Coord, Intersects, LineString, MapCoords, MultiPolygon, Polygon, Validation,
};
use rstar::{Envelope, RTree, RTreeNode, RTreeObject, AABB};

use super::coords::{convert_point, coordinate_problem, CoordSystem};
use super::geojson::{parse_geometry, parse_layer, ParsedFeature, PropertyNames};
use super::GeoError;

/// Metres per degree of latitude on a sphere of the mean Earth radius (6,371,008.8 m).
const METRES_PER_DEGREE: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;
/// Distances closer than this count as ties when picking the nearest cell (shared edges).
const DISTANCE_TIE_M: f64 = 1e-3;
const NO_PARENT: u32 = u32::MAX;

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

struct CellBox {
    envelope: AABB<[f64; 2]>,
    cell: u32,
}

impl RTreeObject for CellBox {
    type Envelope = AABB<[f64; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

struct CellInfo {
    layer: u16,
    level: u16,
    depth: u16,
    /// Admin cells: parent cell index or NO_PARENT. Overlay cells: their (layer, level) group.
    parent_or_group: u32,
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
    candidates: Vec<(u32, Position)>,
    overlay_best: Vec<(u32, u32, Position, f64)>,
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
    tree: RTree<CellBox>,
    tolerance_m: f64,
    raw_vertex_count: usize,
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
            cells.push(CellInfo { layer: cell.layer, level, depth: 0, parent_or_group });
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
            tree: RTree::new(),
            tolerance_m,
            raw_vertex_count: 0,
        };
        let mut boxes = Vec::with_capacity(pending.len());
        for (cell, pending_cell) in pending.iter().enumerate() {
            index.strings.push(&pending_cell.feature.id);
            index.strings.push(&pending_cell.feature.name);
            if let Some(envelope) = index.push_geometry(&pending_cell.feature.shape) {
                boxes.push(CellBox { envelope, cell: cell as u32 });
            }
        }
        index.coords.shrink_to_fit();
        index.strings.text.shrink_to_fit();
        index.tree = RTree::bulk_load(boxes);
        Ok(index)
    }

    /// Appends a cell's rings (closing vertex dropped) and returns its bounding box.
    fn push_geometry(&mut self, shape: &MultiPolygon<f64>) -> Option<AABB<[f64; 2]>> {
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
        Some(AABB::from_corners([rect.min().x, rect.min().y], [rect.max().x, rect.max().y]))
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
            + self.ring_is_exterior.capacity();
        let spatial_index = count_tree_nodes(self.tree.root()) * std::mem::size_of::<RTreeNode<CellBox>>();
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
        let mut batch = LocateBatch {
            offsets: Vec::with_capacity(lngs.len() + 1),
            cells: Vec::with_capacity(lngs.len() * 2),
            distances_m: Vec::with_capacity(lngs.len() * 2),
            admin_counts: Vec::with_capacity(lngs.len()),
        };
        batch.offsets.push(0);
        let mut scratch = Scratch::default();
        for (position, (&lng, &lat)) in lngs.iter().zip(lats).enumerate() {
            if let Some(problem) = coordinate_problem(lng, lat) {
                return Err(GeoError::new(format!("point #{position}: {problem}")));
            }
            let (lng, lat) = convert_point(lng, lat, crs, CoordSystem::Wgs84);
            self.locate_into(lng, lat, &mut scratch, &mut batch);
        }
        Ok(batch)
    }

    fn locate_into(&self, lng: f64, lat: f64, scratch: &mut Scratch, out: &mut LocateBatch) {
        let point = Coord { x: lng, y: lat };
        scratch.candidates.clear();
        for entry in self.tree.locate_in_envelope_intersecting(&self.search_envelope(point)) {
            let position = if entry.envelope.contains_point(&[lng, lat]) {
                self.classify(entry.cell as usize, point)
            } else {
                Position::Outside
            };
            scratch.candidates.push((entry.cell, position));
        }
        let admin_count = self.resolve_admin(point, &scratch.candidates, out);
        out.admin_counts.push(admin_count.min(usize::from(u8::MAX)) as u8);
        self.resolve_overlays(point, scratch, out);
        out.offsets.push(out.cells.len() as u32);
    }

    /// The point's box grown by the tolerance, so one tree query serves containment and nearest cell.
    fn search_envelope(&self, point: Coord<f64>) -> AABB<[f64; 2]> {
        let dlat = self.tolerance_m / METRES_PER_DEGREE;
        let dlng = (self.tolerance_m / (METRES_PER_DEGREE * point.y.to_radians().cos().max(1e-9))).min(360.0);
        AABB::from_corners([point.x - dlng, point.y - dlat], [point.x + dlng, point.y + dlat])
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

    /// Writes the admin chain (deepest first) and returns its length.
    fn resolve_admin(&self, point: Coord<f64>, candidates: &[(u32, Position)], out: &mut LocateBatch) -> usize {
        let contained = candidates
            .iter()
            .filter(|(cell, position)| *position != Position::Outside && self.is_admin(*cell))
            .max_by(|(a, pa), (b, pb)| {
                (self.depth(*a), *pa == Position::Inside, std::cmp::Reverse(*a))
                    .cmp(&(self.depth(*b), *pb == Position::Inside, std::cmp::Reverse(*b)))
            });
        let leaf = match contained {
            Some((cell, _)) => *cell,
            None => match self.nearest(point, candidates.iter().map(|(c, _)| *c).filter(|c| self.is_admin(*c))) {
                Some(cell) => cell,
                None => return 0,
            },
        };
        let mut length = 0;
        let mut cell = leaf;
        while cell != NO_PARENT && length <= self.cells.len() {
            let distance = match candidates.iter().find(|(c, _)| *c == cell) {
                Some((_, position)) if *position != Position::Outside => 0.0,
                _ => self.distance_m(cell as usize, point),
            };
            out.cells.push(cell);
            out.distances_m.push(distance);
            length += 1;
            cell = self.parent_or_group(cell);
        }
        length
    }

    /// Writes one cell per overlay (layer, level) group that holds the point or lies within tolerance.
    fn resolve_overlays(&self, point: Coord<f64>, scratch: &mut Scratch, out: &mut LocateBatch) {
        scratch.overlay_best.clear();
        for &(cell, position) in &scratch.candidates {
            if self.is_admin(cell) {
                continue;
            }
            let group = self.parent_or_group(cell);
            let distance = match position {
                Position::Outside => {
                    let distance = self.distance_m(cell as usize, point);
                    if distance > self.tolerance_m {
                        continue;
                    }
                    distance
                }
                _ => 0.0,
            };
            let entry = (group, cell, position, distance);
            match scratch.overlay_best.iter_mut().find(|best| best.0 == group) {
                Some(best) if overlay_beats(&entry, best) => *best = entry,
                Some(_) => {}
                None => scratch.overlay_best.push(entry),
            }
        }
        scratch.overlay_best.sort_by_key(|best| best.0);
        for &(_, cell, _, distance) in &scratch.overlay_best {
            out.cells.push(cell);
            out.distances_m.push(distance);
        }
    }

    /// Nearest cell within tolerance; ties (shared edges) go to the deeper, then smaller-id cell.
    fn nearest(&self, point: Coord<f64>, cells: impl Iterator<Item = u32>) -> Option<u32> {
        if self.tolerance_m <= 0.0 {
            return None;
        }
        let measured: Vec<(u32, f64)> = cells
            .map(|cell| (cell, self.distance_m(cell as usize, point)))
            .filter(|(_, distance)| *distance <= self.tolerance_m)
            .collect();
        let closest = measured.iter().map(|(_, d)| *d).fold(f64::INFINITY, f64::min);
        measured
            .iter()
            .filter(|(_, distance)| *distance <= closest + DISTANCE_TIE_M)
            .max_by_key(|(cell, _)| (self.depth(*cell), std::cmp::Reverse(*cell)))
            .map(|(cell, _)| *cell)
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

    /// Crossing-number test with exact boundary detection (robust orient2d).
    fn classify(&self, cell: usize, p: Coord<f64>) -> Position {
        let mut inside = false;
        for (ring, _) in self.rings(cell) {
            for (a, b) in ring_edges(ring) {
                if a == p {
                    return Position::Boundary;
                }
                if (a.y > p.y) != (b.y > p.y) {
                    let orientation = robust::orient2d(
                        robust::Coord { x: a.x, y: a.y },
                        robust::Coord { x: b.x, y: b.y },
                        robust::Coord { x: p.x, y: p.y },
                    );
                    if orientation == 0.0 {
                        return Position::Boundary;
                    }
                    if (orientation > 0.0) == (b.y > a.y) {
                        inside = !inside;
                    }
                } else if a.y == p.y && b.y == p.y && (a.x.min(b.x)..=a.x.max(b.x)).contains(&p.x) {
                    return Position::Boundary;
                }
            }
        }
        if inside {
            Position::Inside
        } else {
            Position::Outside
        }
    }

    /// Distance in metres from the point to the cell's boundary (0 when the cell holds the point).
    fn distance_m(&self, cell: usize, p: Coord<f64>) -> f64 {
        if self.classify(cell, p) != Position::Outside {
            return 0.0;
        }
        let kx = METRES_PER_DEGREE * p.y.to_radians().cos();
        let ky = METRES_PER_DEGREE;
        let local = |c: Coord<f64>| ((c.x - p.x) * kx, (c.y - p.y) * ky);
        self.rings(cell)
            .flat_map(|(ring, _)| ring_edges(ring))
            .map(|(a, b)| distance_to_origin(local(a), local(b)))
            .fold(f64::INFINITY, f64::min)
    }

    /// Cells (any layer) whose closed area intersects the closed geometry, in index (id) order.
    pub fn cells_intersecting(&self, geojson: &[u8], crs: CoordSystem) -> Result<Vec<u32>, GeoError> {
        let geometry = parse_geometry(geojson)?.map_coords(|c| {
            let (x, y) = convert_point(c.x, c.y, crs, CoordSystem::Wgs84);
            Coord { x, y }
        });
        let Some(rect) = geometry.bounding_rect() else {
            return Ok(Vec::new());
        };
        let envelope = AABB::from_corners([rect.min().x, rect.min().y], [rect.max().x, rect.max().y]);
        let mut hits: Vec<u32> = self
            .tree
            .locate_in_envelope_intersecting(&envelope)
            .filter(|entry| geometry.intersects(&self.shape(entry.cell as usize)))
            .map(|entry| entry.cell)
            .collect();
        hits.sort_unstable();
        Ok(hits)
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

fn overlay_beats(candidate: &(u32, u32, Position, f64), best: &(u32, u32, Position, f64)) -> bool {
    let rank = |e: &(u32, u32, Position, f64)| match e.2 {
        Position::Inside => 0,
        Position::Boundary => 1,
        Position::Outside => 2,
    };
    (rank(candidate), candidate.3, candidate.1) < (rank(best), best.3, best.1)
}

/// Edges of an open ring, closing edge included.
fn ring_edges(ring: &[Coord<f64>]) -> impl Iterator<Item = (Coord<f64>, Coord<f64>)> + '_ {
    ring.iter().copied().zip(ring.iter().skip(1).chain(ring.first()).copied())
}

fn distance_to_origin((ax, ay): (f64, f64), (bx, by): (f64, f64)) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let length_sq = dx * dx + dy * dy;
    let t = if length_sq > 0.0 { (-(ax * dx + ay * dy) / length_sq).clamp(0.0, 1.0) } else { 0.0 };
    (ax + t * dx).hypot(ay + t * dy)
}

fn count_tree_nodes(node: &rstar::ParentNode<CellBox>) -> usize {
    1 + node
        .children()
        .iter()
        .map(|child| match child {
            RTreeNode::Leaf(_) => 1,
            RTreeNode::Parent(parent) => count_tree_nodes(parent),
        })
        .sum::<usize>()
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

    fn names() -> PropertyNames {
        PropertyNames { id: "id".into(), name: "name".into(), level: "level".into(), parent: "parent".into() }
    }

    fn admin_index() -> GridIndex {
        let layer = collection(&[
            square("d", "district", None, 0.0, 0.0, 0.002),
            square("s2", "street", Some("d"), 0.001, 0.0, 0.001),
            square("s1", "street", Some("d"), 0.0, 0.0, 0.001),
        ]);
        let source = LayerSource {
            name: "admin".into(),
            kind: LayerKind::Admin,
            geojson: &layer,
            crs: CoordSystem::Wgs84,
            properties: names(),
            strict: true,
        };
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
    fn missing_parent_is_an_error_naming_the_feature() {
        let layer = collection(&[square("s1", "street", Some("nowhere"), 0.0, 0.0, 1.0)]);
        let source = LayerSource {
            name: "admin".into(),
            kind: LayerKind::Admin,
            geojson: &layer,
            crs: CoordSystem::Wgs84,
            properties: names(),
            strict: false,
        };
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
