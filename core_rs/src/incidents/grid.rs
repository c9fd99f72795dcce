//! The spatial side of merging: great-circle distance, and a grid of the open incidents' anchors.

use hashbrown::HashMap;

pub(crate) const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Above this many grid cells per query the index gives up and the caller scans the group (poles, huge D).
const MAX_CELLS_PER_QUERY: i64 = 4096;
/// Cells are this many search radii wide: a query touches 1.5 × 1.5 cells on average. Narrower cells mean
/// fewer spots per query but more hash lookups; at 2, 3 and 4 radii the benchmark's merging costs the same.
const CELL_RADII: f64 = 4.0;

/// A WGS-84 point (degrees) with the cosine of its latitude, which every distance from it needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Located {
    pub lon: f64,
    pub lat: f64,
    cos_lat: f64,
}

impl Located {
    pub fn new((lon, lat): (f64, f64)) -> Self {
        Self { lon, lat, cos_lat: lat.to_radians().cos() }
    }

    /// Great-circle distance in metres by the haversine formula, the expression the Python reference
    /// evaluates (the cosines are the same values, computed once per point instead of once per pair).
    pub fn distance_m(&self, other: &Self) -> f64 {
        let s_lat = ((other.lat - self.lat).to_radians() / 2.0).sin();
        let s_lon = ((other.lon - self.lon).to_radians() / 2.0).sin();
        let a = s_lat * s_lat + self.cos_lat * other.cos_lat * s_lon * s_lon;
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }

    /// `self.distance_m(other) <= limit_m`, with two cheap lower bounds of the distance rejecting most far
    /// pairs before the trigonometry. With `a` the haversine term, `d = 2R·asin(√a) >= 2R·√a`, and `a` is at
    /// least each of its two parts: north-south `d >= R·|Δφ|`; east-west `d >= 2R·√(cos φ1 cos φ2)·sin(|Δλ|/2)`
    /// with `sin x >= x - x³/6` (Δλ the shorter way round). The margin keeps rounding from rejecting a pair
    /// the haversine would accept; only pairs passing both bounds are decided by the haversine itself.
    pub fn within_m(&self, other: &Self, limit_m: f64) -> bool {
        let slack = limit_m * (1.0 + 1e-9) + 1e-6;
        let north_south_m = (other.lat - self.lat).abs().to_radians() * EARTH_RADIUS_M;
        if north_south_m > slack {
            return false;
        }
        let dlon = (other.lon - self.lon).abs();
        let half = dlon.min(360.0 - dlon).to_radians() / 2.0;
        let east_west_m =
            2.0 * EARTH_RADIUS_M * (self.cos_lat * other.cos_lat).sqrt() * (half - half * half * half / 6.0);
        east_west_m <= slack && self.distance_m(other) <= limit_m
    }
}

/// What the grid keeps of an open incident: its anchor and what a query needs to rank and judge it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spot {
    pub anchor: Located,
    pub seq: u64,
    pub slot: u32,
    pub category: u32,
}

/// A lower bound of cos y: the Taylor series cut after a negative term (1 - y²/2 + y⁴/24 - y⁶/720), within
/// 2·10⁻⁴ of cos y for |y| <= π/2.
fn cos_lower_bound(y: f64) -> f64 {
    let y2 = y * y;
    1.0 - y2 / 2.0 + y2 * y2 / 24.0 - y2 * y2 * y2 / 720.0
}

/// `x.floor() as i64` without a call into libm (baseline x86-64 has no rounding instruction); saturates
/// like the cast.
fn floor_i64(x: f64) -> i64 {
    let truncated = x as i64;
    if truncated as f64 > x {
        truncated.saturating_sub(1)
    } else {
        truncated
    }
}

/// Square cells of equal degrees, [`CELL_RADII`] search radii wide; 360° divides into a whole number of
/// columns, so longitude wraps exactly. Each category group has its own cells, keyed by one number.
pub(crate) struct Grid {
    /// Cells per degree: rows and columns are found by a multiplication (monotonic, so a point in the query
    /// box always falls in one of the cells the box's corners fall in).
    cells_per_deg: f64,
    columns: i64,
    /// Half the query box's height in degrees (with a margin for rounding).
    dlat_deg: f64,
    /// sin(radius / 2R): the longitude half-width of the query box at latitude φ is 2·asin(this / cos φ).
    sin_half_angle: f64,
    /// By category group.
    groups: Vec<GroupCells>,
}

/// The cells of one category group: `row × columns + column` → the spots anchored there.
/// Cells emptied by removals keep their memory for the next spot there; they are dropped when they
/// outnumber the others (plus a constant), so a moving hot spot does not grow the map for ever.
#[derive(Default)]
struct GroupCells {
    cells: HashMap<u64, Vec<Spot>>,
    empty_cells: usize,
}

/// Degrees added to the query box on every side: the box also filters single spots, so it must stay wider
/// than the exact region by more than rounding, whatever the radius.
const BOX_MARGIN_DEG: f64 = 1e-9;

impl Grid {
    pub fn new(radius_m: f64) -> Self {
        let wanted_deg = (CELL_RADII * radius_m.max(1.0) / EARTH_RADIUS_M).to_degrees().min(360.0);
        let columns = (360.0 / wanted_deg).ceil().max(1.0) as i64;
        let angle = radius_m / EARTH_RADIUS_M;
        Self {
            cells_per_deg: columns as f64 / 360.0,
            columns,
            dlat_deg: angle.to_degrees() * (1.0 + 1e-9) + BOX_MARGIN_DEG,
            sin_half_angle: (angle / 2.0).sin(),
            groups: Vec::new(),
        }
    }

    /// At least the longitude half-width (degrees) of the query box at latitude `lat`: 2·asin(s / cos φ) with
    /// φ the latitude nearest the pole the box reaches, computed from bounds (cos φ from below, asin from
    /// above) that need no library call. `None` near a pole, where the box spans every longitude.
    fn half_width_deg(&self, lat: f64) -> Option<f64> {
        let nearest_pole = (lat.abs() + self.dlat_deg).min(90.0).to_radians();
        let spread = self.sin_half_angle / cos_lower_bound(nearest_pole);
        if !(0.0..0.5).contains(&spread) {
            return None;
        }
        let asin_upper = spread / (1.0 - spread * spread).sqrt();
        Some((2.0 * asin_upper).to_degrees() * (1.0 + 1e-9) + BOX_MARGIN_DEG)
    }

    fn row(&self, lat: f64) -> i64 {
        floor_i64((lat + 90.0) * self.cells_per_deg)
    }

    fn column(&self, lon: f64) -> i64 {
        floor_i64((lon + 180.0) * self.cells_per_deg)
    }

    /// The cell holding `(lon, lat)`, as one number: `row × columns + column` (rows may be negative).
    fn cell_of(&self, (lon, lat): (f64, f64)) -> u64 {
        self.cell_number(self.row(lat), self.wrap(self.column(lon)))
    }

    /// The column in `0..columns` of a column number at most one turn of the globe off (no division).
    fn wrap(&self, column: i64) -> i64 {
        if column < 0 {
            column + self.columns
        } else if column >= self.columns {
            column - self.columns
        } else {
            column
        }
    }

    fn cell_number(&self, row: i64, column: i64) -> u64 {
        row.wrapping_mul(self.columns).wrapping_add(column) as u64
    }

    pub fn insert(&mut self, group: u32, spot: Spot) {
        let cell = self.cell_of((spot.anchor.lon, spot.anchor.lat));
        let group = group as usize;
        if self.groups.len() <= group {
            self.groups.resize_with(group + 1, GroupCells::default);
        }
        let Some(cells) = self.groups.get_mut(group) else {
            return;
        };
        let spots = cells.cells.entry(cell).or_default();
        if spots.is_empty() && spots.capacity() > 0 {
            cells.empty_cells = cells.empty_cells.saturating_sub(1);
        }
        spots.push(spot);
    }

    pub fn remove(&mut self, group: u32, slot: u32, anchor: (f64, f64)) {
        let cell = self.cell_of(anchor);
        let Some(cells) = self.groups.get_mut(group as usize) else {
            return;
        };
        let Some(spots) = cells.cells.get_mut(&cell) else {
            return;
        };
        // The order of a cell's spots does not matter: a query ranks candidates by opening number.
        if let Some(position) = spots.iter().position(|spot| spot.slot == slot) {
            spots.swap_remove(position);
            if spots.is_empty() {
                cells.empty_cells += 1;
            }
        }
        if cells.empty_cells > cells.cells.len() / 2 + 4096 {
            cells.cells.retain(|_, spots| !spots.is_empty());
            cells.empty_cells = 0;
        }
    }

    /// Calls `visit` with every incident of `group` whose anchor lies in the query box around `at` (a box
    /// that holds every point within the search radius). Returns false (having visited nothing) when the
    /// query would touch too many cells. Inlined into its caller, so that `visit` is inlined into the loop
    /// (left to itself the compiler sometimes calls it per spot, 2% more instructions for merging).
    #[inline(always)]
    pub fn visit_near(&self, group: u32, at: &Located, mut visit: impl FnMut(&Spot)) -> bool {
        let Some(dlon) = self.half_width_deg(at.lat) else {
            return false;
        };
        let (r0, r1) = (self.row(at.lat - self.dlat_deg), self.row(at.lat + self.dlat_deg));
        let (c0, c1) = (self.column(at.lon - dlon), self.column(at.lon + dlon));
        let width = (c1 - c0 + 1).min(self.columns);
        if (r1 - r0 + 1).saturating_mul(width) > MAX_CELLS_PER_QUERY {
            return false;
        }
        let Some(cells) = self.groups.get(group as usize) else {
            return true;
        };
        // Most spots of the cells lie outside the box: two comparisons each turn them away.
        let in_box = |spot: &Spot| {
            let dlon_spot = (spot.anchor.lon - at.lon).abs();
            (spot.anchor.lat - at.lat).abs() <= self.dlat_deg && dlon_spot.min(360.0 - dlon_spot) <= dlon
        };
        for row in r0..=r1 {
            let mut column = self.wrap(c0);
            for _ in 0..width {
                if let Some(spots) = cells.cells.get(&self.cell_number(row, column)) {
                    spots.iter().filter(|spot| in_box(spot)).for_each(&mut visit);
                }
                column += 1;
                if column == self.columns {
                    column = 0;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_matches_the_library_floor() {
        for x in [-2.5, -2.0, -1e-300, -0.0, 0.0, 0.5, 1.0, 7.999_999_999, 1e19, -1e19, f64::NAN] {
            assert_eq!(floor_i64(x), x.floor() as i64, "{x}");
        }
    }

    #[test]
    fn the_query_box_is_never_narrower_than_the_exact_one() {
        let grid = Grid::new(200.0);
        for lat in (0..=9_000).map(|i| i as f64 / 100.0) {
            let nearest_pole = (lat + grid.dlat_deg).min(90.0).to_radians();
            let spread = grid.sin_half_angle / nearest_pole.cos();
            let exact = (2.0 * spread.asin()).to_degrees();
            if let Some(bound) = grid.half_width_deg(lat) {
                assert!(bound >= exact, "{lat}: {bound} < {exact}");
            }
        }
        assert!(grid.half_width_deg(89.999).is_none());
    }

    /// Deterministic numbers in [0, 1) (xorshift64).
    fn uniform_units(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn a_query_visits_every_spot_within_the_radius() {
        let mut unit = uniform_units(0x9e37_79b9_7f4a_7c15);
        for (radius_m, spread_deg) in [(200.0, 0.01), (1.0, 0.00005), (5_000.0, 0.2)] {
            let mut grid = Grid::new(radius_m);
            let centre = (unit() * 359.0 - 179.5, unit() * 170.0 - 85.0);
            let spots: Vec<Spot> = (0..2_000)
                .map(|slot| Spot {
                    anchor: Located::new((
                        centre.0 + (unit() - 0.5) * spread_deg,
                        centre.1 + (unit() - 0.5) * spread_deg,
                    )),
                    seq: slot,
                    slot: slot as u32,
                    category: 0,
                })
                .collect();
            spots.iter().for_each(|spot| grid.insert(0, *spot));
            for query in &spots {
                let mut visited = vec![false; spots.len()];
                assert!(grid.visit_near(0, &query.anchor, |spot| visited[spot.slot as usize] = true));
                for spot in &spots {
                    if query.anchor.distance_m(&spot.anchor) <= radius_m {
                        assert!(visited[spot.slot as usize], "{radius_m} {query:?} {spot:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_cheap_bounds_never_reject_a_pair_the_haversine_accepts() {
        let mut unit = uniform_units(0x2545_f491_4f6c_dd1d);
        for _ in 0..200_000 {
            let a = Located::new((unit() * 360.0 - 180.0, unit() * 180.0 - 90.0));
            let scale = [1e-6, 1e-4, 1e-2, 1.0, 90.0][(unit() * 5.0) as usize % 5];
            let b = Located::new((
                (a.lon + (unit() - 0.5) * scale).clamp(-180.0, 180.0),
                (a.lat + (unit() - 0.5) * scale).clamp(-90.0, 90.0),
            ));
            let d = a.distance_m(&b);
            for limit in [d, d * (1.0 + 1e-12), d * (1.0 - 1e-12), d * 2.0, d / 2.0] {
                assert_eq!(a.within_m(&b, limit), d <= limit, "{a:?} {b:?} {limit}");
            }
        }
    }
}
