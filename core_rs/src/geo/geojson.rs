//! GeoJSON → features with polygons, with an error that names the feature for every problem.
//!
//! serde_json does the parsing; this module checks the shape (RFC 7946: Polygon / MultiPolygon,
//! closed rings of ≥ 4 positions, finite in-range coordinates) and reads the configured properties.

use geo::{Coord, Geometry, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon};
use serde_json::{Map, Value};

use super::coords::coordinate_problem;
use super::GeoError;

/// Which feature properties hold a cell's id, name, level and parent id.
#[derive(Clone, Debug)]
pub struct PropertyNames {
    pub id: String,
    pub name: String,
    pub level: String,
    pub parent: String,
}

/// One cell as read from a layer file, before indexing.
#[derive(Clone, Debug)]
pub struct ParsedFeature {
    pub position: usize,
    pub id: String,
    pub name: String,
    pub level: String,
    pub parent: Option<String>,
    pub shape: MultiPolygon<f64>,
}

impl ParsedFeature {
    /// "feature #3 (id '510104')", the prefix of every error about this feature.
    pub fn describe(&self) -> String {
        format!("feature #{} (id {:?})", self.position, self.id)
    }
}

/// Parses a FeatureCollection (or a single Feature) of Polygon / MultiPolygon cells.
pub fn parse_layer(bytes: &[u8], names: &PropertyNames) -> Result<Vec<ParsedFeature>, GeoError> {
    let document: Value = serde_json::from_slice(bytes).map_err(|e| GeoError::new(format!("not valid JSON: {e}")))?;
    let features = feature_list(&document)?;
    features.iter().enumerate().map(|(position, feature)| parse_feature(position, feature, names)).collect()
}

/// Parses one GeoJSON geometry (or a Feature wrapping one) of any type, for area queries.
pub fn parse_geometry(bytes: &[u8]) -> Result<Geometry<f64>, GeoError> {
    let document: Value = serde_json::from_slice(bytes).map_err(|e| GeoError::new(format!("not valid JSON: {e}")))?;
    let geometry = match type_name(&document) {
        Some("Feature") => document.get("geometry").ok_or_else(|| GeoError::new("feature has no \"geometry\""))?,
        _ => &document,
    };
    geometry_value(geometry).map_err(|problem| GeoError::new(format!("geometry: {problem}")))
}

fn type_name(value: &Value) -> Option<&str> {
    value.get("type").and_then(Value::as_str)
}

fn feature_list(document: &Value) -> Result<Vec<&Value>, GeoError> {
    match type_name(document) {
        Some("FeatureCollection") => match document.get("features") {
            Some(Value::Array(features)) => Ok(features.iter().collect()),
            _ => Err(GeoError::new("FeatureCollection has no \"features\" array")),
        },
        Some("Feature") => Ok(vec![document]),
        Some(other) => Err(GeoError::new(format!("expected a FeatureCollection or a Feature, got type {other:?}"))),
        None => Err(GeoError::new("expected a GeoJSON object with \"type\": \"FeatureCollection\" or \"Feature\"")),
    }
}

fn parse_feature(position: usize, feature: &Value, names: &PropertyNames) -> Result<ParsedFeature, GeoError> {
    let empty = Map::new();
    let properties = match feature.get("properties") {
        Some(Value::Object(properties)) => properties,
        Some(Value::Null) | None => &empty,
        Some(_) => return Err(GeoError::new(format!("feature #{position}: \"properties\" is not an object"))),
    };
    let id = required_text(properties, &names.id)
        .or_else(|| feature.get("id").and_then(scalar_text))
        .ok_or_else(|| GeoError::new(format!("feature #{position}: no id (property {:?})", names.id)))?;
    let where_ = format!("feature #{position} (id {id:?})");
    let level = required_text(properties, &names.level)
        .ok_or_else(|| GeoError::new(format!("{where_}: no level (property {:?})", names.level)))?;
    let name = required_text(properties, &names.name).unwrap_or_else(|| id.clone());
    let parent = required_text(properties, &names.parent);
    let geometry = feature.get("geometry").ok_or_else(|| GeoError::new(format!("{where_}: no \"geometry\"")))?;
    let shape = polygonal(geometry).map_err(|problem| GeoError::new(format!("{where_}: {problem}")))?;
    Ok(ParsedFeature { position, id, name, level, parent, shape })
}

/// A property as text: strings as they are, numbers in their JSON spelling; null or absent is `None`.
fn required_text(properties: &Map<String, Value>, key: &str) -> Option<String> {
    properties.get(key).and_then(scalar_text)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn polygonal(geometry: &Value) -> Result<MultiPolygon<f64>, String> {
    match geometry_value(geometry)? {
        Geometry::Polygon(polygon) => Ok(MultiPolygon(vec![polygon])),
        Geometry::MultiPolygon(polygons) => Ok(polygons),
        _ => Err(format!("geometry type {:?} is not a Polygon or MultiPolygon", type_name(geometry).unwrap_or("?"))),
    }
}

fn geometry_value(geometry: &Value) -> Result<Geometry<f64>, String> {
    let kind = type_name(geometry).ok_or("geometry has no \"type\"")?;
    let coordinates = geometry.get("coordinates").ok_or("geometry has no \"coordinates\"")?;
    Ok(match kind {
        "Point" => Geometry::Point(Point(position(coordinates)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            array(coordinates, "MultiPoint")?.iter().map(|p| position(p).map(Point)).collect::<Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(line(coordinates)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            array(coordinates, "MultiLineString")?.iter().map(line).collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(polygon(coordinates)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            array(coordinates, "MultiPolygon")?.iter().map(polygon).collect::<Result<_, _>>()?,
        )),
        other => return Err(format!("unsupported geometry type {other:?}")),
    })
}

fn array<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    value.as_array().ok_or_else(|| format!("{what} coordinates are not an array"))
}

fn position(value: &Value) -> Result<Coord<f64>, String> {
    let numbers = array(value, "position")?;
    let (Some(lng), Some(lat)) = (numbers.first(), numbers.get(1)) else {
        return Err(format!("position {value} has fewer than 2 numbers"));
    };
    let (Some(lng), Some(lat)) = (lng.as_f64(), lat.as_f64()) else {
        return Err(format!("position {value} holds a value that is not a number"));
    };
    match coordinate_problem(lng, lat) {
        Some(problem) => Err(problem),
        None => Ok(Coord { x: lng, y: lat }),
    }
}

fn line(value: &Value) -> Result<LineString<f64>, String> {
    let coords = array(value, "LineString")?.iter().map(position).collect::<Result<Vec<_>, _>>()?;
    if coords.len() < 2 {
        return Err("a LineString needs at least 2 positions".into());
    }
    Ok(LineString(coords))
}

fn polygon(value: &Value) -> Result<Polygon<f64>, String> {
    let mut rings = array(value, "Polygon")?.iter().enumerate().map(|(number, ring_value)| ring(number, ring_value));
    let exterior = rings.next().ok_or("a Polygon needs an exterior ring")??;
    let holes = rings.collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, holes))
}

fn ring(number: usize, value: &Value) -> Result<LineString<f64>, String> {
    let coords = array(value, "ring")?.iter().map(position).collect::<Result<Vec<_>, _>>()?;
    if coords.len() < 4 {
        return Err(format!("ring {number} has {} positions, a closed ring needs at least 4", coords.len()));
    }
    if coords.first() != coords.last() {
        return Err(format!("ring {number} is not closed (first and last positions differ)"));
    }
    Ok(LineString(coords))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> PropertyNames {
        PropertyNames { id: "id".into(), name: "name".into(), level: "level".into(), parent: "parent".into() }
    }

    #[test]
    fn reads_polygon_with_hole_and_numeric_id() {
        let doc = br#"{"type":"FeatureCollection","features":[{"type":"Feature",
            "properties":{"id":510104,"level":"district"},
            "geometry":{"type":"Polygon","coordinates":[[[0,0],[4,0],[4,4],[0,4],[0,0]],[[1,1],[2,1],[2,2],[1,1]]]}}]}"#;
        let features = parse_layer(doc, &names()).unwrap();
        assert_eq!(features[0].id, "510104");
        assert_eq!(features[0].name, "510104");
        assert_eq!(features[0].shape.0[0].interiors().len(), 1);
    }

    #[test]
    fn errors_name_the_feature() {
        let doc = br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"a","level":"x"},
            "geometry":{"type":"Polygon","coordinates":[[[0,0],[400,0],[4,4],[0,0]]]}}]}"#;
        let err = parse_layer(doc, &names()).unwrap_err().to_string();
        assert!(err.contains("feature #0 (id \"a\")") && err.contains("out of range"), "{err}");
    }

    #[test]
    fn unclosed_ring_is_rejected() {
        let doc = br#"{"type":"Feature","properties":{"id":"a","level":"x"},
            "geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}}"#;
        assert!(parse_layer(doc, &names()).unwrap_err().to_string().contains("not closed"));
    }
}
