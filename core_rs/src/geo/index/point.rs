//! The point query: a batch of points to the admin chain and the overlay cells of each, resolved in spatial
//! order across threads for large batches; a point outside every cell takes the nearest within tolerance.

use geo::Coord;
use rayon::prelude::*;

use super::polygon::{ring_edges, Position};
use super::{Envelope, GridIndex, LocateBatch, METRES_PER_DEGREE, NO_PARENT};
use crate::geo::coords::{convert_point, coordinate_problem, CoordSystem};
use crate::geo::GeoError;

/// Distances closer than this count as ties when picking the nearest cell (shared edges).
const DISTANCE_TIE_M: f64 = 1e-3;

/// Batches larger than this are split across rayon's threads, this many points per task.
pub(super) const PARALLEL_CHUNK: usize = 16_384;
/// Batches at least this large are resolved in spatial (Hilbert) order.
const SPATIAL_SORT_MIN: usize = 4_096;

/// Reusable per-thread buffers of the point query.
#[derive(Default)]
struct Scratch {
    stack: Vec<usize>,
    holding: Vec<u32>,
    nearby: Vec<u32>,
    measured: Vec<(u32, f64)>,
}

impl GridIndex {
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
        let points: Vec<Coord<f64>> = lngs.par_iter().zip(lats.par_iter()).map(|(&x, &y)| wgs84(x, y, crs)).collect();
        let mut order: Vec<(u32, u32)> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| !self.resolves_to_nothing(**p))
            .map(|(i, p)| (self.hilbert_key(*p), i as u32))
            .collect();
        order.par_sort_unstable();
        let sorted: Vec<Coord<f64>> = order.iter().filter_map(|(_, i)| points.get(*i as usize).copied()).collect();
        let parts: Vec<LocateBatch> =
            sorted.par_chunks(PARALLEL_CHUNK).map(|chunk| self.locate_points(chunk)).collect();
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
            if span > 0.0 {
                (((v - lo) / span).clamp(0.0, 1.0) * f64::from(u16::MAX)) as u16
            } else {
                0
            }
        };
        static_aabb2d_index::hilbert_xy_to_index(scale(p.x, min_x, max_x), scale(p.y, min_y, max_y))
    }

    /// Resolves WGS-84 points on the calling thread.
    pub(super) fn locate_points(&self, points: &[Coord<f64>]) -> LocateBatch {
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

    /// The point's box grown by the tolerance: where nearest-cell candidates can be.
    fn search_envelope(&self, point: Coord<f64>) -> Envelope {
        let dlat = self.tolerance_m / METRES_PER_DEGREE;
        let dlng = (self.tolerance_m / (METRES_PER_DEGREE * point.y.to_radians().cos().max(1e-9))).min(360.0);
        [point.x - dlng, point.y - dlat, point.x + dlng, point.y + dlat]
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
}

fn wgs84(lng: f64, lat: f64, crs: CoordSystem) -> Coord<f64> {
    let (x, y) = convert_point(lng, lat, crs, CoordSystem::Wgs84);
    Coord { x, y }
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

/// Inside beats boundary beats near; then the smaller distance; then the smaller id.
fn overlay_rank(candidate: &(Position, f64, u32)) -> (u8, f64, u32) {
    let position_rank = match candidate.0 {
        Position::Inside => 0,
        Position::Boundary => 1,
        Position::Outside => 2,
    };
    (position_rank, candidate.1, candidate.2)
}

fn distance_to_origin((ax, ay): (f64, f64), (bx, by): (f64, f64)) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let length_sq = dx * dx + dy * dy;
    let t = if length_sq > 0.0 { (-(ax * dx + ay * dy) / length_sq).clamp(0.0, 1.0) } else { 0.0 };
    // Metres on a city-sized patch: no overflow to guard against, so plain sqrt rather than libm's hypot.
    let (x, y) = (ax + t * dx, ay + t * dy);
    (x * x + y * y).sqrt()
}
