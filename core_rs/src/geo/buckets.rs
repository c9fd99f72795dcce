//! A uniform grid of buckets over a box of longitude/latitude, shared by the load-time rasters
//! ([`super::cell_grid::CellGrid`], [`super::far_mask::FarMask`]). Buckets are numbered row by row.

use geo::Coord;

const MAX_SIDE_BUCKETS: usize = 4_096;

pub(super) struct Buckets {
    x0: f64,
    y0: f64,
    columns_per_degree: f64,
    rows_per_degree: f64,
    pub(super) columns: usize,
    pub(super) rows: usize,
}

impl Buckets {
    /// About `count` buckets, near-square in metres, exactly covering `[min_x, min_y, max_x, max_y]`;
    /// `None` when the box spans no area.
    pub(super) fn covering([min_x, min_y, max_x, max_y]: [f64; 4], count: f64) -> Option<Self> {
        let (width, height) = (max_x - min_x, max_y - min_y);
        if !(width > 0.0 && height > 0.0) {
            return None;
        }
        let aspect = width * ((min_y + max_y) / 2.0).to_radians().cos() / height;
        let columns = ((count.max(1.0) * aspect).sqrt().round() as usize).clamp(1, MAX_SIDE_BUCKETS);
        let rows = ((count.max(1.0) / columns as f64).round() as usize).clamp(1, MAX_SIDE_BUCKETS);
        Some(Self {
            x0: min_x,
            y0: min_y,
            columns_per_degree: columns as f64 / width,
            rows_per_degree: rows as f64 / height,
            columns,
            rows,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.columns * self.rows
    }

    pub(super) fn bucket_width(&self) -> f64 {
        1.0 / self.columns_per_degree
    }

    pub(super) fn bucket_height(&self) -> f64 {
        1.0 / self.rows_per_degree
    }

    /// Floor of the position, clamped to the grid: monotone in `x`, so a box's first and last columns
    /// bracket the column of every point in the box.
    pub(super) fn column_of(&self, x: f64) -> usize {
        (((x - self.x0) * self.columns_per_degree).max(0.0) as usize).min(self.columns - 1)
    }

    pub(super) fn row_of(&self, y: f64) -> usize {
        (((y - self.y0) * self.rows_per_degree).max(0.0) as usize).min(self.rows - 1)
    }

    /// The bucket of `p`, or `None` when `p` lies beyond the covered box by more than `slack` buckets
    /// (points within the slack are put in the nearest edge bucket).
    pub(super) fn bucket_of(&self, p: Coord<f64>, slack: usize) -> Option<usize> {
        let column = (p.x - self.x0) * self.columns_per_degree;
        let row = (p.y - self.y0) * self.rows_per_degree;
        let inside = |position: f64, count: usize| position >= 0.0 && position < (count + slack) as f64;
        if !(inside(column, self.columns) && inside(row, self.rows)) {
            return None;
        }
        Some((row as usize).min(self.rows - 1) * self.columns + (column as usize).min(self.columns - 1))
    }

    /// Bottom-left corner of row `row` (any row number, inside the grid or not).
    pub(super) fn row_bottom(&self, row: usize) -> f64 {
        self.y0 + row as f64 / self.rows_per_degree
    }

    pub(super) fn centre(&self, bucket: usize) -> Coord<f64> {
        let (row, column) = (bucket / self.columns, bucket % self.columns);
        Coord {
            x: self.x0 + (column as f64 + 0.5) / self.columns_per_degree,
            y: self.y0 + (row as f64 + 0.5) / self.rows_per_degree,
        }
    }

    /// The buckets sharing a side with `bucket`.
    pub(super) fn neighbours(&self, bucket: usize) -> impl Iterator<Item = usize> {
        let (row, column) = (bucket / self.columns, bucket % self.columns);
        let left = (column > 0).then(|| bucket - 1);
        let right = (column + 1 < self.columns).then(|| bucket + 1);
        let down = (row > 0).then(|| bucket - self.columns);
        let up = (row + 1 < self.rows).then(|| bucket + self.columns);
        [left, right, down, up].into_iter().flatten()
    }
}
