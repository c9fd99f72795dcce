//! The documents rules see: each event's ingest document (the message, or the `data` of a CloudEvent) with
//! the fields the pipeline decided (id, category, severity, admin path) set on it, as
//! `hub.pipeline.processor` set them on the parsed dict: a member already there keeps its place, the others
//! follow the document's own members in the order given.

use super::tree::Json;
use crate::outputs::{write_plain, write_str};

/// The event document of an ingest message: the `data` of a CloudEvent (an object with `specversion`), or the
/// message itself. None when it is no JSON object this parser takes (the caller builds it another way).
fn event_document(raw: &[u8]) -> Option<Json<'_>> {
    let document = Json::parse(raw).ok()?;
    let document = match document.get("specversion") {
        Some(_) => document.take("data")?,
        None => document,
    };
    matches!(document, Json::Object(_)).then_some(document)
}

/// The event document of `raw` with `fields` (name, string value) set, as compact JSON.
pub fn patched_document(raw: &[u8], fields: &[(&str, &str)]) -> Option<Vec<u8>> {
    let Json::Object(members) = event_document(raw)? else { return None };
    let mut out = Vec::with_capacity(raw.len() + 128);
    out.push(b'{');
    let mut first = true;
    let mut write_member = |out: &mut Vec<u8>, name: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, name);
        out.push(b':');
    };
    for (name, value) in &members {
        write_member(&mut out, name);
        match fields.iter().find(|(field, _)| field == name) {
            Some((_, patched)) => write_str(&mut out, patched),
            None => write_plain(&mut out, value),
        }
    }
    for (name, value) in fields {
        if !members.iter().any(|(member, _)| member == name) {
            write_member(&mut out, name);
            write_str(&mut out, value);
        }
    }
    out.push(b'}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(raw: &str) -> Option<String> {
        patched_document(raw.as_bytes(), &[("id", "E1"), ("severity", "high"), ("grid", "锦江区")])
            .map(|out| String::from_utf8(out).unwrap())
    }

    #[test]
    fn fields_keep_their_place_or_follow_in_order() {
        assert_eq!(patched(r#"{"severity":"low","a":[1,{"b":null}]}"#).unwrap(),
                   r#"{"severity":"high","a":[1,{"b":null}],"id":"E1","grid":"锦江区"}"#);
        assert_eq!(patched(r#"{"specversion":"1.0","data":{"x":1.5}}"#).unwrap(),
                   r#"{"x":1.5,"id":"E1","severity":"high","grid":"锦江区"}"#);
    }

    #[test]
    fn what_the_parser_does_not_take_is_left_to_the_caller() {
        for raw in [r#"{"a":1,"a":2}"#, "[1]", r#"{"specversion":"1.0","data":3}"#, "{"] {
            assert_eq!(patched(raw), None, "{raw}");
        }
    }
}
