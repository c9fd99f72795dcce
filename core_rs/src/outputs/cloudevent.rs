//! The structured-mode CloudEvents envelope as `hub/wire.py` writes it with orjson: the attributes in the
//! order `specversion, id, source, type, time, datacontenttype, subject`, then the extension attributes
//! that have a value, then `data`.

use super::json::{write_joined, write_str, write_time, Utc};
use crate::ingest::Instant;

/// The value of an extension attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Extension<'a> {
    Str(&'a str),
    Bool(bool),
}

/// The attributes before the extensions. `source` is written as the concatenation of its parts.
pub struct Head<'a> {
    pub id: &'a str,
    pub source: [&'a str; 2],
    pub type_: [&'a str; 2],
    pub time: Instant,
    pub subject: &'a str,
}

pub fn write_head(out: &mut Vec<u8>, head: &Head<'_>) {
    out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":");
    write_str(out, head.id);
    out.extend_from_slice(b",\"source\":");
    write_joined(out, &head.source);
    out.extend_from_slice(b",\"type\":");
    write_joined(out, &head.type_);
    out.extend_from_slice(b",\"time\":");
    write_time(out, head.time, Utc::Offset);
    out.extend_from_slice(b",\"datacontenttype\":\"application/json\"");
    if !head.subject.is_empty() {
        out.extend_from_slice(b",\"subject\":");
        write_str(out, head.subject);
    }
}

/// One extension attribute; None leaves it out.
pub fn write_extension(out: &mut Vec<u8>, name: &str, value: Option<Extension<'_>>) {
    let Some(value) = value else { return };
    out.push(b',');
    write_str(out, name);
    out.push(b':');
    match value {
        Extension::Str(text) => write_str(out, text),
        Extension::Bool(flag) => out.extend_from_slice(if flag { b"true" } else { b"false" }),
    }
}

/// `,"data":` — the caller writes the data and closes the envelope with `}`.
pub fn write_data_key(out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"data\":");
}
