use super::point::PARALLEL_CHUNK;
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

fn admin_source(geojson: &[u8], strict: bool) -> LayerSource<'_> {
    LayerSource {
        name: "admin".into(),
        kind: LayerKind::Admin,
        geojson,
        crs: CoordSystem::Wgs84,
        properties: names(),
        strict,
    }
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
    let source = admin_source(&layer, true);
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
fn admin_chain_of_a_cell_runs_up_to_the_root() {
    let index = admin_index();
    let batch = index.locate_batch(&[0.0015], &[0.0005], CoordSystem::Wgs84).unwrap();
    assert_eq!(index.admin_chain(batch.cells[0]), batch.cells);
    assert!(index.admin_chain(u32::MAX).is_empty());
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
fn sorted_parallel_batches_equal_one_sequential_pass() {
    let index = admin_index();
    let n = 3 * PARALLEL_CHUNK + 17;
    let lngs: Vec<f64> = (0..n).map(|i| -0.0005 + 0.003 * (i % 101) as f64 / 100.0).collect();
    let lats: Vec<f64> = (0..n).map(|i| -0.0005 + 0.002 * (i % 37) as f64 / 36.0).collect();
    let parallel = index.locate_batch(&lngs, &lats, CoordSystem::Wgs84).unwrap();
    let points: Vec<Coord<f64>> = lngs.iter().zip(&lats).map(|(&x, &y)| Coord { x, y }).collect();
    assert_eq!(parallel, index.locate_points(&points));
}

fn shipped_admin(tolerance_m: f64) -> GridIndex {
    let layer = include_bytes!("../../../../hub/data/grids/chengdu_admin_gcj02.geojson");
    GridIndex::build(&[admin_source(layer, false)], tolerance_m).unwrap()
}

/// Evenly spread points (an additive recurrence) over the index's extent grown by `margin` degrees.
fn spread_points(index: &GridIndex, margin: f64, count: usize) -> Vec<Coord<f64>> {
    let [min_x, min_y, max_x, max_y] = index.extent;
    let (width, height) = (max_x - min_x + 2.0 * margin, max_y - min_y + 2.0 * margin);
    (0..count)
        .map(|i| Coord {
            x: min_x - margin + width * (i as f64 * 0.618_033_988_749_895).fract(),
            y: min_y - margin + height * (i as f64 * 0.414_213_562_373_095).fract(),
        })
        .collect()
}

#[test]
fn far_mask_and_leaf_grid_change_no_answer() {
    for tolerance_m in [0.0, 30.0, 400.0] {
        let mut index = shipped_admin(tolerance_m);
        let mut points = spread_points(&index, 0.02, 300_000);
        points.extend_from_slice(&index.coords);
        let fast = index.locate_points(&points);
        assert!(index.far_mask.is_some() && index.leaf_grid.is_some());
        assert!(fast.admin_counts.contains(&0));
        assert!(fast.distances_m.iter().any(|&distance| distance > 0.0) == (tolerance_m > 0.0));
        index.far_mask = None;
        index.leaf_grid = None;
        assert_eq!(fast, index.locate_points(&points), "tolerance {tolerance_m} m");
    }
}

#[test]
fn points_just_beyond_the_tolerance_are_outside_and_just_within_resolve() {
    let index = admin_index();
    let metres = |m: f64| m / METRES_PER_DEGREE;
    let lngs = [-metres(29.9), -metres(30.1), 0.002 + metres(29.9), 0.002 + metres(30.1)];
    let batch = index.locate_batch(&lngs, &[0.0005; 4], CoordSystem::Wgs84).unwrap();
    assert_eq!(batch.admin_counts, [2, 0, 2, 0]);
}

#[test]
fn missing_parent_is_an_error_naming_the_feature() {
    let layer = collection(&[square("s1", "street", Some("nowhere"), 0.0, 0.0, 1.0)]);
    let source = admin_source(&layer, false);
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
