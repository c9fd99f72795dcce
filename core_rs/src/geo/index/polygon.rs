//! Point in polygon: the crossing-number test with exact boundary detection, read in place from the flat
//! geometry, with a y-band edge index for large cells (and for query areas).

use geo::Coord;

use super::GridIndex;

/// Cells with at least this many edges get a y-band edge index (like GEOS's indexed point-in-area
/// locator), so a point test reads a few edges instead of all of a district outline's thousands.
const BAND_INDEX_MIN_EDGES: usize = 64;
const EDGES_PER_BAND: usize = 4;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Position {
    Outside,
    Boundary,
    Inside,
}

/// Edges of one large cell bucketed by horizontal band: an edge is listed in every band its y-range
/// touches, so the band holding a point's y lists every edge a horizontal ray through it can meet.
pub(super) struct EdgeBands {
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
    pub(super) fn build(coords: &[Coord<f64>], edges: &[(u32, u32)]) -> Option<Self> {
        let y = |i: u32| coords.get(i as usize).map_or(0.0, |c| c.y);
        let (y0, y1) =
            edges.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (a, _)| (lo.min(y(*a)), hi.max(y(*a))));
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

    pub(super) fn memory_bytes(&self) -> usize {
        self.starts.capacity() * 4 + self.edges.capacity() * 8 + 48
    }

    pub(super) fn edges_at(&self, y: f64) -> &[(u32, u32)] {
        self.edges_between(y, y)
    }

    /// Edges listed in the bands from `low`'s to `high`'s (consecutive in storage; may repeat edges).
    pub(super) fn edges_between(&self, low: f64, high: f64) -> &[(u32, u32)] {
        let start = self.starts.get(self.band_of(low)).copied().unwrap_or(0) as usize;
        let end = self.starts.get(self.band_of(high) + 1).copied().unwrap_or(0) as usize;
        self.edges.get(start..end).unwrap_or(&[])
    }
}

impl GridIndex {
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

    pub(super) fn build_bands(&self, cell: usize) -> Option<EdgeBands> {
        let edges = self.edge_indices(cell);
        if edges.len() < BAND_INDEX_MIN_EDGES {
            return None;
        }
        EdgeBands::build(&self.coords, &edges)
    }

    pub(super) fn classify(&self, cell: usize, p: Coord<f64>) -> Position {
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
}

/// Crossing-number test with exact boundary detection (robust orient2d); edges may come in any order.
pub(super) fn classify_edges(edges: impl Iterator<Item = (Coord<f64>, Coord<f64>)>, p: Coord<f64>) -> Position {
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
pub(super) fn ring_edges(ring: &[Coord<f64>]) -> impl Iterator<Item = (Coord<f64>, Coord<f64>)> + '_ {
    ring.iter().copied().zip(ring.iter().skip(1).chain(ring.first()).copied())
}
