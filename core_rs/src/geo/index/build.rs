//! Building the index: layers parsed, checked and converted to WGS-84, cells numbered in id order and linked
//! to their parents, geometry stored flat, then the trees, the leaf grid and the far mask planted.

use std::collections::HashMap;

use geo::{BoundingRect, Coord, MapCoords, MultiPolygon, Validation};

use super::polygon::{ring_edges, Position};
use super::{BoxTree, CellBox, CellInfo, Envelope, GridIndex, LayerKind, LayerSource, StringArena, NO_PARENT};
use crate::geo::cell_grid::CellGrid;
use crate::geo::coords::{convert_point, CoordSystem};
use crate::geo::far_mask::FarMask;
use crate::geo::geojson::{parse_layer, ParsedFeature};
use crate::geo::GeoError;

const NO_BANDS: u32 = u32::MAX;

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
                        GeoError::new(format!(
                            "{}: parent id {parent:?} is not a cell of any admin layer",
                            describe(cell)
                        ))
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
            cells.push(CellInfo { layer: cell.layer, level, depth: 0, parent_or_group, bands: NO_BANDS });
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
            edge_bands: Vec::new(),
            admin_trees: Vec::new(),
            overlay_trees: Vec::new(),
            leaf_grid: None,
            far_mask: None,
            tolerance_m,
            raw_vertex_count: 0,
            extent: [0.0; 4],
        };
        let mut boxes = Vec::with_capacity(pending.len());
        for (cell, pending_cell) in pending.iter().enumerate() {
            index.strings.push(&pending_cell.feature.id);
            index.strings.push(&pending_cell.feature.name);
            if let Some(envelope) = index.push_geometry(&pending_cell.feature.shape) {
                boxes.push(CellBox { envelope, cell: cell as u32 });
            }
        }
        for cell in 0..index.cells.len() {
            if let Some(bands) = index.build_bands(cell) {
                if let Some(info) = index.cells.get_mut(cell) {
                    info.bands = index.edge_bands.len() as u32;
                    index.edge_bands.push(bands);
                }
            }
        }
        index.coords.shrink_to_fit();
        index.strings.text.shrink_to_fit();
        index.extent = union_of(boxes.iter());
        let admin_extent = union_of(boxes.iter().filter(|b| index.is_admin(b.cell)));
        let admin_cells = boxes.iter().filter(|b| index.is_admin(b.cell)).count();
        index.plant_trees(boxes, groups.len())?;
        index.far_mask = index.build_far_mask(admin_extent, admin_cells);
        Ok(index)
    }

    fn build_far_mask(&self, admin_extent: Envelope, admin_cells: usize) -> Option<FarMask> {
        let admin_edges = (0..self.cells.len())
            .filter(|&cell| self.is_admin(cell as u32))
            .flat_map(|cell| self.rings(cell).flat_map(|(ring, _)| ring_edges(ring)));
        let mut stack = Vec::new();
        let mut holding = Vec::new();
        let in_any_cell = |point: Coord<f64>| {
            self.admin_trees.iter().any(|tree| {
                holding.clear();
                tree.query([point.x, point.y, point.x, point.y], &mut stack, &mut holding);
                holding.iter().any(|&cell| self.classify(cell as usize, point) != Position::Outside)
            })
        };
        FarMask::build(admin_extent, admin_cells, self.tolerance_m, admin_edges, in_any_cell)
    }

    /// Appends a cell's rings (closing vertex dropped) and returns its bounding box.
    fn push_geometry(&mut self, shape: &MultiPolygon<f64>) -> Option<Envelope> {
        for polygon in &shape.0 {
            let rings =
                std::iter::once((polygon.exterior(), true)).chain(polygon.interiors().iter().map(|r| (r, false)));
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
        Some([rect.min().x, rect.min().y, rect.max().x, rect.max().y])
    }

    /// Splits the cell boxes into the per-depth admin trees and the per-group overlay trees.
    fn plant_trees(&mut self, boxes: Vec<CellBox>, group_count: usize) -> Result<(), GeoError> {
        let max_depth = self.cells.iter().map(|c| usize::from(c.depth)).max().unwrap_or(0);
        let mut admin: Vec<Vec<CellBox>> = (0..=max_depth).map(|_| Vec::new()).collect();
        let mut overlay: Vec<Vec<CellBox>> = (0..group_count).map(|_| Vec::new()).collect();
        for cell_box in boxes {
            let bucket = if self.is_admin(cell_box.cell) {
                admin.get_mut(max_depth - usize::from(self.depth(cell_box.cell)))
            } else {
                overlay.get_mut(self.parent_or_group(cell_box.cell) as usize)
            };
            if let Some(bucket) = bucket {
                bucket.push(cell_box);
            }
        }
        admin.retain(|b| !b.is_empty());
        self.leaf_grid = admin.first().and_then(|leaves| {
            CellGrid::build(union_of(leaves.iter()), &leaves.iter().map(|b| (b.envelope, b.cell)).collect::<Vec<_>>())
        });
        self.admin_trees = admin.iter().map(|b| BoxTree::build(b)).collect::<Result<_, _>>()?;
        self.overlay_trees =
            overlay.iter().filter(|b| !b.is_empty()).map(|b| BoxTree::build(b)).collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// The smallest box holding all of `boxes` (inverted, with infinities, when there are none).
fn union_of<'a>(boxes: impl Iterator<Item = &'a CellBox>) -> Envelope {
    boxes.fold([f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY], |e, b| {
        [e[0].min(b.envelope[0]), e[1].min(b.envelope[1]), e[2].max(b.envelope[2]), e[3].max(b.envelope[3])]
    })
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
