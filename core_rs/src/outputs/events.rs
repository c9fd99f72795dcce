//! Unified events as CloudEvents from the columns of [`crate::ingest`]: `data` is the event model written
//! as pydantic writes it with `exclude_none` (properties in the model's order, absent ones left out), the
//! layout following the model's compiled [`Shape`], so a field added to the model is written without a
//! change here.

use super::json::{write_f64, write_str, write_time, Utc};
use crate::ingest::{Instant, ObjectShape, Shape};
use serde_json::Value;
use std::collections::HashMap;

/// One cell of a column as Python hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string; JSON text when its property holds an array or a free object.
    Str(String),
}

/// The CloudEvents attributes around each event's `data`.
pub struct Envelope<'a> {
    pub source: &'a str,
    pub type_: &'a str,
    pub ids: &'a [String],
    pub subjects: &'a [String],
    /// Extension attributes in order, one value per event; None leaves the attribute out.
    pub extensions: &'a [(String, Vec<Option<String>>)],
}

struct Writer<'a> {
    shape: &'a ObjectShape,
    time_field: &'a str,
    columns: &'a HashMap<String, Vec<Cell>>,
}

fn holds_json(shape: &Shape) -> bool {
    match shape {
        Shape::Array(_) | Shape::Object(_) | Shape::Any => true,
        Shape::AnyOf(branches) => branches.iter().any(holds_json),
        _ => false,
    }
}

fn is_date_time(shape: &Shape) -> bool {
    match shape {
        Shape::DateTime => true,
        Shape::AnyOf(branches) => branches.iter().any(is_date_time),
        _ => false,
    }
}

fn micros(seconds: f64) -> i64 {
    (seconds * 1e6).round() as i64
}

fn write_key(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    write_str(out, name);
    out.push(b':');
}

/// Any JSON value in its own order, numbers as Python reads them back (integers as integers).
fn write_plain(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) if n.is_f64() => write_f64(out, n.as_f64().unwrap_or(f64::NAN)),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(text) => write_str(out, text),
        Value::Array(values) => {
            out.push(b'[');
            for (i, item) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_plain(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            let mut first = true;
            for (name, item) in map {
                write_key(out, &mut first, name);
                write_plain(out, item);
            }
            out.push(b'}');
        }
    }
}

/// A value as the model holds it under `shape`: models without their None fields, in the model's order.
fn write_shaped(out: &mut Vec<u8>, shape: &Shape, value: &Value) {
    match (shape, value) {
        (_, Value::Null) => out.extend_from_slice(b"null"),
        (Shape::AnyOf(branches), _) => match branches.iter().find(|branch| branch.admits(value)) {
            Some(branch) => write_shaped(out, branch, value),
            None => write_plain(out, value),
        },
        (Shape::Object(object), Value::Object(map)) if !object.fields.is_empty() => {
            out.push(b'{');
            let mut first = true;
            for field in &object.fields {
                if let Some(item) = map.get(&field.name).filter(|item| !item.is_null()) {
                    write_key(out, &mut first, &field.name);
                    write_shaped(out, &field.shape, item);
                }
            }
            out.push(b'}');
        }
        (Shape::Array(items), Value::Array(values)) => {
            out.push(b'[');
            for (i, item) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_shaped(out, items, item);
            }
            out.push(b']');
        }
        (Shape::Number(_), Value::Number(n)) => write_f64(out, n.as_f64().unwrap_or(f64::NAN)),
        (Shape::DateTime, Value::String(text)) => match crate::ingest::parse_rfc3339(text) {
            Some(instant) => write_time(out, instant, Utc::Z),
            None => write_str(out, text),
        },
        _ => write_plain(out, value),
    }
}

impl Writer<'_> {
    fn column(&self, name: &str) -> Result<&[Cell], String> {
        self.columns
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("encode_events: no column {name:?}; give every column the decoder returned"))
    }

    fn instant(&self, name: &str, row: usize) -> Result<Option<Instant>, String> {
        let offset = match self.column(&format!("{name}.utcoffset"))?.get(row) {
            Some(Cell::Int(offset)) => *offset as i32,
            _ => 0,
        };
        Ok(match self.column(name)?.get(row) {
            Some(Cell::Float(seconds)) => Some(Instant { epoch_us: micros(*seconds), offset_s: offset }),
            Some(Cell::Int(seconds)) => Some(Instant { epoch_us: seconds * 1_000_000, offset_s: offset }),
            _ => None,
        })
    }

    fn write_object(&self, out: &mut Vec<u8>, object: &ObjectShape, prefix: &str, row: usize) -> Result<(), String> {
        out.push(b'{');
        let mut first = true;
        for field in &object.fields {
            let name = if prefix.is_empty() { field.name.clone() } else { format!("{prefix}.{}", field.name) };
            let cell = self.column(&name)?.get(row).ok_or_else(|| format!("encode_events: column {name:?} is short"))?;
            if *cell == Cell::Null {
                continue;
            }
            write_key(out, &mut first, &field.name);
            match (crate::ingest::declared_object(&field.shape), cell) {
                (Some(inner), _) => self.write_object(out, inner, &name, row)?,
                (None, Cell::Str(text)) if holds_json(&field.shape) => {
                    let value: Value = serde_json::from_str(text)
                        .map_err(|e| format!("encode_events: column {name:?} row {row} is not JSON: {e}"))?;
                    write_shaped(out, &field.shape, &value);
                }
                (None, Cell::Str(text)) => write_str(out, text),
                (None, Cell::Float(_) | Cell::Int(_)) if is_date_time(&field.shape) => {
                    let instant = self.instant(&name, row)?.unwrap_or(Instant { epoch_us: 0, offset_s: 0 });
                    write_time(out, instant, Utc::Z);
                }
                (None, Cell::Float(value)) => write_f64(out, *value),
                (None, Cell::Int(value)) if matches!(field.shape, Shape::Number(_)) => write_f64(out, *value as f64),
                (None, Cell::Int(value)) => out.extend_from_slice(value.to_string().as_bytes()),
                (None, Cell::Bool(value)) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
                (None, Cell::Null) => {}
            }
        }
        out.push(b'}');
        Ok(())
    }

    fn write_event(&self, out: &mut Vec<u8>, envelope: &Envelope<'_>, row: usize) -> Result<(), String> {
        out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":");
        write_str(out, &envelope.ids[row]);
        out.extend_from_slice(b",\"source\":");
        write_str(out, envelope.source);
        out.extend_from_slice(b",\"type\":");
        write_str(out, envelope.type_);
        out.extend_from_slice(b",\"time\":");
        match self.instant(self.time_field, row)? {
            Some(instant) => write_time(out, instant, Utc::Offset),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"datacontenttype\":\"application/json\"");
        if !envelope.subjects[row].is_empty() {
            out.extend_from_slice(b",\"subject\":");
            write_str(out, &envelope.subjects[row]);
        }
        for (name, values) in envelope.extensions {
            if let Some(Some(value)) = values.get(row) {
                out.push(b',');
                write_str(out, name);
                out.push(b':');
                write_str(out, value);
            }
        }
        out.extend_from_slice(b",\"data\":");
        self.write_object(out, self.shape, "", row)?;
        out.push(b'}');
        Ok(())
    }
}

/// Every event of the batch as a structured-mode CloudEvent, one after another in one buffer; the
/// offsets (one more than events) say where each starts and the last one ends.
pub fn encode_events(
    shape: &Shape,
    time_field: &str,
    columns: &HashMap<String, Vec<Cell>>,
    envelope: &Envelope<'_>,
) -> Result<(Vec<u8>, Vec<usize>), String> {
    let Shape::Object(object) = shape else {
        return Err("encode_events: the event schema must describe an object".into());
    };
    let count = envelope.ids.len();
    if envelope.subjects.len() != count || envelope.extensions.iter().any(|(_, values)| values.len() != count) {
        return Err(format!("encode_events: {count} ids but subjects or extensions of another length"));
    }
    let writer = Writer { shape: object, time_field, columns };
    let mut out = Vec::with_capacity(count * 512);
    let mut offsets = Vec::with_capacity(count + 1);
    offsets.push(0);
    for row in 0..count {
        writer.write_event(&mut out, envelope, row)?;
        offsets.push(out.len());
    }
    Ok((out, offsets))
}
