//! A coarse raster over the admin cells that answers "is this point farther than the tolerance from every
//! admin cell?" with one bit read, so points well outside the hierarchy skip the tree searches and the
//! nearest-edge scans that would only confirm it.
//!
//! Built once at load: every admin edge marks the buckets it passes through; marks are grown by the
//! tolerance (plus a bucket of slack); the unmarked buckets form regions that no cell boundary comes
//! near, so each region lies wholly inside or wholly outside every cell, and one point test per region
//! decides it. A bucket is "far" when its region is outside every cell.

use geo::Coord;

use super::buckets::Buckets;
use super::index::METRES_PER_DEGREE;

/// Buckets per admin cell: more buckets make the band of slow-path points around the cells thinner.
const BUCKETS_PER_CELL: f64 = 4.0;
/// Far buckets start this much beyond the tolerance, so rounding in a computed distance can never put
/// a far point back within the tolerance.
const TOLERANCE_SLACK: f64 = 1.01;
/// Edge marks are widened by this fraction of a bucket, far more than any rounding in placing them.
const MARK_PADDING: f64 = 1e-3;
/// Rasters reaching closer to a pole than this are not built (a degree of longitude shrinks to nothing).
const MAX_LATITUDE: f64 = 85.0;

pub(super) struct FarMask {
    buckets: Buckets,
    far: Vec<u64>,
}

impl FarMask {
    /// True when every admin cell is more than the tolerance away from `p` (points beyond the raster
    /// included); false when the point may be in or near a cell. A point on the raster's far side may
    /// compute to just past the last bucket (the scale rounds): a bucket of slack keeps it in the raster.
    pub(super) fn is_far(&self, p: Coord<f64>) -> bool {
        match self.buckets.bucket_of(p, 1) {
            Some(bucket) => self.far.get(bucket / 64).is_some_and(|word| (word >> (bucket % 64)) & 1 == 1),
            None => true,
        }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.far.capacity() * 8
    }

    /// A raster over `extent` (the admin cells' union box) grown by the tolerance, for `cell_count`
    /// cells with edges `edges`; `in_any_cell` tells whether a point is in or on some admin cell. `None`
    /// when the extent is degenerate or reaches near a pole.
    ///
    /// A point beyond the raster is farther than the grown tolerance from the extent along one axis (a
    /// degree of longitude is measured at the raster's outermost latitude, where it is shortest). Inside,
    /// every point of a bucket whose neighbours within the reach hold no edge has a tolerance disk free
    /// of cell boundaries, so it is far exactly when its region (flood fill) is outside every cell.
    pub(super) fn build(
        [min_x, min_y, max_x, max_y]: [f64; 4],
        cell_count: usize,
        tolerance_m: f64,
        edges: impl Iterator<Item = (Coord<f64>, Coord<f64>)>,
        in_any_cell: impl FnMut(Coord<f64>) -> bool,
    ) -> Option<Self> {
        let reach_y = tolerance_m * TOLERANCE_SLACK / METRES_PER_DEGREE;
        let outer_latitude = min_y.abs().max(max_y.abs()) + reach_y;
        if outer_latitude.is_nan() || outer_latitude >= MAX_LATITUDE {
            return None;
        }
        let reach_x = reach_y / outer_latitude.to_radians().cos();
        let grown = [min_x - reach_x, min_y - reach_y, max_x + reach_x, max_y + reach_y];
        let buckets = Buckets::covering(grown, cell_count as f64 * BUCKETS_PER_CELL)?;
        let reach_columns = (reach_x / buckets.bucket_width()) as usize + 1;
        let reach_rows = (reach_y / buckets.bucket_height()) as usize + 1;
        let mut mask = Self { buckets, far: Vec::new() };
        let mut touched = vec![false; mask.buckets.len()];
        for (a, b) in edges {
            mask.mark_edge(&mut touched, a, b);
        }
        let near = mask.grow(&touched, reach_columns, reach_rows);
        mask.fill_far_regions(&near, in_any_cell);
        Some(mask)
    }

    /// Marks every bucket that the closed segment ab meets: row by row, the columns of the part of
    /// the segment within the row, widened by MARK_PADDING.
    fn mark_edge(&self, touched: &mut [bool], a: Coord<f64>, b: Coord<f64>) {
        let grid = &self.buckets;
        let (pad_x, pad_y) = (MARK_PADDING * grid.bucket_width(), MARK_PADDING * grid.bucket_height());
        let (low, high) = if a.y <= b.y { (a, b) } else { (b, a) };
        let rise = high.y - low.y;
        let x_at = |y: f64| {
            let t = if rise > 0.0 { ((y - low.y) / rise).clamp(0.0, 1.0) } else { 0.0 };
            low.x + t * (high.x - low.x)
        };
        for row in grid.row_of(low.y - pad_y)..=grid.row_of(high.y + pad_y) {
            let (row_bottom, row_top) = (grid.row_bottom(row) - pad_y, grid.row_bottom(row + 1) + pad_y);
            let (x1, x2) = if rise > 0.0 { (x_at(row_bottom), x_at(row_top)) } else { (low.x, high.x) };
            let first = grid.column_of(x1.min(x2) - pad_x);
            let last = grid.column_of(x1.max(x2) + pad_x);
            if let Some(marks) = touched.get_mut(row * grid.columns + first..=row * grid.columns + last) {
                marks.fill(true);
            }
        }
    }

    /// Buckets within `reach_columns` across and `reach_rows` up or down of a touched bucket.
    fn grow(&self, touched: &[bool], reach_columns: usize, reach_rows: usize) -> Vec<bool> {
        let (columns, rows) = (self.buckets.columns, self.buckets.rows);
        let across = grow_lines(touched, columns, 1, rows, columns, reach_columns);
        grow_lines(&across, rows, columns, columns, 1, reach_rows)
    }

    /// Flood-fills the regions of buckets not `near` any edge; a region whose first bucket's centre is
    /// outside every cell is far.
    fn fill_far_regions(&mut self, near: &[bool], mut in_any_cell: impl FnMut(Coord<f64>) -> bool) {
        let mut far = vec![0u64; (near.len()).div_ceil(64)];
        let mut seen = near.to_vec();
        let mut stack = Vec::new();
        for start in 0..near.len() {
            if seen.get(start).copied().unwrap_or(true) {
                continue;
            }
            let region_is_far = !in_any_cell(self.buckets.centre(start));
            stack.push(start);
            if let Some(flag) = seen.get_mut(start) {
                *flag = true;
            }
            while let Some(bucket) = stack.pop() {
                if region_is_far {
                    if let Some(word) = far.get_mut(bucket / 64) {
                        *word |= 1 << (bucket % 64);
                    }
                }
                for neighbour in self.buckets.neighbours(bucket) {
                    if let Some(flag) = seen.get_mut(neighbour).filter(|flag| !**flag) {
                        *flag = true;
                        stack.push(neighbour);
                    }
                }
            }
        }
        self.far = far;
    }
}

/// Grows marks along `line_count` lines of `length` cells (line `i` starts at `i * line_stride`, cells
/// `step` apart): a cell is marked when a marked cell lies within `reach` of it on its line.
fn grow_lines(
    marks: &[bool],
    length: usize,
    step: usize,
    line_count: usize,
    line_stride: usize,
    reach: usize,
) -> Vec<bool> {
    let mut grown = vec![false; marks.len()];
    let mut marked_before = vec![0u32; length + 1];
    for line in 0..line_count {
        let at = |position: usize| line * line_stride + position * step;
        for position in 0..length {
            let mark = u32::from(marks.get(at(position)).copied().unwrap_or(false));
            let before = marked_before.get(position).copied().unwrap_or(0);
            if let Some(slot) = marked_before.get_mut(position + 1) {
                *slot = before + mark;
            }
        }
        for position in 0..length {
            let from = position.saturating_sub(reach);
            let to = (position + reach + 1).min(length);
            let count = marked_before.get(to).copied().unwrap_or(0) - marked_before.get(from).copied().unwrap_or(0);
            if let Some(slot) = grown.get_mut(at(position)) {
                *slot = count > 0;
            }
        }
    }
    grown
}
