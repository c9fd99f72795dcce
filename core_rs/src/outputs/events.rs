//! Unified events as CloudEvents from the columns of [`crate::ingest`]: `data` is the event model written
//! as pydantic writes it with `exclude_none` (properties in the model's order, absent ones left out), the
//! layout following the model's compiled [`Shape`], so a field added to the model is written without a
//! change here.

use super::json::{write_f64, write_str, write_time, Utc};
use crate::ingest::{Instant, ObjectShape, Shape};
use std::collections::HashMap;

/// One cell of a column as Python hands it over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string; JSON text when its property holds an array or a free object.
    Str(&'a str),
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

/// A property of the event model with its column (and, for a date-time, its offsets column; for a nested
/// model, its properties), resolved once per batch.
struct Property<'s, 'c> {
    name: &'s str,
    shape: &'s Shape,
    cells: &'c [Cell<'c>],
    offsets: Option<&'c [Cell<'c>]>,
    nested: Option<Vec<Property<'s, 'c>>>,
}

type Columns<'c> = HashMap<String, Vec<Cell<'c>>>;

fn column<'c>(columns: &'c Columns<'c>, name: &str, count: usize) -> Result<&'c [Cell<'c>], String> {
    let cells = columns
        .get(name)
        .ok_or_else(|| format!("encode_events: no column {name:?}; give every column the decoder returned"))?;
    if cells.len() != count {
        return Err(format!("encode_events: column {name:?} has {} values for {count} events", cells.len()));
    }
    Ok(cells)
}

fn properties<'s, 'c>(object: &'s ObjectShape, prefix: &str, columns: &'c Columns<'c>, count: usize) -> Result<Vec<Property<'s, 'c>>, String> {
    object
        .fields
        .iter()
        .map(|field| {
            let name = if prefix.is_empty() { field.name.clone() } else { format!("{prefix}.{}", field.name) };
            let nested = crate::ingest::declared_object(&field.shape).map(|inner| properties(inner, &name, columns, count)).transpose()?;
            let offsets = match is_date_time(&field.shape) {
                true => Some(column(columns, &format!("{name}.utcoffset"), count)?),
                false => None,
            };
            Ok(Property { name: &field.name, shape: &field.shape, cells: column(columns, &name, count)?, offsets, nested })
        })
        .collect()
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

fn instant(seconds: &Cell<'_>, offset: Option<&Cell<'_>>) -> Option<Instant> {
    let offset_s = match offset {
        Some(Cell::Int(offset)) => *offset as i32,
        _ => 0,
    };
    match seconds {
        Cell::Float(seconds) => Some(Instant { epoch_us: micros(*seconds), offset_s }),
        Cell::Int(seconds) => Some(Instant { epoch_us: seconds * 1_000_000, offset_s }),
        _ => None,
    }
}

fn write_object(out: &mut Vec<u8>, properties: &[Property<'_, '_>], row: usize) {
    out.push(b'{');
    let mut first = true;
    for property in properties {
        let cell = &property.cells[row];
        if *cell == Cell::Null {
            continue;
        }
        write_key(out, &mut first, property.name);
        match (&property.nested, cell) {
            (Some(nested), _) => write_object(out, nested, row),
            // JSON columns hold the value as the model writes it already (see crate::ingest).
            (None, Cell::Str(text)) if holds_json(property.shape) => out.extend_from_slice(text.as_bytes()),
            (None, Cell::Str(text)) => write_str(out, text),
            (None, Cell::Float(_) | Cell::Int(_)) if property.offsets.is_some() => {
                let at = instant(cell, property.offsets.map(|offsets| &offsets[row]));
                write_time(out, at.unwrap_or(Instant { epoch_us: 0, offset_s: 0 }), Utc::Z);
            }
            (None, Cell::Float(value)) => write_f64(out, *value),
            (None, Cell::Int(value)) if matches!(property.shape, Shape::Number(_)) => write_f64(out, *value as f64),
            (None, Cell::Int(value)) => out.extend_from_slice(value.to_string().as_bytes()),
            (None, Cell::Bool(value)) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
            (None, Cell::Null) => {}
        }
    }
    out.push(b'}');
}

fn write_event(out: &mut Vec<u8>, envelope: &Envelope<'_>, data: &[Property<'_, '_>], time: &Property<'_, '_>, row: usize) {
    out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":");
    write_str(out, &envelope.ids[row]);
    out.extend_from_slice(b",\"source\":");
    write_str(out, envelope.source);
    out.extend_from_slice(b",\"type\":");
    write_str(out, envelope.type_);
    out.extend_from_slice(b",\"time\":");
    match instant(&time.cells[row], time.offsets.map(|offsets| &offsets[row])) {
        Some(at) => write_time(out, at, Utc::Offset),
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
    write_object(out, data, row);
    out.push(b'}');
}

/// Every event of the batch as a structured-mode CloudEvent, one after another in one buffer; the
/// offsets (one more than events) say where each starts and the last one ends.
pub fn encode_events(
    shape: &Shape,
    time_field: &str,
    columns: &Columns<'_>,
    envelope: &Envelope<'_>,
) -> Result<(Vec<u8>, Vec<usize>), String> {
    let Shape::Object(object) = shape else {
        return Err("encode_events: the event schema must describe an object".into());
    };
    let count = envelope.ids.len();
    if envelope.subjects.len() != count || envelope.extensions.iter().any(|(_, values)| values.len() != count) {
        return Err(format!("encode_events: {count} ids but subjects or extensions of another length"));
    }
    let data = properties(object, "", columns, count)?;
    let time = data
        .iter()
        .find(|property| property.name == time_field && property.offsets.is_some())
        .ok_or_else(|| format!("encode_events: no date-time property {time_field:?} in the event schema"))?;
    let mut out = Vec::with_capacity(count * 512);
    let mut offsets = Vec::with_capacity(count + 1);
    offsets.push(0);
    for row in 0..count {
        write_event(&mut out, envelope, &data, time, row);
        offsets.push(out.len());
    }
    Ok((out, offsets))
}
