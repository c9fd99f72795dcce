//! The scanner against the extraction it replaced: serde_json driven by the path trie through
//! `DeserializeSeed`, kept here as the reference. Both must accept exactly the same documents and
//! fill the same slots, on a corpus of tricky documents, every truncation and single-byte edit of
//! each, and random documents.

use super::{PathTrie, Slots};
use crate::rules::fields::FieldTable;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The previous extraction: wanted values parsed into `Value`s, everything else skipped by serde_json.
fn reference(trie: &PathTrie, bytes: &[u8]) -> Option<Vec<Option<Value>>> {
    let mut slots = vec![None; 16];
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    ReferenceSeed { node: trie, slots: &mut slots }.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(slots)
}

fn fill_reference(node: &PathTrie, value: &Value, slots: &mut [Option<Value>]) {
    if let Some(slot) = node.slot.and_then(|s| slots.get_mut(s)) {
        *slot = Some(value.clone());
    }
    for (key, child) in &node.children {
        let inner = match value {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        if let Some(inner) = inner {
            fill_reference(child, inner, slots);
        }
    }
}

struct ReferenceSeed<'t, 's> {
    node: &'t PathTrie,
    slots: &'s mut [Option<Value>],
}

impl<'de> DeserializeSeed<'de> for ReferenceSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.node.slot.is_some() {
            let value = Value::deserialize(deserializer)?;
            fill_reference(self.node, &value, self.slots);
            Ok(())
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for ReferenceSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.node.children.iter().find(|(k, _)| *k == key) {
                Some((_, child)) => map.next_value_seed(ReferenceSeed { node: child, slots: self.slots })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let value = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        fill_reference(self.node, &value, self.slots);
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

fn trie(paths: &[&str]) -> PathTrie {
    let mut fields = FieldTable::default();
    for path in paths {
        fields.slot(&crate::rules::fields::split_path(path));
    }
    PathTrie::new(&fields)
}

/// Paths read only through objects, and paths where a wanted value also has wanted children.
fn tries() -> Vec<PathTrie> {
    vec![
        trie(&["category", "payload.level", "payload.zone", "items.0", "名", "a.b.c", "n"]),
        trie(&["payload", "payload.level", "category", "items"]),
    ]
}

fn scanned(trie: &PathTrie, bytes: &[u8], slots: &mut Slots) -> Option<Vec<Option<Value>>> {
    trie.extract(bytes, slots, &mut Vec::new()).ok()?;
    Some((0..16).map(|slot| slots.get(slot).cloned()).collect())
}

fn assert_agrees(tries: &[PathTrie], bytes: &[u8], slots: &mut Slots) {
    for trie in tries {
        let expected = reference(trie, bytes);
        assert_eq!(scanned(trie, bytes, slots), expected, "document {:?}", String::from_utf8_lossy(bytes));
    }
}

const CORPUS: &[&str] = &[
    // Strings and keys longer than a word, escapes and multi-byte characters across words.
    r#"{"skip":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","category":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","payload":{"zone":"成华区成华区成华区成华区成华区成华区成华区成华区\u00e9dddddddddddddddddddddddddddddddddddddddddddddddddd"}}"#,
    r#"{"kkkkkkkkkkkkkkkkkkkk名kkkkkkkkk":1,"category":"x","payload":{"lllllllllllllllll":[],"level":2}}"#,
    r#"{"id":"01J0","category":"person_alert","time":"2026-05-01T00:00:00+08:00","location":{"lon":104.09478653606091,"lat":30.639482349642318,"crs":"gcj02","accuracy_m":null},"address":"成都市成华区府青路二段2号","grid_path":[],"attachments":[],"text":"燃气浓度超标","payload":{"level":6,"zone":"z1","ppm":17559},"status":null}"#,
    r#" { "category" : "fire" , "payload" : { "level" : -0 , "zone" : "z\u0031" } , "n" : 1.5e3 } "#,
    r#"{"categ\u006fry":"fire","payload":{"level":12345678901234567890,"zone":"\ud83d\ude00"}}"#,
    r#"{"category":"\ud800","payload":{"level":1}}"#,
    r#"{"other":"\ud800 \x","category":"fire"}"#,
    r#"{"other":"\ud800\u12","category":"fire"}"#,
    r#"{"n":1e400,"category":"x"}"#,
    r#"{"skipped":1e400,"n":-1E+2,"category":"x"}"#,
    r#"{"n":01}"#,
    r#"{"n":1.}"#,
    r#"{"n":-}"#,
    r#"{"n":0.5e-3,"payload":{"level":true,"zone":false}}"#,
    r#"{"x":{"y":[1,{"z":null,"w":[[],[{}]]}],"v":"\"\\\/\b\f\n\r\t"},"category":null}"#,
    r#"{"payload":{"level":1},"payload":{"zone":"z"}}"#,
    r#"{"payload":{"level":1,"deep":{"a":[1,2,{"b":"c"}]}},"payload":3}"#,
    r#"{"items":["a","b"],"a":{"b":{"c":[1]}}}"#,
    r#"{"items":{"0":"x","1":"y"},"a":{"b":{"c":{"d":1}}}}"#,
    r#"{"名":"值","名2":"\u540d"}"#,
    r#"[{"category":"fire"},2]"#,
    r#""category""#,
    "12",
    "null",
    "true",
    "{}",
    "[]",
    r#"{"a":[],"b":{},"c":[{}],"d":"","e":0,"f":-0.0,"category":""}"#,
    "{\"category\":\"tab\there\"}",
    "{\"skip\":\"new\nline\",\"category\":\"x\"}",
    "{\"category\":\"x\"}\n\t\r ",
    "{\"category\":\"x\"} {}",
];

#[test]
fn scanner_agrees_with_serde_json_on_the_corpus_and_every_edit_of_it() {
    let tries = tries();
    let mut slots = Slots::new(16);
    let replacements: &[u8] = b"\"\\{}[],:0a-.eE+ tnf\x00\x1f\x7f\x80\xbf\xe5\xff";
    for document in CORPUS {
        let bytes = document.as_bytes();
        assert_agrees(&tries, bytes, &mut slots);
        for end in 0..bytes.len() {
            assert_agrees(&tries, &bytes[..end], &mut slots);
        }
        for at in 0..bytes.len() {
            let mut edited = bytes.to_vec();
            edited.remove(at);
            assert_agrees(&tries, &edited, &mut slots);
            for &byte in replacements {
                let mut edited = bytes.to_vec();
                edited[at] = byte;
                assert_agrees(&tries, &edited, &mut slots);
            }
        }
    }
}

/// A small deterministic generator (xorshift) of JSON documents made of wanted and other keys.
struct Documents(u64);

impl Documents {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }

    fn value(&mut self, depth: u32, out: &mut String) {
        let kinds = if depth > 3 { 6 } else { 8 };
        match self.next(kinds) {
            0 => out.push_str(["null", "true", "false"][self.next(3) as usize]),
            1 => out.push_str(
                ["0", "-0", "7", "-12", "3.25", "1e5", "-2.5E-3", "18446744073709551616"][self.next(8) as usize],
            ),
            2..=5 => out.push_str(
                ["\"\"", "\"fire\"", "\"z1\"", "\"成华\"", "\"a\\\"b\"", "\"\\u00e9\"", "\"x\\/y\""]
                    [self.next(7) as usize],
            ),
            6 => {
                out.push('[');
                for i in 0..self.next(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.value(depth + 1, out);
                }
                out.push(']');
            }
            _ => self.object(depth + 1, out),
        }
    }

    fn object(&mut self, depth: u32, out: &mut String) {
        const KEYS: &[&str] =
            &["category", "payload", "level", "zone", "items", "0", "a", "b", "c", "名", "n", "other"];
        out.push('{');
        for i in 0..self.next(5) {
            if i > 0 {
                out.push(',');
            }
            out.push_str(if self.next(4) == 0 { " \"" } else { "\"" });
            out.push_str(KEYS[self.next(KEYS.len() as u64) as usize]);
            out.push_str("\":");
            self.value(depth, out);
        }
        out.push('}');
    }
}

#[test]
fn scanner_agrees_with_serde_json_on_random_documents() {
    let tries = tries();
    let mut slots = Slots::new(16);
    let mut documents = Documents(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let mut text = String::new();
        documents.object(0, &mut text);
        assert_agrees(&tries, text.as_bytes(), &mut slots);
    }
}

#[test]
fn skipped_values_nest_without_limit_and_wanted_ones_stop_at_serde_json_depth() {
    let tries = tries();
    let mut slots = Slots::new(16);
    let deep = format!("{{\"other\":{}{},\"category\":\"x\"}}", "[".repeat(100_000), "]".repeat(100_000));
    assert_agrees(&tries, deep.as_bytes(), &mut slots);
    for depth in (124..=130).chain([1_000]) {
        let wanted = format!("{{\"items\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_agrees(&tries, wanted.as_bytes(), &mut slots);
        let nested = format!("{{\"payload\":{{\"level\":{}{}}}}}", "[".repeat(depth), "]".repeat(depth));
        assert_agrees(&tries, nested.as_bytes(), &mut slots);
    }
}

/// The first byte either function marks must be the first byte that is a stop, whatever follows.
#[test]
fn string_stops_find_exactly_the_first_stop_of_a_word() {
    let string_stop = |byte: u8| byte == b'"' || byte == b'\\' || byte < 0x20;
    let key_stop = |byte: u8| string_stop(byte) || byte >= 0x80;
    let first = |marks: u64| (marks != 0).then(|| marks.trailing_zeros() as usize / 8);
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            for (i, j) in [(0, 1), (2, 5), (6, 7), (3, 3)] {
                let mut bytes = [b'x'; 8];
                bytes[j] = b;
                bytes[i] = a;
                let word = u64::from_le_bytes(bytes);
                let expected = |stop: &dyn Fn(u8) -> bool| bytes.iter().position(|&byte| stop(byte));
                assert_eq!(first(super::string_stops(word)), expected(&string_stop), "{bytes:?}");
                assert_eq!(first(super::ascii_key_stops(word)), expected(&key_stop), "{bytes:?}");
            }
        }
    }
}
