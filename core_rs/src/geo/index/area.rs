//! The area query: the cells (any layer) whose closed area meets a GeoJSON geometry.

use geo::{BoundingRect, Coord, Geometry, Intersects, LineString, MapCoords, MultiPolygon, Polygon};
use rayon::prelude::*;

use super::polygon::{classify_edges, ring_edges, EdgeBands, Position};
use super::{AreaCells, GridIndex};
use crate::geo::coords::{convert_point, CoordSystem};
use crate::geo::geojson::parse_geometry;
use crate::geo::GeoError;

impl GridIndex {
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
    robust::orient2d(
        robust::Coord { x: a.x, y: a.y },
        robust::Coord { x: b.x, y: b.y },
        robust::Coord { x: p.x, y: p.y },
    )
}

/// Closed segments ab and cd share at least one point (exact, robust orientation tests).
fn segments_touch(a: Coord<f64>, b: Coord<f64>, c: Coord<f64>, d: Coord<f64>) -> bool {
    if a.x.max(b.x) < c.x.min(d.x)
        || c.x.max(d.x) < a.x.min(b.x)
        || a.y.max(b.y) < c.y.min(d.y)
        || c.y.max(d.y) < a.y.min(b.y)
    {
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
