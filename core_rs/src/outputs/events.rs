//! Unified events as CloudEvents from the columns of [`crate::ingest`]: `data` is the event model written
//! as pydantic writes it with `exclude_none` (properties in the model's order, absent ones left out), the
//! layout following the model's compiled [`Shape`], so a field added to the model is written without a
//! change here.

use super::cloudevent::{write_data_key, write_extension, write_head, Extension, Head};
use super::json::{instant_from_seconds, write_f64, write_int, write_str, write_time, Utc};
use crate::ingest::{column_kind, declared_object, ColumnKind, Instant, ObjectShape, Shape};
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

/// The CloudEvents attributes around each event's `data`: `type`, the `source` (`source_prefix` and the
/// event's source), and per event its id, subject and extension attributes (in order; None leaves one out).
pub struct Envelope<'a> {
    pub type_: &'a str,
    pub source_prefix: &'a str,
    pub ids: &'a [&'a str],
    pub subjects: &'a [&'a str],
    pub extensions: &'a [(String, Vec<Option<Extension<'a>>>)],
}

/// The columns by name, as [`crate::ingest::columns_of`] names them.
pub type Columns<'c> = HashMap<String, Vec<Cell<'c>>>;

/// A property of the event model with its column (and, for a date-time, its offsets column; for a nested
/// model, its properties), resolved once per batch.
struct Property<'s, 'c> {
    name: &'s str,
    kind: ColumnKind,
    number: bool,
    cells: &'c [Cell<'c>],
    offsets: Option<&'c [Cell<'c>]>,
    nested: Vec<Property<'s, 'c>>,
}

fn column<'c>(columns: &'c Columns<'c>, name: &str, count: usize) -> Result<&'c [Cell<'c>], String> {
    let cells = columns
        .get(name)
        .ok_or_else(|| format!("encode_events: no column {name:?}; give every column the decoder returned"))?;
    if cells.len() != count {
        return Err(format!("encode_events: column {name:?} has {} values for {count} events", cells.len()));
    }
    Ok(cells)
}

fn is_number(shape: &Shape) -> bool {
    match shape {
        Shape::Number(_) => true,
        Shape::AnyOf(branches) => branches.iter().any(is_number),
        _ => false,
    }
}

fn properties<'s, 'c>(
    object: &'s ObjectShape,
    prefix: &str,
    columns: &'c Columns<'c>,
    count: usize,
    only: Option<&[&str]>,
) -> Result<Vec<Property<'s, 'c>>, String> {
    object
        .fields
        .iter()
        .filter(|field| only.is_none_or(|names| names.contains(&field.name.as_str())))
        .map(|field| {
            let name = if prefix.is_empty() { field.name.clone() } else { format!("{prefix}.{}", field.name) };
            let kind = column_kind(&field.shape);
            let nested = match declared_object(&field.shape) {
                Some(inner) => properties(inner, &name, columns, count, None)?,
                None => Vec::new(),
            };
            let offsets = match kind {
                ColumnKind::Time => Some(column(columns, &format!("{name}.utcoffset"), count)?),
                _ => None,
            };
            let cells = column(columns, &name, count)?;
            Ok(Property { name: &field.name, kind, number: is_number(&field.shape), cells, offsets, nested })
        })
        .collect()
}

/// The instant of a date-time cell: exact microseconds (Int) or epoch seconds the hub stamped (Float,
/// rounded as `datetime.fromtimestamp` rounds), with the offset of its offsets cell.
/// None for a time Python's `datetime` cannot hold either (outside years 1 to 9999, an offset of a day or more).
fn instant(cell: &Cell<'_>, offset: Option<&Cell<'_>>) -> Option<Instant> {
    let offset_s = match offset {
        Some(Cell::Int(offset)) if offset.abs() < 86_400 => *offset as i32,
        Some(Cell::Int(_)) => return None,
        _ => 0,
    };
    let epoch_us = match cell {
        Cell::Int(micros) => *micros,
        Cell::Float(seconds) if seconds.is_finite() && seconds.abs() < 1e12 => instant_from_seconds(*seconds).epoch_us,
        _ => return None,
    };
    (FIRST_US..=LAST_US)
        .contains(&epoch_us.saturating_add(i64::from(offset_s) * 1_000_000))
        .then_some(Instant { epoch_us, offset_s })
}

/// 0001-01-01T00:00:00 and 9999-12-31T23:59:59.999999, local time, in microseconds since the epoch.
const FIRST_US: i64 = -62_135_596_800_000_000;
const LAST_US: i64 = 253_402_300_799_999_999;

/// The event columns of a batch resolved against the model's shape, to write each event's `data` (or one
/// of its properties) as pydantic writes it.
pub struct EventRows<'s, 'c> {
    data: Vec<Property<'s, 'c>>,
    count: usize,
}

impl<'s, 'c> EventRows<'s, 'c> {
    /// The rows of every property, or of the top-level properties named in `only` (whose columns are all
    /// `columns` needs to hold then).
    pub fn new(
        shape: &'s Shape,
        columns: &'c Columns<'c>,
        count: usize,
        only: Option<&[&str]>,
    ) -> Result<Self, String> {
        let Shape::Object(object) = shape else {
            return Err("encode_events: the event schema must describe an object".into());
        };
        Ok(EventRows { data: properties(object, "", columns, count, only)?, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Where the top-level property `name` (of `kind`, if given) is, to read or write it by row.
    pub fn index(&self, name: &str, kind: Option<ColumnKind>) -> Result<usize, String> {
        self.data
            .iter()
            .position(|property| property.name == name && kind.is_none_or(|kind| property.kind == kind))
            .ok_or_else(|| {
                format!("encode: no {} property {name:?} in the event schema", kind.map_or("", ColumnKind::name))
            })
    }

    /// The string the property at `index` holds in `row`, if any.
    pub fn string(&self, index: usize, row: usize) -> Option<&'c str> {
        match self.data[index].cells[row] {
            Cell::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The instant the date-time property at `index` holds in `row`, if any.
    pub fn instant(&self, index: usize, row: usize) -> Option<Instant> {
        let property = &self.data[index];
        instant(&property.cells[row], property.offsets.map(|offsets| &offsets[row]))
    }

    /// The event's `data`.
    pub fn write_data(&self, out: &mut Vec<u8>, row: usize) -> Result<(), String> {
        write_object(out, &self.data, row)
    }

    /// `,"<name>":<value>` for the property at `index` in `row`, nothing when it is None there.
    pub fn write_member(&self, out: &mut Vec<u8>, index: usize, row: usize) -> Result<(), String> {
        let property = &self.data[index];
        if property.cells[row] != Cell::Null {
            out.push(b',');
            write_property(out, property, row)?;
        }
        Ok(())
    }
}

fn write_object(out: &mut Vec<u8>, properties: &[Property<'_, '_>], row: usize) -> Result<(), String> {
    out.push(b'{');
    let mut first = true;
    for property in properties {
        if property.cells[row] == Cell::Null {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_property(out, property, row)?;
    }
    out.push(b'}');
    Ok(())
}

/// `"<name>":<value>` of a property that is not None in `row`.
fn write_property(out: &mut Vec<u8>, property: &Property<'_, '_>, row: usize) -> Result<(), String> {
    let cell = &property.cells[row];
    write_str(out, property.name);
    out.push(b':');
    match (property.kind, cell) {
        (ColumnKind::Object, _) => write_object(out, &property.nested, row)?,
        // JSON columns hold the value as the model writes it already (see crate::ingest).
        (ColumnKind::Json, Cell::Str(text)) => out.extend_from_slice(text.as_bytes()),
        (ColumnKind::Time, _) => {
            let at = instant(cell, property.offsets.map(|offsets| &offsets[row]))
                .ok_or_else(|| format!("encode_events: {} holds {cell:?}, not a time", property.name))?;
            write_time(out, at, Utc::Z);
        }
        (_, Cell::Str(text)) => write_str(out, text),
        (_, Cell::Float(value)) => write_f64(out, *value),
        (_, Cell::Int(value)) if property.number => write_f64(out, *value as f64),
        (_, Cell::Int(value)) => write_int(out, *value),
        (_, Cell::Bool(value)) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
        (_, Cell::Null) => {}
    }
    Ok(())
}

/// Every event of the batch as a structured-mode CloudEvent, one after another in one buffer; the
/// offsets (one more than events) say where each starts and the last one ends. `time_field` is the
/// property that is also the CloudEvent's `time`, `source_field` the one its `source` ends with.
pub fn encode_events(
    rows: &EventRows<'_, '_>,
    time_field: &str,
    source_field: &str,
    envelope: &Envelope<'_>,
) -> Result<(Vec<u8>, Vec<usize>), String> {
    let count = rows.len();
    if envelope.ids.len() != count
        || envelope.subjects.len() != count
        || envelope.extensions.iter().any(|(_, values)| values.len() != count)
    {
        return Err(format!("encode_events: {count} events but ids, subjects or extensions of another length"));
    }
    let (source_at, time_at) =
        (rows.index(source_field, Some(ColumnKind::Value))?, rows.index(time_field, Some(ColumnKind::Time))?);
    let mut out = Vec::with_capacity(count * 1024);
    let mut offsets = Vec::with_capacity(count + 1);
    offsets.push(0);
    for row in 0..count {
        let source =
            rows.string(source_at, row).ok_or_else(|| format!("encode_events: event {row} has no {source_field}"))?;
        let time =
            rows.instant(time_at, row).ok_or_else(|| format!("encode_events: event {row} has no {time_field}"))?;
        let head = Head {
            id: envelope.ids[row],
            source: [envelope.source_prefix, source],
            type_: [envelope.type_, ""],
            time,
            subject: envelope.subjects[row],
        };
        write_head(&mut out, &head);
        for (name, values) in envelope.extensions {
            write_extension(&mut out, name, values[row]);
        }
        write_data_key(&mut out);
        rows.write_data(&mut out, row)?;
        out.push(b'}');
        offsets.push(out.len());
    }
    Ok((out, offsets))
}
