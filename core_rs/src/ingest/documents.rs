//! The documents rules see: each event's ingest document (the message, or the `data` of a CloudEvent) with
//! the fields the pipeline decided (id, category, severity, admin path) set on it. The document's other
//! members are copied as they arrived, without parsing what they hold (only checked to be JSON), and the
//! decided fields follow them. Meant for messages the decoder accepted, which repeat no member name at any
//! depth; only the top level is checked here.

use super::tree::Key;
use crate::outputs::write_str;
use serde::de::{Deserializer, Error, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The top-level members of a JSON object, their values as written. Err for anything else, and for an object
/// that repeats a member name.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
                    if members.iter().any(|(seen, _)| *seen == name) {
                        return Err(A::Error::custom("an object repeats a member name"));
                    }
                    members.push((name, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

fn members(raw: &[u8]) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    serde_json::from_slice::<Members<'_>>(raw).ok().map(|Members(members)| members)
}

/// The members of the event document of an ingest message: the `data` of a CloudEvent (an object with
/// `specversion`), or the message itself. None when it is no JSON object this parser takes (the caller builds
/// it another way).
fn event_members(raw: &[u8]) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    let top = members(raw)?;
    match top.iter().find(|(name, _)| name == "specversion") {
        None => Some(top),
        Some(_) => {
            let (_, data) = top.into_iter().find(|(name, _)| name == "data")?;
            members(data.get().as_bytes())
        }
    }
}

/// The event document of `raw` with `fields` (name, string value) set, as JSON: its other members as they
/// arrived, then `fields`.
pub fn patched_document(raw: &[u8], fields: &[(&str, &str)]) -> Option<Vec<u8>> {
    let members = event_members(raw)?;
    let mut out = Vec::with_capacity(raw.len() + 128);
    out.push(b'{');
    for (name, value) in members.iter().filter(|(name, _)| !fields.iter().any(|(field, _)| field == name)) {
        write_str(&mut out, name);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
        out.push(b',');
    }
    for (name, value) in fields {
        write_str(&mut out, name);
        out.push(b':');
        write_str(&mut out, value);
        out.push(b',');
    }
    if out.len() > 1 {
        out.pop();
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
    fn members_stay_as_they_arrived_and_fields_follow() {
        assert_eq!(
            patched(r#"{"severity":"low", "a":[1, {"b":null}],"t\u00e9":1.50}"#).unwrap(),
            r#"{"a":[1, {"b":null}],"té":1.50,"id":"E1","severity":"high","grid":"锦江区"}"#
        );
        assert_eq!(
            patched(r#"{"specversion":"1.0","data":{"x":1.5}}"#).unwrap(),
            r#"{"x":1.5,"id":"E1","severity":"high","grid":"锦江区"}"#
        );
        assert_eq!(patched("{}").unwrap(), r#"{"id":"E1","severity":"high","grid":"锦江区"}"#);
    }

    #[test]
    fn what_the_parser_does_not_take_is_left_to_the_caller() {
        for raw in [r#"{"a":1,"a":2}"#, "[1]", r#"{"specversion":"1.0","data":3}"#, "{", r#"{"a":NaN}"#] {
            assert_eq!(patched(raw), None, "{raw}");
        }
    }
}
