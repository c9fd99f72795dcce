//! The decoder fuzzed with proptest: arbitrary bytes, mutations of the seed corpus (`core_rs/fuzz/ingest/`,
//! hostile and valid messages; proptest keeps any failing case in `proptest-regressions/`) and generated JSON
//! documents. Whatever a message holds, decoding never panics, every message ends accepted or undecided, and a
//! valid event after it is still accepted. `PROPTEST_CASES` runs more cases (CI: as many as its time allows).

use super::*;
use proptest::prelude::*;
use std::path::Path;

const SCHEMA: &str = r##"{
    "type": "object", "additionalProperties": false, "required": ["source", "category", "time"],
    "properties": {
        "source": {"type": "string", "pattern": "^[a-z0-9_]+$", "maxLength": 64},
        "category": {"type": "string", "enum": ["fire", "gas_leak"]},
        "severity": {"anyOf": [{"type": "string", "enum": ["low", "high"]}, {"type": "null"}]},
        "time": {"type": "string", "format": "date-time"},
        "text": {"anyOf": [{"type": "string", "maxLength": 8192}, {"type": "null"}], "default": null},
        "location": {"anyOf": [{"$ref": "#/$defs/Location"}, {"type": "null"}], "default": null},
        "payload": {"type": "object", "additionalProperties": true, "default": {}}
    },
    "$defs": {"Location": {"type": "object", "additionalProperties": false, "required": ["lon", "lat"],
        "properties": {"lon": {"type": "number", "minimum": -180, "maximum": 180},
                       "lat": {"type": "number", "minimum": -90, "maximum": 90},
                       "crs": {"type": "string", "enum": ["wgs84", "gcj02"], "default": "wgs84"}}}}
}"##;
const VALID: &[u8] = br#"{"source":"iot","category":"fire","time":"2026-05-01T08:00:00Z"}"#;

fn corpus() -> Vec<Vec<u8>> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/ingest");
    let mut seeds: Vec<_> =
        std::fs::read_dir(folder).expect("the seed corpus").map(|entry| entry.unwrap().path()).collect();
    seeds.sort();
    seeds.into_iter().map(|path| std::fs::read(path).unwrap()).collect()
}

/// Decodes `message` then a valid event, as one batch; checks what must hold whatever `message` is.
fn decodes_cleanly(message: &[u8]) {
    let shape = Shape::compile(SCHEMA).unwrap();
    let window = TimeWindow { max_ahead_s: 86_400.0, max_age_s: 365.0 * 86_400.0, accept_out_of_range: false };
    let rules = EventRules {
        shape: &shape,
        source_field: "source",
        time_field: "time",
        event_type: "cityhub.event",
        max_bytes: 1 << 20,
        window,
    };
    let messages =
        [message, VALID].map(|data| IngestMessage { data, subject: "cityhub.ingest.iot", received: 1_777_593_600.0 });
    let decoded = decode_batch(&messages, &rules).unwrap();
    let mut positions = [decoded.accepted.clone(), decoded.undecided.clone()].concat();
    positions.sort_unstable();
    assert_eq!(positions, [0, 1]);
    assert_eq!(decoded.accepted.last(), Some(&1), "the valid event after it is accepted");
    assert!(decoded.columns.iter().all(|column| column.values.len() == decoded.accepted.len()));
    if let Some(document) = patched_document(message, &[("id", "E")]) {
        assert!(serde_json::from_slice::<serde::de::IgnoredAny>(&document).is_ok(), "a patched document is JSON");
        if decoded.accepted.first() == Some(&0) {
            assert!(Json::parse(&document).is_ok(), "the patched document of an accepted event repeats no name");
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

fn mutated(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for mutation in mutations {
        let at = |i: usize| if bytes.is_empty() { 0 } else { i % bytes.len() };
        match mutation {
            Mutation::Flip(i, bits) => {
                if !bytes.is_empty() {
                    let i = at(*i);
                    bytes[i] ^= bits;
                }
            }
            Mutation::Insert(i, inserted) => {
                let i = at(*i);
                bytes.splice(i..i, inserted.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let i = at(*i);
                bytes.drain(i..(i + n).min(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(at(*i)),
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let tokens = prop::sample::select(vec![
        b"{".to_vec(),
        b"}".to_vec(),
        b"[".to_vec(),
        b"\"".to_vec(),
        b"\\u".to_vec(),
        b"NaN".to_vec(),
        b"1e999".to_vec(),
        b"-0".to_vec(),
        b"\xff".to_vec(),
        b"\xe5\xad".to_vec(),
        b",\"source\":\"iot\"".to_vec(),
        b"null".to_vec(),
        b"\"2026-05-01T08:00:00+08:00\"".to_vec(),
        b"18446744073709551616".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, bits)| Mutation::Flip(i, bits)),
        (any::<usize>(), prop_oneof![tokens, prop::collection::vec(any::<u8>(), 1..8)])
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// JSON values of any shape, as text (numbers at the edges of i64 and f64 included).
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        Just("9223372036854775808".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("1e308".to_string()),
        ".{0,12}".prop_map(|s| format!("{s:?}")),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("source".to_string()),
                        Just("time".to_string()),
                        Just("lon".to_string()),
                        ".{0,6}".prop_map(|s| s)
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|members| format!(
                "{{{}}}",
                members.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(",")
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(message in prop::collection::vec(any::<u8>(), 0..2048)) {
        decodes_cleanly(&message);
    }

    #[test]
    fn mutated_corpus(seed in prop::sample::select(corpus()), mutations in prop::collection::vec(mutation(), 1..6)) {
        decodes_cleanly(&mutated(&seed, &mutations));
    }

    #[test]
    fn generated_documents(fields in prop::collection::vec((prop::sample::select(vec![
        "source", "category", "severity", "time", "text", "location", "payload", "extra"]), json_text()), 0..8)) {
        let members: Vec<String> = fields.iter().map(|(name, value)| format!("{name:?}:{value}")).collect();
        decodes_cleanly(format!("{{{}}}", members.join(",")).as_bytes());
    }
}

#[test]
fn the_corpus_and_the_largest_hostile_messages_decode_cleanly() {
    for seed in corpus() {
        decodes_cleanly(&seed);
    }
    let deep = format!(
        r#"{{"source":"iot","category":"fire","time":"2026-05-01T08:00:00Z","payload":{{"a":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    decodes_cleanly(deep.as_bytes());
    let large = format!(
        r#"{{"source":"iot","category":"fire","time":"2026-05-01T08:00:00Z","text":"{}"}}"#,
        "x".repeat(900_000)
    );
    decodes_cleanly(large.as_bytes());
}
