//! The workloads of benchmarks/bench_incidents.py without Python, for profiling the core:
//!
//! ```text
//! cargo build --release --example incidents_workload --manifest-path core_rs/Cargo.toml
//! valgrind --tool=callgrind target/release/examples/incidents_workload merge 200000
//! target/release/examples/incidents_workload dedup 1000000
//! ```
//!
//! `merge N`: N located events over one day in a 30 × 30 km area (70 % anywhere, 30 % near one of 2,000 hot
//! spots), merged in batches of 10,000 with an expire per batch. `dedup N`: N idempotency keys, 10 % of them
//! re-deliveries of a recent key, hashed and staged into one batch as the Python binding does. Prints the wall time of the core part and a checksum
//! of the answers, so two builds can be compared for speed and sameness.

use std::time::Instant;

use cityhub_core::incidents::{idempotency_key, CategoryLimits, Deduper, IncidentMerger, MergeEvent, MergePolicy};

const DAY_S: f64 = 86_400.0;
const BATCH: usize = 10_000;
const METRE_LAT: f64 = 1.0 / 111_195.0;
const CATEGORIES: [&str; 8] =
    ["gas_leak", "smell_gas", "water_leak", "flooding", "noise", "road_damage", "fire", "sanitation"];

/// splitmix64: a small deterministic generator, enough for a synthetic workload.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn gauss(&mut self, sigma: f64) -> f64 {
        let u = self.uniform(f64::MIN_POSITIVE, 1.0);
        let v = self.uniform(0.0, 1.0);
        sigma * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn policy() -> MergePolicy {
    MergePolicy::new(
        vec![
            ("gas".into(), vec!["gas_leak".into(), "smell_gas".into()]),
            ("water".into(), vec!["water_leak".into(), "flooding".into()]),
        ],
        CategoryLimits { distance_m: 100.0, window_s: 3_600.0 },
        vec![("gas_leak".into(), CategoryLimits { distance_m: 200.0, window_s: 7_200.0 })],
        0.7,
        None,
    )
    .expect("the benchmark policy is valid")
}

struct CityDay {
    ids: Vec<String>,
    times: Vec<f64>,
    categories: Vec<&'static str>,
    points: Vec<(f64, f64)>,
}

fn city_day(count: usize) -> CityDay {
    let (base_lon, base_lat, side_m) = (104.0665_f64, 30.5728_f64, 30_000.0);
    let lon_scale = METRE_LAT / base_lat.to_radians().cos();
    let mut rng = Rng(7);
    let hot_spots: Vec<(f64, f64)> = (0..2_000).map(|_| (rng.uniform(0.0, side_m), rng.uniform(0.0, side_m))).collect();
    let mut times: Vec<f64> = (0..count).map(|_| rng.uniform(0.0, DAY_S)).collect();
    times.sort_by(f64::total_cmp);
    let mut day = CityDay {
        ids: Vec::with_capacity(count),
        times,
        categories: Vec::with_capacity(count),
        points: Vec::with_capacity(count),
    };
    for i in 0..count {
        let (x, y) = if rng.uniform(0.0, 1.0) < 0.3 {
            let (x, y) = hot_spots[rng.below(hot_spots.len())];
            (x + rng.gauss(40.0), y + rng.gauss(40.0))
        } else {
            (rng.uniform(0.0, side_m), rng.uniform(0.0, side_m))
        };
        day.ids.push(format!("evt-{i:07}"));
        day.categories.push(CATEGORIES[rng.below(CATEGORIES.len())]);
        day.points.push((base_lon + x * lon_scale, base_lat + y * METRE_LAT));
    }
    day
}

fn merge(count: usize) {
    let day = city_day(count);
    let started = Instant::now();
    let mut merger = IncidentMerger::new(policy());
    let (mut merged, mut closed, mut checksum) = (0usize, 0usize, 0u64);
    for start in (0..count).step_by(BATCH) {
        let end = (start + BATCH).min(count);
        closed += merger.expire(day.times[start]).expect("finite time").len();
        let events: Vec<MergeEvent<'_>> = (start..end)
            .map(|i| MergeEvent {
                event_id: &day.ids[i],
                time: day.times[i],
                category: day.categories[i],
                location: Some(day.points[i]),
                address: None,
                text: None,
            })
            .collect();
        for outcome in merger.add_many(&events).expect("valid events") {
            merged += usize::from(!outcome.is_new);
            let id = merger.incident_id(&outcome).map_or(&[][..], |id| id.as_bytes());
            checksum = checksum.rotate_left(5) ^ idempotency_key(id) as u64;
            checksum ^= u64::from(outcome.report_count);
        }
    }
    println!(
        "merge {count}: {:.1} ms, {merged} merged, {closed} closed, checksum {checksum:016x}",
        started.elapsed().as_secs_f64() * 1e3
    );
}

fn dedup(count: usize) {
    let mut rng = Rng(11);
    let mut keys: Vec<String> = Vec::with_capacity(count);
    for i in 0..count {
        if i > 0 && rng.uniform(0.0, 1.0) < 0.1 {
            let back = 1 + rng.below(5_000);
            keys.push(keys[i.saturating_sub(back)].clone());
        } else {
            keys.push(format!("hotline\x1fWO-2026-{i:08}"));
        }
    }
    let times: Vec<f64> = (0..count).map(|i| i as f64 * DAY_S / count as f64).collect();
    let started = Instant::now();
    let mut deduper = Deduper::new(DAY_S, 1_000_000).expect("valid settings");
    let mut batch = deduper.batch(count);
    keys.iter().for_each(|key| batch.push_key(idempotency_key(key.as_bytes())));
    times.iter().for_each(|&time| batch.push_time(time));
    let duplicates = batch.check().expect("valid keys");
    println!(
        "dedup {count}: {:.1} ms, {} duplicates",
        started.elapsed().as_secs_f64() * 1e3,
        duplicates.iter().filter(|&&d| d).count()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    match args.get(1).map(String::as_str) {
        Some("merge") => merge(count),
        Some("dedup") => dedup(count),
        _ => eprintln!("usage: incidents_workload merge|dedup [count]"),
    }
}
