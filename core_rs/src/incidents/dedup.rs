//! Exact dedup: an idempotency key seen within `window_s` seconds is a duplicate.
//!
//! Keys are stored as their 128-bit xxh3 hash (16 bytes, whatever the key's length); two different keys
//! collide with probability about n²/2¹²⁹, negligible for any n that fits in memory.
//!
//! Rules (the Python reference in tests/reference_incidents.py implements exactly these):
//! - the watermark is the latest time seen; a key recorded before `watermark - window_s` expires;
//! - a key is a duplicate when it is live and `|time - recorded time| <= window_s`; duplicates change nothing;
//! - otherwise the key is (re-)recorded at `time` and becomes the newest; when more than `max_keys` are live
//!   the oldest-recorded one is evicted (counted in `evicted`).

use std::collections::VecDeque;

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::snapshot::{self, check_follows, Component, Image};
use super::{config_error, IncidentError};

/// A key's fingerprint as stored.
pub type KeyHash = u128;

/// The fingerprint of an idempotency key (e.g. `source + "\x1f" + source_event_id`, or a content hash).
pub fn idempotency_key(key: &[u8]) -> KeyHash {
    xxh3_128(key)
}

/// Counters reported by [`Deduper::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DedupStats {
    pub live_keys: u64,
    pub evicted: u64,
    pub expired: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Change {
    Record(KeyHash, f64),
    Forget(KeyHash),
}

#[derive(Serialize, Deserialize)]
struct FullState {
    window_s: f64,
    max_keys: u64,
    watermark: f64,
    counters: DedupStats,
    /// Live keys, oldest record first.
    records: Vec<(KeyHash, f64)>,
}

#[derive(Serialize, Deserialize)]
struct Changes {
    watermark: f64,
    counters: DedupStats,
    log: Vec<Change>,
}

type DedupImage = Image<FullState, Changes>;

/// Exact dedup with a time window and a bound on live keys.
pub struct Deduper {
    window_s: f64,
    max_keys: usize,
    watermark: f64,
    /// Live key → (recorded time, record number).
    live: HashMap<KeyHash, (f64, u64)>,
    /// (key, record number, time) in the order recorded. An entry whose number differs from `live[key]` is
    /// stale (the key was re-recorded since) and is skipped when it reaches the front.
    order: VecDeque<(KeyHash, u64, f64)>,
    /// Stale entries in `order`; while there are none the front entry is known live without a map lookup.
    stale: usize,
    next_record: u64,
    counters: DedupStats,
    generation: u64,
    /// Changes since the last snapshot; `None` before the first snapshot (nobody is taking deltas, so
    /// nothing is logged) and once the log outgrew its limit: then the next delta is a full snapshot.
    journal: Option<Vec<Change>>,
}

impl Deduper {
    pub fn new(window_s: f64, max_keys: u64) -> Result<Self, IncidentError> {
        if !window_s.is_finite() || window_s < 0.0 {
            return Err(config_error(
                "window_s",
                format!("must be a finite number >= 0, got {window_s}"),
            ));
        }
        let max_keys = usize::try_from(max_keys)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| config_error("max_keys", format!("must be >= 1, got {max_keys}")))?;
        Ok(Self {
            window_s,
            max_keys,
            watermark: f64::NEG_INFINITY,
            live: HashMap::new(),
            order: VecDeque::new(),
            stale: 0,
            next_record: 0,
            counters: DedupStats::default(),
            generation: 0,
            journal: None,
        })
    }

    pub fn window_s(&self) -> f64 {
        self.window_s
    }

    pub fn max_keys(&self) -> u64 {
        self.max_keys as u64
    }

    pub fn stats(&self) -> DedupStats {
        DedupStats {
            live_keys: self.live.len() as u64,
            ..self.counters
        }
    }

    /// Checks a batch; `out[i]` is true when `keys[i]` is a duplicate. New keys are recorded.
    /// The batch is validated first: on error nothing was recorded.
    pub fn check_many(
        &mut self,
        keys: &[KeyHash],
        times: &[f64],
    ) -> Result<Vec<bool>, IncidentError> {
        if keys.len() != times.len() {
            return Err(IncidentError::InvalidEvent {
                index: keys.len().min(times.len()),
                reason: format!("{} keys but {} times", keys.len(), times.len()),
            });
        }
        if let Some(index) = times.iter().position(|t| !t.is_finite()) {
            return Err(IncidentError::InvalidEvent {
                index,
                reason: "time is not a finite number".into(),
            });
        }
        Ok(keys
            .iter()
            .zip(times)
            .map(|(&key, &time)| self.check_one(key, time))
            .collect())
    }

    /// One hash-table probe per key: the entry found (or the free place for it) is used for the answer and
    /// for recording.
    fn check_one(&mut self, key: KeyHash, time: f64) -> bool {
        if time > self.watermark {
            self.watermark = time;
            self.expire_front();
        }
        let number = self.next_record;
        match self.live.entry(key) {
            Entry::Occupied(entry) if (time - entry.get().0).abs() <= self.window_s => {
                self.counters.duplicates += 1;
                return true;
            }
            Entry::Occupied(mut entry) => {
                entry.insert((time, number));
                self.stale += 1;
            }
            Entry::Vacant(entry) => {
                entry.insert((time, number));
            }
        }
        self.push_newest(key, time);
        self.after_recording(key, time);
        false
    }

    /// Logs a new record, evicts the oldest past `max_keys` and drops stale order entries now and then.
    fn after_recording(&mut self, key: KeyHash, time: f64) {
        self.log(Change::Record(key, time));
        if self.live.len() > self.max_keys {
            self.evict_oldest();
        }
        if self.stale > self.live.len() + 1024 {
            let live = &self.live;
            self.order.retain(|(key, number, _)| {
                live.get(key)
                    .is_some_and(|&(_, current)| current == *number)
            });
            self.stale = 0;
        }
    }

    fn insert_newest(&mut self, key: KeyHash, time: f64) {
        if self.live.insert(key, (time, self.next_record)).is_some() {
            self.stale += 1;
        }
        self.push_newest(key, time);
    }

    /// Appends the record numbered `next_record` (already in `live`) to the order.
    fn push_newest(&mut self, key: KeyHash, time: f64) {
        self.order.push_back((key, self.next_record, time));
        self.next_record += 1;
    }

    /// The oldest live record, after dropping stale entries from the front.
    fn oldest_live(&mut self) -> Option<(KeyHash, f64)> {
        while let Some(&(key, number, time)) = self.order.front() {
            if self.stale == 0
                || self
                    .live
                    .get(&key)
                    .is_some_and(|&(_, current)| current == number)
            {
                return Some((key, time));
            }
            self.order.pop_front();
            self.stale -= 1;
        }
        None
    }

    fn expire_front(&mut self) {
        let horizon = self.watermark - self.window_s;
        while let Some((key, time)) = self.oldest_live() {
            if time >= horizon {
                break;
            }
            self.forget_front(key);
            self.counters.expired += 1;
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((key, _)) = self.oldest_live() {
            self.forget_front(key);
            self.counters.evicted += 1;
        }
    }

    fn forget_front(&mut self, key: KeyHash) {
        self.order.pop_front();
        self.live.remove(&key);
        self.log(Change::Forget(key));
    }

    fn log(&mut self, change: Change) {
        let limit = self.max_keys.max(1 << 16);
        if let Some(journal) = &mut self.journal {
            if journal.len() < limit {
                journal.push(change);
            } else {
                self.journal = None;
            }
        }
    }

    /// The whole state as bytes (about 27 bytes per live key). Starts a new generation for deltas.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, IncidentError> {
        self.generation += 1;
        self.journal = Some(Vec::new());
        let records: Vec<(KeyHash, f64)> = self
            .order
            .iter()
            .filter(|&&(key, number, _)| {
                self.live
                    .get(&key)
                    .is_some_and(|&(_, current)| current == number)
            })
            .map(|&(key, _, time)| (key, time))
            .collect();
        let state = FullState {
            window_s: self.window_s,
            max_keys: self.max_keys as u64,
            watermark: self.watermark,
            counters: self.counters,
            records,
        };
        snapshot::seal(
            Component::Deduper,
            &DedupImage::Full {
                generation: self.generation,
                state,
            },
        )
    }

    /// The changes since the last snapshot or delta (cost proportional to the keys recorded and forgotten
    /// since then). A full snapshot when there is no earlier snapshot or the change log outgrew
    /// `max(max_keys, 65536)` entries.
    pub fn snapshot_delta(&mut self) -> Result<Vec<u8>, IncidentError> {
        let Some(log) = self.journal.replace(Vec::new()) else {
            return self.snapshot();
        };
        let follows = self.generation;
        self.generation += 1;
        let changes = Changes {
            watermark: self.watermark,
            counters: self.counters,
            log,
        };
        snapshot::seal(
            Component::Deduper,
            &DedupImage::Delta {
                follows,
                generation: self.generation,
                changes,
            },
        )
    }

    /// Rebuilds a deduper from a full snapshot.
    pub fn restore(bytes: &[u8]) -> Result<Self, IncidentError> {
        match snapshot::open::<DedupImage>(Component::Deduper, bytes)? {
            DedupImage::Full { generation, state } => Self::from_full(generation, state),
            DedupImage::Delta { .. } => Err(IncidentError::InvalidSnapshot(
                "these bytes are a delta; restore from a full snapshot, then apply the deltas"
                    .into(),
            )),
        }
    }

    /// Applies a delta (or a full snapshot, which replaces the state) taken after the current generation.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<(), IncidentError> {
        match snapshot::open::<DedupImage>(Component::Deduper, bytes)? {
            DedupImage::Full { generation, state } => *self = Self::from_full(generation, state)?,
            DedupImage::Delta {
                follows,
                generation,
                changes,
            } => {
                check_follows(self.generation, follows)?;
                for change in changes.log {
                    self.replay(change)?;
                }
                self.watermark = changes.watermark;
                self.counters = changes.counters;
                self.generation = generation;
                self.journal = Some(Vec::new());
            }
        }
        Ok(())
    }

    /// Replays one logged change. Forgetting always happens to the oldest live key, so replaying it that
    /// way keeps the record order identical to the original's.
    fn replay(&mut self, change: Change) -> Result<(), IncidentError> {
        match change {
            Change::Record(key, time) => self.insert_newest(key, time),
            Change::Forget(key) => match self.oldest_live() {
                Some((oldest, _)) if oldest == key => {
                    self.order.pop_front();
                    self.live.remove(&key);
                }
                _ => {
                    return Err(IncidentError::InvalidSnapshot(
                        "the delta forgets a key that is not the oldest live one: it was not taken from this state"
                            .into(),
                    ))
                }
            },
        }
        Ok(())
    }

    fn from_full(generation: u64, state: FullState) -> Result<Self, IncidentError> {
        let mut deduper = Self::new(state.window_s, state.max_keys).map_err(|e| {
            IncidentError::InvalidSnapshot(format!("settings in the snapshot: {e}"))
        })?;
        deduper.watermark = state.watermark;
        deduper.counters = state.counters;
        deduper.generation = generation;
        deduper.live.reserve(state.records.len());
        for (key, time) in state.records {
            if !time.is_finite() {
                return Err(IncidentError::InvalidSnapshot(
                    "a record in the snapshot has no finite time".into(),
                ));
            }
            deduper.insert_newest(key, time);
        }
        Ok(deduper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<KeyHash> {
        names
            .iter()
            .map(|n| idempotency_key(n.as_bytes()))
            .collect()
    }

    #[test]
    fn repeats_within_the_window_are_duplicates() {
        let mut d = Deduper::new(10.0, 100).unwrap();
        let out = d
            .check_many(&keys(&["a", "b", "a", "a"]), &[0.0, 1.0, 5.0, 20.0])
            .unwrap();
        assert_eq!(out, vec![false, false, true, false]);
        assert_eq!(d.stats().duplicates, 1);
    }

    #[test]
    fn oldest_key_is_evicted_first() {
        let mut d = Deduper::new(1e9, 2).unwrap();
        let out = d
            .check_many(
                &keys(&["a", "b", "c", "b", "a"]),
                &[0.0, 1.0, 2.0, 3.0, 4.0],
            )
            .unwrap();
        assert_eq!(out, vec![false, false, false, true, false]);
        assert_eq!(d.stats().evicted, 2);
        assert_eq!(d.stats().live_keys, 2);
    }

    #[test]
    fn full_and_delta_snapshots_restore_the_same_answers() {
        let mut d = Deduper::new(5.0, 3).unwrap();
        d.check_many(&keys(&["a", "b"]), &[0.0, 1.0]).unwrap();
        let full = d.snapshot().unwrap();
        d.check_many(&keys(&["c", "d", "e"]), &[2.0, 3.0, 9.0])
            .unwrap();
        let delta = d.snapshot_delta().unwrap();
        let mut restored = Deduper::restore(&full).unwrap();
        restored.apply(&delta).unwrap();
        let probe = keys(&["a", "c", "d", "e", "f"]);
        let times = [9.5, 9.5, 9.5, 9.5, 9.5];
        assert_eq!(
            restored.check_many(&probe, &times).unwrap(),
            d.check_many(&probe, &times).unwrap()
        );
        assert_eq!(restored.stats(), d.stats());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(Deduper::new(f64::NAN, 1).is_err());
        assert!(Deduper::new(-1.0, 1).is_err());
        assert!(Deduper::new(1.0, 0).is_err());
        let mut d = Deduper::new(1.0, 1).unwrap();
        assert!(d.check_many(&keys(&["a"]), &[f64::NAN]).is_err());
        assert!(d.check_many(&keys(&["a"]), &[]).is_err());
        assert!(Deduper::restore(b"garbage").is_err());
        let mut snap = d.snapshot().unwrap();
        snap.truncate(snap.len() - 1);
        assert!(Deduper::restore(&snap).is_err());
        let delta = d.snapshot_delta().unwrap();
        assert!(
            d.apply(&delta).is_err(),
            "a delta applied twice must be refused"
        );
    }
}
