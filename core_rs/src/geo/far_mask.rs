//! A coarse raster over the admin cells that answers "is this point farther than the tolerance from every
//! admin cell?" with one bit read, so points well outside the hierarchy skip the tree searches and the
//! nearest-edge scans that would only confirm it.
//!
//! Built once at load: every admin edge marks the buckets it passes through; marks are grown by the
//! tolerance (plus a bucket of slack); the unmarked buckets form regions that no cell boundary comes
//! near, so each region lies wholly inside or wholly outside every cell, and one point test per region
//! decides it. A bucket is "far" when its region is outside every cell.

use geo::Coord;

use super::index::METRES_PER_DEGREE;

/// Buckets per admin cell: more buckets make the band of slow-path points around the cells thinner.
const BUCKETS_PER_CELL: f64 = 8.0;
const MAX_SIDE_BUCKETS: usize = 4_096;
/// Far buckets start this much beyond the tolerance, so rounding in a computed distance can never put
/// a far point back within the tolerance.
const TOLERANCE_SLACK: f64 = 1.01;
/// Edge marks are widened by this fraction of a bucket, far more than any rounding in placing them.
const MARK_PADDING: f64 = 1e-3;
/// Rasters reaching closer to a pole than this are not built (a degree of longitude shrinks to nothing).
const MAX_LATITUDE: f64 = 85.0;

pub(super) struct FarMask {
    x0: f64,
    y0: f64,
    columns_per_degree: f64,
    rows_per_degree: f64,
    columns: usize,
    rows: usize,
    far: Vec<u64>,
}

impl FarMask {
    /// True when every admin cell is more than the tolerance away from `p` (points beyond the raster
    /// included); false when the point may be in or near a cell.
    pub(super) fn is_far(&self, p: Coord<f64>) -> bool {
        let column = (p.x - self.x0) * self.columns_per_degree;
        let row = (p.y - self.y0) * self.rows_per_degree;
        if !(column >= 0.0 && row >= 0.0 && column < self.columns as f64 && row < self.rows as f64) {
            return true;
        }
        let bucket = row as usize * self.columns + column as usize;
        self.far.get(bucket / 64).is_some_and(|word| (word >> (bucket % 64)) & 1 == 1)
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.far.capacity() * 8
    }

    /// A raster over `extent` (the admin cells' union box) for `cell_count` cells with edges `edges`;
    /// `in_any_cell` tells whether a point is in or on some admin cell. `None` when the extent is
    /// degenerate or reaches near a pole.
    pub(super) fn build(
        extent: [f64; 4],
        cell_count: usize,
        tolerance_m: f64,
        edges: impl Iterator<Item = (Coord<f64>, Coord<f64>)>,
        in_any_cell: impl FnMut(Coord<f64>) -> bool,
    ) -> Option<Self> {
        let mut mask = Self::frame(extent, cell_count, tolerance_m)?;
        let (reach_columns, reach_rows) = mask.reach_in_buckets(tolerance_m);
        let mut touched = vec![false; mask.columns * mask.rows];
        for (a, b) in edges {
            mask.mark_edge(&mut touched, a, b);
        }
        let near = mask.grow(&touched, reach_columns, reach_rows);
        mask.fill_far_regions(&near, in_any_cell);
        Some(mask)
    }

    /// Chooses the buckets: near-square in metres, about BUCKETS_PER_CELL per cell, covering the extent
    /// grown by the tolerance plus two buckets on every side (so points beyond the raster are far).
    fn frame(extent: [f64; 4], cell_count: usize, tolerance_m: f64) -> Option<Self> {
        let [min_x, min_y, max_x, max_y] = extent;
        let reach_y = tolerance_m * TOLERANCE_SLACK / METRES_PER_DEGREE;
        let height = max_y - min_y + 2.0 * reach_y;
        let outer_latitude = min_y.abs().max(max_y.abs()) + reach_y;
        let rough_reach_x = reach_y / outer_latitude.to_radians().cos();
        let rough_width = max_x - min_x + 2.0 * rough_reach_x;
        if !(height > 0.0 && rough_width > 0.0 && outer_latitude < MAX_LATITUDE) {
            return None;
        }
        let aspect = rough_width * ((min_y + max_y) / 2.0).to_radians().cos() / height;
        let buckets = (cell_count as f64 * BUCKETS_PER_CELL).max(1.0);
        let columns = ((buckets * aspect).sqrt().round() as usize).clamp(1, MAX_SIDE_BUCKETS);
        let rows = ((buckets / columns as f64).round() as usize).clamp(1, MAX_SIDE_BUCKETS);
        let row_height = height / rows as f64;
        let y0 = min_y - reach_y - 2.0 * row_height;
        let top_latitude = y0.abs().max((max_y + reach_y + 2.0 * row_height).abs());
        if !(top_latitude < MAX_LATITUDE) {
            return None;
        }
        let reach_x = reach_y / top_latitude.to_radians().cos();
        let column_width = (max_x - min_x + 2.0 * reach_x) / columns as f64;
        Some(Self {
            x0: min_x - reach_x - 2.0 * column_width,
            y0,
            columns_per_degree: 1.0 / column_width,
            rows_per_degree: 1.0 / row_height,
            columns: columns + 4,
            rows: rows + 4,
            far: Vec::new(),
        })
    }

    /// How many buckets, across and up, always cover the tolerance with its slack, plus one bucket.
    fn reach_in_buckets(&self, tolerance_m: f64) -> (usize, usize) {
        let reach_y = tolerance_m * TOLERANCE_SLACK / METRES_PER_DEGREE;
        let top_latitude = self.y0.abs().max((self.y0 + self.rows as f64 / self.rows_per_degree).abs());
        let reach_x = reach_y / top_latitude.to_radians().cos();
        ((reach_x * self.columns_per_degree) as usize + 1, (reach_y * self.rows_per_degree) as usize + 1)
    }

    fn column_of(&self, x: f64) -> usize {
        (((x - self.x0) * self.columns_per_degree).max(0.0) as usize).min(self.columns - 1)
    }

    fn row_of(&self, y: f64) -> usize {
        (((y - self.y0) * self.rows_per_degree).max(0.0) as usize).min(self.rows - 1)
    }

    /// Marks every bucket that the closed segment ab meets: row by row, the columns of the part of
    /// the segment within the row, widened by MARK_PADDING.
    fn mark_edge(&self, touched: &mut [bool], a: Coord<f64>, b: Coord<f64>) {
        let (pad_x, pad_y) = (MARK_PADDING / self.columns_per_degree, MARK_PADDING / self.rows_per_degree);
        let (low, high) = if a.y <= b.y { (a, b) } else { (b, a) };
        let rise = high.y - low.y;
        let x_at = |y: f64| {
            let t = if rise > 0.0 { ((y - low.y) / rise).clamp(0.0, 1.0) } else { 0.0 };
            low.x + t * (high.x - low.x)
        };
        for row in self.row_of(low.y - pad_y)..=self.row_of(high.y + pad_y) {
            let row_bottom = self.y0 + row as f64 / self.rows_per_degree - pad_y;
            let row_top = self.y0 + (row + 1) as f64 / self.rows_per_degree + pad_y;
            let (x1, x2) = if rise > 0.0 { (x_at(row_bottom), x_at(row_top)) } else { (low.x, high.x) };
            let first = self.column_of(x1.min(x2) - pad_x);
            let last = self.column_of(x1.max(x2) + pad_x);
            if let Some(marks) = touched.get_mut(row * self.columns + first..=row * self.columns + last) {
                marks.fill(true);
            }
        }
    }

    /// Buckets within `reach_columns` across and `reach_rows` up or down of a touched bucket.
    fn grow(&self, touched: &[bool], reach_columns: usize, reach_rows: usize) -> Vec<bool> {
        let across = grow_lines(touched, self.columns, 1, self.rows, self.columns, reach_columns);
        grow_lines(&across, self.rows, self.columns, self.columns, 1, reach_rows)
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
            let region_is_far = !in_any_cell(self.centre(start));
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
                for neighbour in self.neighbours(bucket) {
                    if let Some(flag) = seen.get_mut(neighbour).filter(|flag| !**flag) {
                        *flag = true;
                        stack.push(neighbour);
                    }
                }
            }
        }
        self.far = far;
    }

    fn centre(&self, bucket: usize) -> Coord<f64> {
        let (row, column) = (bucket / self.columns, bucket % self.columns);
        Coord {
            x: self.x0 + (column as f64 + 0.5) / self.columns_per_degree,
            y: self.y0 + (row as f64 + 0.5) / self.rows_per_degree,
        }
    }

    /// The buckets sharing a side with `bucket`.
    fn neighbours(&self, bucket: usize) -> impl Iterator<Item = usize> {
        let (row, column) = (bucket / self.columns, bucket % self.columns);
        let left = (column > 0).then(|| bucket - 1);
        let right = (column + 1 < self.columns).then(|| bucket + 1);
        let down = (row > 0).then(|| bucket - self.columns);
        let up = (row + 1 < self.rows).then(|| bucket + self.columns);
        [left, right, down, up].into_iter().flatten()
    }
}

/// Grows marks along `line_count` lines of `length` cells (line `i` starts at `i * line_stride`, cells
/// `step` apart): a cell is marked when a marked cell lies within `reach` of it on its line.
fn grow_lines(marks: &[bool], length: usize, step: usize, line_count: usize, line_stride: usize, reach: usize) -> Vec<bool> {
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
