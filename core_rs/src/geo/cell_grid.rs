//! Candidate lists of one level's cells on a uniform grid of buckets: a point's bucket lists every cell
//! whose bounding box meets the bucket, in index order, so a point query reads one short list instead of
//! walking an R-tree (the walk cost about 2,300 instructions per point on 150k micro-grids).

use geo::Coord;

use super::buckets::Buckets;

/// Buckets per cell: fewer buckets hold more candidates each, more buckets cost more memory.
const BUCKETS_PER_CELL: f64 = 1.5;
/// Lists may hold this many entries per cell on average (micro-grids: about 2.5); levels of long or
/// sprawling cells, whose boxes meet many buckets each, stay on the R-tree instead.
const MAX_ENTRIES_PER_CELL: usize = 16;

pub(super) struct CellGrid {
    buckets: Buckets,
    /// Bucket `b` lists `cells[starts[b]..starts[b + 1]]`.
    starts: Vec<u32>,
    cells: Vec<u32>,
}

impl CellGrid {
    /// Buckets over `union`, the union of `boxes` ([min_x, min_y, max_x, max_y] and cell, in cell order);
    /// `None` when the union spans no area or the lists would exceed MAX_ENTRIES_PER_CELL.
    pub(super) fn build(union: [f64; 4], boxes: &[([f64; 4], u32)]) -> Option<Self> {
        let buckets = Buckets::covering(union, boxes.len() as f64 * BUCKETS_PER_CELL)?;
        let mut grid = Self { buckets, starts: Vec::new(), cells: Vec::new() };
        let entries = boxes.iter().map(|(envelope, _)| grid.buckets_met(*envelope)).sum::<usize>();
        if entries > boxes.len() * MAX_ENTRIES_PER_CELL {
            return None;
        }
        grid.fill(boxes);
        Some(grid)
    }

    fn buckets_met(&self, [min_x, min_y, max_x, max_y]: [f64; 4]) -> usize {
        let grid = &self.buckets;
        (grid.column_of(max_x) - grid.column_of(min_x) + 1) * (grid.row_of(max_y) - grid.row_of(min_y) + 1)
    }

    /// Counting sort of (bucket, cell) pairs by bucket; cells arrive in order, so each list is sorted.
    fn fill(&mut self, boxes: &[([f64; 4], u32)]) {
        let mut counts = vec![0u32; self.buckets.len() + 1];
        for (envelope, _) in boxes {
            self.for_each_bucket(*envelope, |bucket| {
                if let Some(count) = counts.get_mut(bucket + 1) {
                    *count += 1;
                }
            });
        }
        for bucket in 1..counts.len() {
            let before = counts.get(bucket - 1).copied().unwrap_or(0);
            if let Some(count) = counts.get_mut(bucket) {
                *count += before;
            }
        }
        let mut cursor = counts.clone();
        let mut cells = vec![0u32; counts.last().copied().unwrap_or(0) as usize];
        for (envelope, cell) in boxes {
            self.for_each_bucket(*envelope, |bucket| {
                if let Some(position) = cursor.get_mut(bucket) {
                    if let Some(slot) = cells.get_mut(*position as usize) {
                        *slot = *cell;
                    }
                    *position += 1;
                }
            });
        }
        self.starts = counts;
        self.cells = cells;
    }

    fn for_each_bucket(&self, [min_x, min_y, max_x, max_y]: [f64; 4], mut visit: impl FnMut(usize)) {
        let grid = &self.buckets;
        let (first_column, last_column) = (grid.column_of(min_x), grid.column_of(max_x));
        for row in grid.row_of(min_y)..=grid.row_of(max_y) {
            for column in first_column..=last_column {
                visit(row * grid.columns + column);
            }
        }
    }

    /// Every cell whose box holds `p`, and maybe others nearby, in index order. A point on the union's
    /// far side may compute to just past the last bucket (the scale rounds), hence a bucket of slack.
    pub(super) fn candidates(&self, p: Coord<f64>) -> &[u32] {
        let Some(bucket) = self.buckets.bucket_of(p, 1) else {
            return &[];
        };
        let start = self.starts.get(bucket).copied().unwrap_or(0) as usize;
        let end = self.starts.get(bucket + 1).copied().unwrap_or(0) as usize;
        self.cells.get(start..end).unwrap_or(&[])
    }

    pub(super) fn memory_bytes(&self) -> usize {
        (self.starts.capacity() + self.cells.capacity()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: [f64; 4] = [0.0, 0.0, 1.0, 1.0];

    #[test]
    fn lists_hold_every_cell_whose_box_holds_the_point() {
        let tiles: Vec<([f64; 4], u32)> = (0..100u32)
            .map(|i| {
                let (x, y) = (f64::from(i % 10) / 10.0, f64::from(i / 10) / 10.0);
                ([x, y, x + 0.1, y + 0.1], i)
            })
            .collect();
        let grid = CellGrid::build(UNIT, &tiles).unwrap();
        assert!(grid.candidates(Coord { x: 0.55, y: 0.55 }).contains(&55));
        assert!(grid.candidates(Coord { x: 1.0, y: 1.0 }).contains(&99));
        assert!(grid.candidates(Coord { x: 0.0, y: 0.0 }).contains(&0));
        assert!(grid.candidates(Coord { x: 1.2, y: 0.5 }).is_empty());
    }

    #[test]
    fn levels_of_sprawling_cells_stay_on_the_tree() {
        let sprawling: Vec<([f64; 4], u32)> = (0..100).map(|i| (UNIT, i)).collect();
        assert!(CellGrid::build(UNIT, &sprawling).is_none());
    }
}
