//! A batch of ingest messages → the events the fast path accepts, as columns, and the positions of the
//! messages it leaves undecided (to the pydantic model, which gives every rejection its exact reason).

use super::datetime::{parse_rfc3339, Instant};
use super::schema::{ObjectShape, Shape, ShapeError};
use super::tree::Json;
use crate::outputs::write_shaped;
use std::borrow::Cow;

/// One ingest message: its bytes, the subject it came on and when the stream stored it (epoch seconds).
pub struct IngestMessage<'a> {
    pub data: &'a [u8],
    pub subject: &'a str,
    pub received: f64,
}

/// How far an event's time may lie from its reception (`hub.pipeline.engines.EventTimeWindow`).
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    pub max_ahead_s: f64,
    pub max_age_s: f64,
    pub accept_out_of_range: bool,
}

impl TimeWindow {
    fn admits(&self, event_time: f64, received: f64) -> bool {
        self.accept_out_of_range
            || (event_time <= received + self.max_ahead_s && event_time >= received - self.max_age_s)
    }
}

/// One cell of a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An instant, exact to the microsecond, with the offset it was written with.
    Time(Instant),
    /// A nested value kept whole (arrays, free objects) as JSON text, written as pydantic writes the
    /// model's value (defaults filled in, None left out of models).
    Json(String),
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A scalar property: string, number, boolean (or null).
    Value,
    /// A property holding a model (an object with declared properties): `true` where present; its
    /// properties have columns of their own (`location.lon`).
    Object,
    /// Arrays and free objects, as JSON text.
    Json,
    /// A date-time: [`Value::Time`].
    Time,
}

impl ColumnKind {
    pub fn name(self) -> &'static str {
        match self {
            ColumnKind::Value => "value",
            ColumnKind::Object => "object",
            ColumnKind::Json => "json",
            ColumnKind::Time => "time",
        }
    }
}

/// A column of the accepted events: a top-level property or, for properties holding a model, one of its
/// properties (`location.lon`), beside the model's presence column (`location`).
#[derive(Debug, Clone)]
pub struct Column<'a> {
    pub name: String,
    pub kind: ColumnKind,
    pub values: Vec<Value<'a>>,
}

/// The decoded batch: `accepted` and `undecided` hold message positions; column values are in
/// `accepted` order.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    pub accepted: Vec<usize>,
    pub undecided: Vec<usize>,
    pub columns: Vec<Column<'a>>,
}

/// What makes an ingest message an event.
pub struct EventRules<'a> {
    pub shape: &'a Shape,
    pub source_field: &'a str,
    pub time_field: &'a str,
    pub event_type: &'a str,
    pub max_bytes: usize,
    pub window: TimeWindow,
}

/// The columns of a shape: one per property, a model's properties spread into their own after it.
pub fn columns_of(shape: &Shape) -> Result<Vec<(String, ColumnKind)>, ShapeError> {
    let Shape::Object(root) = shape else {
        return Err(ShapeError { path: String::new(), reason: "the event schema must describe an object".into() });
    };
    let mut columns = Vec::new();
    add_columns(root, "", &mut columns);
    Ok(columns)
}

/// The model (an object with declared properties) a property holds, alone or beside null.
pub fn declared_object(shape: &Shape) -> Option<&ObjectShape> {
    match shape {
        Shape::Object(object) if !object.fields.is_empty() => Some(object),
        Shape::AnyOf(branches) => {
            let mut objects = branches.iter().filter_map(declared_object);
            let only = objects.next()?;
            (objects.next().is_none() && branches.iter().all(|b| matches!(b, Shape::Null | Shape::Object(_))))
                .then_some(only)
        }
        _ => None,
    }
}

/// What the column of a property of shape `shape` holds.
pub fn column_kind(shape: &Shape) -> ColumnKind {
    if declared_object(shape).is_some() {
        ColumnKind::Object
    } else if holds(shape, &|shape| matches!(shape, Shape::DateTime)) {
        ColumnKind::Time
    } else if holds(shape, &|shape| matches!(shape, Shape::Array(_) | Shape::Object(_) | Shape::Any)) {
        ColumnKind::Json
    } else {
        ColumnKind::Value
    }
}

fn holds(shape: &Shape, kind: &dyn Fn(&Shape) -> bool) -> bool {
    match shape {
        Shape::AnyOf(branches) => branches.iter().any(|branch| holds(branch, kind)),
        _ => kind(shape),
    }
}

fn add_columns(object: &ObjectShape, prefix: &str, columns: &mut Vec<(String, ColumnKind)>) {
    for field in &object.fields {
        let name = if prefix.is_empty() { field.name.clone() } else { format!("{prefix}.{}", field.name) };
        columns.push((name.clone(), column_kind(&field.shape)));
        if let Some(inner) = declared_object(&field.shape) {
            add_columns(inner, &name, columns);
        }
    }
}

/// One admitted value as its column holds it.
fn cell<'a>(value: Option<&Json<'a>>, shape: &Shape) -> Value<'a> {
    let Some(value) = value else { return Value::Null };
    match (shape.branch_for(value), value) {
        (_, Json::Null) => Value::Null,
        (Shape::Object(object), Json::Object(_)) if !object.fields.is_empty() => Value::Bool(true),
        (Shape::Array(_) | Shape::Object(_) | Shape::Any, _) => {
            let mut text = Vec::with_capacity(64);
            write_shaped(&mut text, shape, value);
            Value::Json(String::from_utf8(text).unwrap_or_default())
        }
        (Shape::DateTime, Json::Str(text)) => parse_rfc3339(text).map_or(Value::Null, Value::Time),
        (Shape::Number(_), number) => number.as_f64().map_or(Value::Null, Value::Float),
        (_, Json::Int(i)) => Value::Int(*i),
        (_, Json::Bool(b)) => Value::Bool(*b),
        (_, Json::Str(text)) => Value::Str(text.clone()),
        (_, number) => number.as_f64().map_or(Value::Null, Value::Float),
    }
}

/// The cells of one admitted object, appended to `columns` from `next` on in [`columns_of`] order.
fn fill<'a>(object: &ObjectShape, value: Option<&Json<'a>>, columns: &mut [Column<'a>], next: &mut usize) {
    let values = match value {
        Some(Json::Object(members)) => object.values(members),
        _ => Vec::new(),
    };
    for (index, field) in object.fields.iter().enumerate() {
        // Inside an absent object every property is absent too, defaults included.
        let item = value.and_then(|_| values.get(index).copied().flatten().or(field.default.as_ref()));
        columns[*next].values.push(cell(item, &field.shape));
        *next += 1;
        if let Some(inner) = declared_object(&field.shape) {
            fill(inner, item.filter(|item| matches!(item, Json::Object(_))), columns, next);
        }
    }
}

/// The event document of a message (a bare object, or the `data` of a CloudEvent of the event type)
/// when the fast path can take it; None leaves the message to pydantic.
fn event_document<'a>(raw: &'a [u8], rules: &EventRules<'_>) -> Option<Json<'a>> {
    if raw.len() > rules.max_bytes {
        return None;
    }
    let document = Json::parse(raw).ok()?;
    if !matches!(document, Json::Object(_)) {
        return None;
    }
    if document.get("specversion").is_none() {
        return Some(document);
    }
    let envelope_ok = document.get("specversion").and_then(Json::as_str) == Some("1.0")
        && document.get("id").is_some()
        && document.get("source").is_some()
        && document.get("type").and_then(Json::as_str) == Some(rules.event_type);
    match document.take("data") {
        Some(data @ Json::Object(_)) if envelope_ok => Some(data),
        _ => None,
    }
}

/// The event of one message, or None when it is left to pydantic.
fn accepted_event<'a>(message: &IngestMessage<'a>, rules: &EventRules<'_>) -> Option<Json<'a>> {
    let event = event_document(message.data, rules)?;
    if !rules.shape.admits(&event) {
        return None;
    }
    let source = event.get(rules.source_field)?.as_str()?;
    if message.subject.rsplit('.').next() != Some(source) {
        return None;
    }
    let time = parse_rfc3339(event.get(rules.time_field)?.as_str()?)?;
    rules.window.admits(time.epoch_seconds(), message.received).then_some(event)
}

/// Decode a batch. A panic while decoding one message (there should be none) leaves that message to
/// pydantic instead of unwinding into the caller.
pub fn decode_batch<'a>(messages: &[IngestMessage<'a>], rules: &EventRules<'_>) -> Result<Decoded<'a>, ShapeError> {
    let count = messages.len();
    let columns = columns_of(rules.shape)?.into_iter().map(|(name, kind)| Column {
        name,
        kind,
        values: Vec::with_capacity(count),
    });
    let mut decoded = Decoded { columns: columns.collect(), ..Decoded::default() };
    let Shape::Object(root) = rules.shape else { return Ok(decoded) };
    for (position, message) in messages.iter().enumerate() {
        let event = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| accepted_event(message, rules)));
        match event {
            Ok(Some(event)) => {
                decoded.accepted.push(position);
                fill(root, Some(&event), &mut decoded.columns, &mut 0);
            }
            _ => decoded.undecided.push(position),
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_shape() -> Shape {
        Shape::compile(
            r##"{
            "type": "object", "additionalProperties": false, "required": ["source", "time"],
            "properties": {
                "source": {"type": "string", "pattern": "^[a-z0-9_]+$", "maxLength": 64},
                "time": {"type": "string", "format": "date-time"},
                "location": {"anyOf": [{"$ref": "#/$defs/Location"}, {"type": "null"}], "default": null},
                "payload": {"type": "object", "additionalProperties": true}
            },
            "$defs": {"Location": {"type": "object", "additionalProperties": false, "required": ["lon"],
                "properties": {"lon": {"type": "number", "minimum": -180, "maximum": 180},
                               "crs": {"type": "string", "enum": ["wgs84", "gcj02"], "default": "wgs84"}}}}
        }"##,
        )
        .unwrap()
    }

    fn decode<'a>(raws: &[&'a [u8]], shape: &Shape) -> Decoded<'a> {
        let messages: Vec<_> = raws
            .iter()
            .map(|data| IngestMessage { data, subject: "cityhub.ingest.iot", received: 1_777_593_600.0 })
            .collect();
        let window = TimeWindow { max_ahead_s: 86_400.0, max_age_s: 86_400.0, accept_out_of_range: false };
        let rules = EventRules {
            shape,
            source_field: "source",
            time_field: "time",
            event_type: "cityhub.event",
            max_bytes: 1024,
            window,
        };
        decode_batch(&messages, &rules).unwrap()
    }

    #[test]
    fn canonical_events_come_back_as_columns_with_defaults() {
        let shape = event_shape();
        let decoded = decode(
            &[br#"{"source":"iot","time":"2026-05-01T08:00:00+08:00","location":{"lon":104},"payload":{"a":[1]}}"#],
            &shape,
        );
        assert_eq!(decoded.accepted, vec![0]);
        let column = |name: &str| decoded.columns.iter().find(|c| c.name == name).unwrap().values[0].clone();
        assert_eq!(column("location"), Value::Bool(true));
        assert_eq!(column("location.lon"), Value::Float(104.0));
        assert_eq!(column("location.crs"), Value::Str("wgs84".into()));
        assert_eq!(column("payload"), Value::Json(r#"{"a":[1]}"#.into()));
        assert_eq!(column("time"), Value::Time(Instant { epoch_us: 1_777_593_600_000_000, offset_s: 28_800 }));
        let kinds: Vec<_> = columns_of(&shape).unwrap().into_iter().map(|(_, kind)| kind.name()).collect();
        assert_eq!(kinds, ["value", "time", "object", "value", "value", "json"]);
    }

    #[test]
    fn anything_unusual_is_left_to_pydantic() {
        let shape = event_shape();
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let raws: Vec<&[u8]> = vec![
            b"not json",
            b"\xff\xfe{}",
            br#"{"source":"iot","time":"2026-05-01T08:00:00+08:00","x":1}"#,
            br#"{"source":"other","time":"2026-05-01T08:00:00+08:00"}"#,
            br#"{"source":"iot","time":"2026-05-01T08:00:00"}"#,
            br#"{"source":"iot","time":"2027-05-01T08:00:00Z"}"#,
            br#"{"source":"iot","time":"2026-05-01T08:00:00Z","location":{"lon":"104"}}"#,
            br#"{"source":"iot","time":"2026-05-01T08:00:00Z","location":{"lon":1e400}}"#,
            br#"{"source":"iot","time":"2026-05-01T08:00:00Z","location":{"lon":NaN}}"#,
            br#"{"source":"iot","source":"iot","time":"2026-05-01T08:00:00Z"}"#,
            br#"{"source":"iot","time":"2026-05-01T08:00:00Z","payload":{"n":99999999999999999999}}"#,
            deep.as_bytes(),
        ];
        assert_eq!(decode(&raws, &shape).undecided, (0..raws.len()).collect::<Vec<_>>());
    }
}
