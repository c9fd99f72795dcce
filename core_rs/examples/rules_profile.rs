//! Profiling harness for rule matching: the 1,000 rules of benchmarks/bench_rules.py against events
//! read from a file (one JSON document per line), matched in one batch `rounds` times. Instruction
//! counts under `valgrind --tool=callgrind` are repeatable where wall-clock times are not; the
//! difference between 3 rounds and 1 is the matching alone.
//!
//! The benchmark's events, written with:
//! `python -c 'from benchmarks.bench_rules import events; open("events.jsonl", "wb").write(b"\n".join(events()[0]))'`
//! Usage: `cargo run --release --example rules_profile -- events.jsonl [ROUNDS] [first]`

use cityhub_core::rules::{Condition, RuleSet, RuleSpec};

const CATEGORIES: &[&str] = &[
    "gas_leak",
    "fire",
    "smoke",
    "water_leak",
    "flooding",
    "manhole_cover",
    "hydrant_pressure",
    "elevator_fault",
    "door_alarm",
    "high_altitude_throwing",
    "person_alert",
    "billboard_tilt",
    "device_offline",
    "elder_sos",
    "elder_fall",
    "elder_vitals",
    "elder_inactivity",
    "bin_full",
    "station_fault",
    "noise",
    "road_damage",
    "street_light",
    "sanitation",
    "illegal_parking",
    "tree",
    "environment",
    "area_warning",
    "complaint",
    "other",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&args[1]).expect("events file");
    let rounds: usize = args.get(2).map_or(1, |r| r.parse().expect("rounds"));
    let first_only = args.get(3).is_some_and(|a| a == "first");
    let specs: Vec<RuleSpec> = (0..1000)
        .map(|i| {
            let category = CATEGORIES[i % CATEGORIES.len()];
            let level = (i * 37) % 100;
            let zone = (i / CATEGORIES.len()) % 10;
            let when = format!(r#"category == "{category}" && payload.level >= {level} && payload.zone == "z{zone}""#);
            RuleSpec { id: format!("r{i}"), priority: (i % 7) as i64, condition: Condition::Expression(when) }
        })
        .collect();
    let rules = RuleSet::compile(&specs, "Asia/Shanghai").expect("rules compile");
    let events: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
    let mut total = 0;
    for _ in 0..rounds {
        total += rules.match_batch(&events, first_only).expect("events are JSON").rules.len();
    }
    println!("{} events x {rounds} rounds: {total} matches", events.len());
}
