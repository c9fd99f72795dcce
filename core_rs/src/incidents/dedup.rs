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

use std::hash::BuildHasher;

use allocator_api2::vec::Vec as PagedVec;
use hashbrown::DefaultHashBuilder;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::key_table::{KeyTable, Probe};
use super::snapshot::{self, check_follows, Component, Image};
use super::{config_error, IncidentError};
use crate::large_pages::LargePages;

/// The most live keys a deduper may hold, and the most keys in one batch. The table keeps record numbers in
/// 32 bits, exact while fewer than 2³² records are stored at once: between batches at most
/// 3 × (max_keys + 1) + 2,048 (live, stale and dead ones, see [`Deduper::compact`]), and a batch adds at most
/// one record per key.
const MAX_KEYS: u64 = 1 << 30;
const MAX_BATCH: usize = 1 << 29;

/// Stale records (and removed ones at the front) are dropped once they outnumber the live keys by this many.
const SLACK: usize = 1024;

/// How many keys ahead a batch prefetches table slots: enough to cover a memory access's latency with the
/// work on the keys in between.
const PREFETCH_AHEAD: u64 = 32;

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

/// One record, in the order recorded. The key is two u64 halves so that a record takes 24 bytes (a u128
/// field is 16-aligned and would pad it to 32).
#[derive(Clone, Copy)]
struct Record {
    key: [u64; 2],
    /// NaN once the key was re-recorded: the record is stale and skipped when it reaches the front.
    time: f64,
}

impl Record {
    fn new(key: KeyHash, time: f64) -> Self {
        Self { key: [key as u64, (key >> 64) as u64], time }
    }

    fn key(&self) -> KeyHash {
        u128::from(self.key[0]) | u128::from(self.key[1]) << 64
    }

    fn is_stale(&self) -> bool {
        self.time.is_nan()
    }
}

type Records = PagedVec<Record, LargePages>;

/// A record number as the table keeps it: its low 32 bits.
type Slot = u32;

fn slot_of(number: u64) -> Slot {
    number as Slot
}

/// Where the record a table slot names is; `first` is the number of `records[0]`, and every live record lies
/// within 2³² records of it (see [`MAX_KEYS`]).
fn index_in_slot(first: u64, slot: Slot) -> usize {
    slot.wrapping_sub(slot_of(first)) as usize
}

/// The table hash of a key: its low half mixed with the deduper's random seed, so that keys chosen by
/// outsiders (the fingerprint is unseeded, to keep snapshots portable) cannot be aimed at one bucket.
fn table_hash(seed: &DefaultHashBuilder, key: KeyHash) -> u64 {
    seed.hash_one(key as u64)
}

/// Exact dedup with a time window and a bound on live keys.
///
/// The records live once, in recording order, in `records`; the table holds only each live key's record
/// number and a 32-bit tag of its hash (8 bytes a slot), so the part of the state that is probed at random
/// stays small, and a batch prefetches each key's slot a few keys ahead. Both arrays ask for huge pages once
/// they reach 2 MiB.
pub struct Deduper {
    window_s: f64,
    max_keys: usize,
    watermark: f64,
    /// Live keys: the number of the key's current record.
    live: KeyTable,
    seed: DefaultHashBuilder,
    /// Records numbered `first_record..`, oldest first: removed ones before `front`, then live and stale ones
    /// before `next_record`, then a batch being staged.
    records: Records,
    first_record: u64,
    front: u64,
    next_record: u64,
    /// Stale records in `front..next_record`.
    stale: usize,
    counters: DedupStats,
    generation: u64,
    /// Changes since the last snapshot; `None` before the first snapshot (nobody is taking deltas, so
    /// nothing is logged) and once the log outgrew its limit: then the next delta is a full snapshot.
    journal: Option<Vec<Change>>,
}

impl Deduper {
    pub fn new(window_s: f64, max_keys: u64) -> Result<Self, IncidentError> {
        if !window_s.is_finite() || window_s < 0.0 {
            return Err(config_error("window_s", format!("must be a finite number >= 0, got {window_s}")));
        }
        let max_keys =
            usize::try_from(max_keys).ok().filter(|&n| (1..=MAX_KEYS as usize).contains(&n)).ok_or_else(|| {
                config_error("max_keys", format!("must be between 1 and 2**30 ({MAX_KEYS}), got {max_keys}"))
            })?;
        Ok(Self {
            window_s,
            max_keys,
            watermark: f64::NEG_INFINITY,
            live: KeyTable::with_capacity(0),
            seed: DefaultHashBuilder::default(),
            records: PagedVec::new_in(LargePages),
            first_record: 0,
            front: 0,
            next_record: 0,
            stale: 0,
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
        DedupStats { live_keys: self.live.len() as u64, ..self.counters }
    }

    /// Checks a batch; `out[i]` is true when `keys[i]` is a duplicate. New keys are recorded.
    /// The batch is validated first: on error nothing was recorded.
    pub fn check_many(&mut self, keys: &[KeyHash], times: &[f64]) -> Result<Vec<bool>, IncidentError> {
        let mut batch = self.batch(keys.len());
        keys.iter().for_each(|&key| batch.push_key(key));
        times.iter().for_each(|&time| batch.push_time(time));
        batch.check()
    }

    /// Starts a batch of about `size` keys, staged in the spare room after the records: a large batch needs
    /// no buffers of its own, and each key checked makes room for the record it may become.
    pub fn batch(&mut self, size: usize) -> DedupBatch<'_> {
        self.records.reserve(size);
        DedupBatch { deduper: self, keys: 0, times: 0, first_bad_time: None }
    }

    fn record(&self, number: u64) -> &Record {
        &self.records[(number - self.first_record) as usize]
    }

    /// Checks the `count` staged records that follow the last record, in order. The staged record `j` is
    /// read at number `staged_from + j`; what it becomes is written at `next_record`, never after it.
    fn check_staged(&mut self, count: usize) -> Vec<bool> {
        self.reserve_table(count);
        let staged_from = self.next_record;
        let staged_end = staged_from + count as u64;
        let out = (staged_from..staged_end)
            .map(|number| {
                self.prefetch_ahead(&self.live, number, staged_end);
                let staged = *self.record(number);
                self.check_one(staged.key(), staged.time)
            })
            .collect();
        self.records.truncate((self.next_record - self.first_record) as usize);
        self.compact();
        out
    }

    /// Room in the table for `count` more keys, so that it never fills in the middle of a batch. Never more
    /// live keys than `max_keys` (+1 before an eviction). A table that must grow at least doubles and is
    /// rebuilt from the records in order (a rehash would read every live record at random).
    fn reserve_table(&mut self, count: usize) {
        let room = (self.max_keys + 1).saturating_sub(self.live.len());
        let needed = self.live.len() + count.min(room);
        if needed > self.live.capacity() {
            let doubled = (2 * self.live.capacity()).min(self.max_keys + 1);
            self.rebuild_table(needed.max(doubled));
        }
    }

    /// A new table of `capacity` holding every live record between `front` and `next_record`.
    fn rebuild_table(&mut self, capacity: usize) {
        let mut live = KeyTable::with_capacity(capacity);
        for number in self.front..self.next_record {
            self.prefetch_ahead(&live, number, self.next_record);
            let record = self.record(number);
            if !record.is_stale() {
                live.insert_new(table_hash(&self.seed, record.key()), slot_of(number));
            }
        }
        self.live = live;
    }

    /// Prefetches the slot in `table` where the probe for record `number + PREFETCH_AHEAD` starts, if that
    /// record is before `end`.
    fn prefetch_ahead(&self, table: &KeyTable, number: u64, end: u64) {
        if number + PREFETCH_AHEAD < end {
            let ahead = self.record(number + PREFETCH_AHEAD).key();
            table.prefetch(table_hash(&self.seed, ahead));
        }
    }

    fn check_one(&mut self, key: KeyHash, time: f64) -> bool {
        if time > self.watermark {
            self.watermark = time;
            self.expire_front();
        }
        if self.record_unless_within(key, time, self.window_s) {
            self.counters.duplicates += 1;
            return true;
        }
        self.after_recording(key, time);
        false
    }

    /// One table probe: when `key` is live and recorded within `window_s` of `time` returns true and changes
    /// nothing; otherwise records `key` at `time` as the newest (its earlier record, if any, becomes stale).
    fn record_unless_within(&mut self, key: KeyHash, time: f64, window_s: f64) -> bool {
        let number = slot_of(self.next_record);
        let hash = table_hash(&self.seed, key);
        let first = self.first_record;
        let records = &self.records;
        match self.live.probe(hash, |slot| records[index_in_slot(first, slot)].key() == key) {
            Probe::Found(at) => {
                let earlier = &mut self.records[index_in_slot(first, self.live.number_at(at))];
                if (time - earlier.time).abs() <= window_s {
                    return true;
                }
                earlier.time = f64::NAN;
                self.live.renumber(at, number);
                self.stale += 1;
            }
            Probe::Vacant(at) => self.live.insert_at(at, hash, number),
        }
        self.put_newest(Record::new(key, time));
        false
    }

    /// Writes the record numbered `next_record`: over a staged record already checked, or at the end.
    fn put_newest(&mut self, record: Record) {
        let index = (self.next_record - self.first_record) as usize;
        match self.records.get_mut(index) {
            Some(slot) => *slot = record,
            None => self.records.push(record),
        }
        self.next_record += 1;
    }

    /// Logs a new record and evicts the oldest past `max_keys`.
    fn after_recording(&mut self, key: KeyHash, time: f64) {
        self.log(Change::Record(key, time));
        if self.live.len() > self.max_keys {
            self.evict_oldest();
        }
    }

    /// Bounds the records kept besides the live ones (no batch may be staged): stale ones are dropped (and
    /// the table rebuilt) once they outnumber the live keys by [`SLACK`], removed ones at the front likewise
    /// (a move of the rest, no table change: slots hold record numbers, not positions).
    fn compact(&mut self) {
        if self.stale > self.live.len() + SLACK {
            self.drop_stale();
        } else if self.front - self.first_record > (self.live.len() + SLACK) as u64 {
            self.records.drain(..(self.front - self.first_record) as usize);
            self.first_record = self.front;
        }
    }

    /// Keeps only live records, renumbered so that the newest keeps its number, and points the table at them.
    fn drop_stale(&mut self) {
        self.records.drain(..(self.front - self.first_record) as usize);
        self.records.retain(|record| !record.is_stale());
        self.first_record = self.next_record - self.records.len() as u64;
        self.front = self.first_record;
        self.stale = 0;
        self.rebuild_table(self.live.capacity());
    }

    /// The oldest live record, after dropping stale ones from the front (staged records are not looked at).
    fn oldest_live(&mut self) -> Option<Record> {
        while self.front < self.next_record {
            let record = *self.record(self.front);
            if !record.is_stale() {
                return Some(record);
            }
            self.front += 1;
            self.stale -= 1;
        }
        None
    }

    fn expire_front(&mut self) {
        let horizon = self.watermark - self.window_s;
        while let Some(record) = self.oldest_live() {
            if record.time >= horizon {
                break;
            }
            self.forget_front(record.key());
            self.counters.expired += 1;
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(record) = self.oldest_live() {
            self.forget_front(record.key());
            self.counters.evicted += 1;
        }
    }

    fn forget_front(&mut self, key: KeyHash) {
        self.remove_front(key);
        self.log(Change::Forget(key));
    }

    /// Removes the front record, live and holding `key`, and its table slot (the one holding its number).
    fn remove_front(&mut self, key: KeyHash) {
        self.live.remove(table_hash(&self.seed, key), slot_of(self.front));
        self.front += 1;
    }

    /// Records `key` at `time` as the newest whatever its earlier record (restoring and replaying).
    fn insert_newest(&mut self, key: KeyHash, time: f64) {
        self.reserve_table(1);
        self.record_unless_within(key, time, f64::NEG_INFINITY);
    }

    fn log(&mut self, change: Change) {
        if let Some(journal) = &mut self.journal {
            if journal.len() < self.max_keys.max(1 << 16) {
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
        let records: Vec<(KeyHash, f64)> = self.records[(self.front - self.first_record) as usize..]
            .iter()
            .filter(|record| !record.is_stale())
            .map(|record| (record.key(), record.time))
            .collect();
        let state = FullState {
            window_s: self.window_s,
            max_keys: self.max_keys as u64,
            watermark: self.watermark,
            counters: self.counters,
            records,
        };
        snapshot::seal(Component::Deduper, &DedupImage::Full { generation: self.generation, state })
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
        let changes = Changes { watermark: self.watermark, counters: self.counters, log };
        snapshot::seal(Component::Deduper, &DedupImage::Delta { follows, generation: self.generation, changes })
    }

    /// Rebuilds a deduper from a full snapshot.
    pub fn restore(bytes: &[u8]) -> Result<Self, IncidentError> {
        match snapshot::open::<DedupImage>(Component::Deduper, bytes)? {
            DedupImage::Full { generation, state } => Self::from_full(generation, state),
            DedupImage::Delta { .. } => Err(IncidentError::InvalidSnapshot(
                "these bytes are a delta; restore from a full snapshot, then apply the deltas".into(),
            )),
        }
    }

    /// Applies a delta (or a full snapshot, which replaces the state) taken after the current generation.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<(), IncidentError> {
        match snapshot::open::<DedupImage>(Component::Deduper, bytes)? {
            DedupImage::Full { generation, state } => *self = Self::from_full(generation, state)?,
            DedupImage::Delta { follows, generation, changes } => {
                check_follows(self.generation, follows)?;
                for change in changes.log {
                    self.replay(change)?;
                    self.compact();
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
            Change::Record(key, time) => {
                self.insert_newest(key, time);
                if self.live.len() > self.max_keys + 1 {
                    return Err(IncidentError::InvalidSnapshot(format!(
                        "the delta records more than max_keys ({}) live keys without forgetting any",
                        self.max_keys
                    )));
                }
            }
            Change::Forget(key) => match self.oldest_live() {
                Some(oldest) if oldest.key() == key => self.remove_front(key),
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
        let mut deduper = Self::new(state.window_s, state.max_keys)
            .map_err(|e| IncidentError::InvalidSnapshot(format!("settings in the snapshot: {e}")))?;
        deduper.watermark = state.watermark;
        deduper.counters = state.counters;
        deduper.generation = generation;
        if state.records.len() > deduper.max_keys {
            return Err(IncidentError::InvalidSnapshot(format!(
                "{} records but max_keys is {}",
                state.records.len(),
                deduper.max_keys
            )));
        }
        deduper.records.reserve(state.records.len());
        deduper.reserve_table(state.records.len());
        for (key, time) in state.records {
            if !time.is_finite() {
                return Err(IncidentError::InvalidSnapshot("a record in the snapshot has no finite time".into()));
            }
            deduper.insert_newest(key, time);
        }
        deduper.compact();
        Ok(deduper)
    }
}

/// A batch being staged by [`Deduper::batch`]: keys first, then as many times. Dropped without
/// [`DedupBatch::check`] (or when the check fails), it leaves the deduper as it was.
pub struct DedupBatch<'a> {
    deduper: &'a mut Deduper,
    keys: usize,
    times: usize,
    first_bad_time: Option<usize>,
}

impl DedupBatch<'_> {
    pub fn push_key(&mut self, key: KeyHash) {
        self.deduper.records.push(Record::new(key, 0.0));
        self.keys += 1;
    }

    /// The time of the next key pushed, in the same order; checked in [`DedupBatch::check`].
    pub fn push_time(&mut self, time: f64) {
        if self.times < self.keys {
            let index = self.deduper.records.len() - self.keys + self.times;
            self.deduper.records[index].time = time;
        }
        if !time.is_finite() && self.first_bad_time.is_none() {
            self.first_bad_time = Some(self.times);
        }
        self.times += 1;
    }

    /// Validates the batch, then checks it: `out[i]` is true when key `i` is a duplicate.
    pub fn check(mut self) -> Result<Vec<bool>, IncidentError> {
        if self.keys != self.times {
            return Err(IncidentError::InvalidEvent {
                index: self.keys.min(self.times),
                reason: format!("{} keys but {} times", self.keys, self.times),
            });
        }
        if let Some(index) = self.first_bad_time {
            return Err(IncidentError::InvalidEvent { index, reason: "time is not a finite number".into() });
        }
        if self.keys > MAX_BATCH {
            return Err(IncidentError::InvalidEvent {
                index: MAX_BATCH,
                reason: format!("more than {MAX_BATCH} keys in one batch; split it"),
            });
        }
        let count = std::mem::take(&mut self.keys);
        Ok(self.deduper.check_staged(count))
    }
}

impl Drop for DedupBatch<'_> {
    fn drop(&mut self) {
        let records = &mut self.deduper.records;
        records.truncate(records.len() - self.keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<KeyHash> {
        names.iter().map(|n| idempotency_key(n.as_bytes())).collect()
    }

    #[test]
    fn repeats_within_the_window_are_duplicates() {
        let mut d = Deduper::new(10.0, 100).unwrap();
        let out = d.check_many(&keys(&["a", "b", "a", "a"]), &[0.0, 1.0, 5.0, 20.0]).unwrap();
        assert_eq!(out, vec![false, false, true, false]);
        assert_eq!(d.stats().duplicates, 1);
    }

    #[test]
    fn oldest_key_is_evicted_first() {
        let mut d = Deduper::new(1e9, 2).unwrap();
        let out = d.check_many(&keys(&["a", "b", "c", "b", "a"]), &[0.0, 1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(out, vec![false, false, false, true, false]);
        assert_eq!(d.stats().evicted, 2);
        assert_eq!(d.stats().live_keys, 2);
    }

    #[test]
    fn full_and_delta_snapshots_restore_the_same_answers() {
        let mut d = Deduper::new(5.0, 3).unwrap();
        d.check_many(&keys(&["a", "b"]), &[0.0, 1.0]).unwrap();
        let full = d.snapshot().unwrap();
        d.check_many(&keys(&["c", "d", "e"]), &[2.0, 3.0, 9.0]).unwrap();
        let delta = d.snapshot_delta().unwrap();
        let mut restored = Deduper::restore(&full).unwrap();
        restored.apply(&delta).unwrap();
        let probe = keys(&["a", "c", "d", "e", "f"]);
        let times = [9.5, 9.5, 9.5, 9.5, 9.5];
        assert_eq!(restored.check_many(&probe, &times).unwrap(), d.check_many(&probe, &times).unwrap());
        assert_eq!(restored.stats(), d.stats());
    }

    /// splitmix64 keys: a few hundred distinct ones, re-recorded, expired and evicted.
    fn stream(count: u64) -> (Vec<KeyHash>, Vec<f64>) {
        let keys = (0..count)
            .map(|i| {
                let mut z = (i * 7 % 301).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                KeyHash::from(z ^ (z >> 29))
            })
            .collect();
        let times = (0..count).map(|i| (i / 3) as f64).collect();
        (keys, times)
    }

    #[test]
    fn record_numbers_crossing_2_to_the_32_change_no_answer() {
        let (keys, times) = stream(20_000);
        let mut plain = Deduper::new(40.0, 200).unwrap();
        let mut wrapping = Deduper::new(40.0, 200).unwrap();
        let start = u64::from(u32::MAX) - 5_000;
        (wrapping.first_record, wrapping.front, wrapping.next_record) = (start, start, start);
        for (keys, times) in keys.chunks(999).zip(times.chunks(999)) {
            assert_eq!(wrapping.check_many(keys, times).unwrap(), plain.check_many(keys, times).unwrap());
        }
        assert!(wrapping.next_record > 1 << 32);
        assert_eq!(wrapping.stats(), plain.stats());
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
        assert!(d.apply(&delta).is_err(), "a delta applied twice must be refused");
    }
}
