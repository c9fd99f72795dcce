//! A parsed document written as pydantic writes the model value it validates to (`exclude_none`): model
//! objects with their properties in the model's order, defaults filled in and None left out; numbers of
//! float properties as floats; date-times in pydantic's spelling; free values (`dict[str, Any]`) as sent.

use super::json::{write_f64, write_str, write_time, Utc};
use crate::ingest::{Json, Shape};

fn write_list<'j>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = &'j Json<'j>>,
    mut write: impl FnMut(&mut Vec<u8>, &'j Json<'j>),
) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// Any value in its own order, numbers as Python reads them back (integers as integers).
pub fn write_plain(out: &mut Vec<u8>, value: &Json<'_>) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Json::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Json::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Json::Float(f) => write_f64(out, *f),
        Json::Str(text) => write_str(out, text),
        Json::Array(values) => write_list(out, values.iter(), |out, item| write_plain(out, item)),
        Json::Object(members) => {
            out.push(b'{');
            for (i, (name, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, name);
                out.push(b':');
                write_plain(out, item);
            }
            out.push(b'}');
        }
    }
}

/// An admitted `value` as the model under `shape` holds and pydantic writes it.
pub fn write_shaped(out: &mut Vec<u8>, shape: &Shape, value: &Json<'_>) {
    match (shape.branch_for(value), value) {
        (_, Json::Null) => out.extend_from_slice(b"null"),
        (Shape::Object(object), Json::Object(_)) if !object.fields.is_empty() => {
            out.push(b'{');
            let mut first = true;
            for field in &object.fields {
                let item = value.get(&field.name).or(field.default.as_ref());
                if let Some(item) = item.filter(|item| **item != Json::Null) {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_str(out, &field.name);
                    out.push(b':');
                    write_shaped(out, &field.shape, item);
                }
            }
            out.push(b'}');
        }
        (Shape::Array(items), Json::Array(values)) => {
            write_list(out, values.iter(), |out, item| write_shaped(out, items, item))
        }
        (Shape::Number(_), number) => write_f64(out, number.as_f64().unwrap_or(f64::NAN)),
        (Shape::DateTime, Json::Str(text)) => match crate::ingest::parse_rfc3339(text) {
            Some(instant) => write_time(out, instant, Utc::Z),
            None => write_str(out, text),
        },
        _ => write_plain(out, value),
    }
}
