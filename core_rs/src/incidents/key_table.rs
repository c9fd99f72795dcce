//! The dedup's table of live keys: open addressing with linear probing over 8-byte slots.
//!
//! A slot packs the low 32 bits of the key's table hash (which give its home bucket and serve as a tag) with
//! the low 32 bits of its record number; 0 is an empty slot (a stored hash always has bit 31 set, above every
//! bucket index: the dedup has at most 2³¹ buckets).
//! Unlike `hashbrown::HashTable` this table tells where a key's probe starts, so a batch can prefetch that
//! cache line a few keys ahead, and a lookup reads a record only when the 32-bit tag matches. Removal shifts
//! the following entries back (no tombstones), so probes stay short under constant expiry.

use allocator_api2::vec::Vec as PagedVec;

use crate::large_pages::LargePages;

/// Where a probe for a key ended.
pub(super) enum Probe {
    /// The slot holding the key.
    Found(usize),
    /// The empty slot where the key belongs.
    Vacant(usize),
}

pub(super) struct KeyTable {
    slots: PagedVec<u64, LargePages>,
    mask: usize,
    len: usize,
}

/// The part of a table hash kept in a slot; never 0.
fn tag(hash: u64) -> u32 {
    hash as u32 | 1 << 31
}

fn pack(tag: u32, number: u32) -> u64 {
    u64::from(tag) << 32 | u64::from(number)
}

fn number_in(slot: u64) -> u32 {
    slot as u32
}

fn tag_in(slot: u64) -> u32 {
    (slot >> 32) as u32
}

impl KeyTable {
    /// A table that holds `capacity` keys at most 3/4 full.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        let buckets = capacity.saturating_mul(4).div_ceil(3).next_power_of_two().max(8);
        let mut slots = PagedVec::with_capacity_in(buckets, LargePages);
        slots.resize(buckets, 0);
        Self { slots, mask: buckets - 1, len: 0 }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// How many keys fit before the table must be rebuilt larger.
    pub(super) fn capacity(&self) -> usize {
        self.slots.len() / 4 * 3
    }

    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// Asks the CPU to start loading the cache line where a probe for `hash` begins.
    pub(super) fn prefetch(&self, hash: u64) {
        let slot = &self.slots[self.home(tag(hash))];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint that never faults and changes no memory; the address is a slot we own.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>((slot as *const u64).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// Finds the key with table hash `hash`; `is_key(number)` tells whether the record with that number
    /// (low 32 bits) holds it, and is asked only for slots whose tag matches.
    pub(super) fn probe(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Probe {
        let tag = tag(hash);
        let mut index = self.home(tag);
        loop {
            let slot = self.slots[index];
            if slot == 0 {
                return Probe::Vacant(index);
            }
            if tag_in(slot) == tag && is_key(number_in(slot)) {
                return Probe::Found(index);
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Fills the vacant slot `index` found by [`KeyTable::probe`] for `hash` (the table must have room).
    pub(super) fn insert_at(&mut self, index: usize, hash: u64, number: u32) {
        self.slots[index] = pack(tag(hash), number);
        self.len += 1;
    }

    /// The record number (low 32 bits) in the slot `index` found by [`KeyTable::probe`].
    pub(super) fn number_at(&self, index: usize) -> u32 {
        number_in(self.slots[index])
    }

    /// Points the slot `index` found by [`KeyTable::probe`] at another record number.
    pub(super) fn renumber(&mut self, index: usize, number: u32) {
        let slot = &mut self.slots[index];
        *slot = pack(tag_in(*slot), number);
    }

    /// Adds a key known not to be in the table.
    pub(super) fn insert_new(&mut self, hash: u64, number: u32) {
        if let Probe::Vacant(index) = self.probe(hash, |_| false) {
            self.insert_at(index, hash, number);
        }
    }

    /// Removes the key with table hash `hash` stored with record number `number`, if present.
    pub(super) fn remove(&mut self, hash: u64, number: u32) {
        if let Probe::Found(index) = self.probe(hash, |n| n == number) {
            self.remove_at(index);
        }
    }

    /// Empties slot `hole`, then moves back each following entry whose probe would otherwise pass the hole.
    fn remove_at(&mut self, mut hole: usize) {
        self.len -= 1;
        let mut index = hole;
        loop {
            index = (index + 1) & self.mask;
            let slot = self.slots[index];
            if slot == 0 {
                break;
            }
            let home = self.home(tag_in(slot));
            // The entry may fill the hole unless its home lies cyclically in (hole, index].
            let home_after_hole =
                if hole <= index { hole < home && home <= index } else { hole < home || home <= index };
            if !home_after_hole {
                self.slots[hole] = slot;
                hole = index;
            }
        }
        self.slots[hole] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are their own numbers; hashes are chosen to collide on few homes, so probes wrap and shift.
    fn hash_of(number: u32) -> u64 {
        u64::from(number % 5) * 0x9e37_79b9 + u64::from(number / 5 % 3) * 7
    }

    fn contains(table: &KeyTable, number: u32) -> bool {
        matches!(table.probe(hash_of(number), |n| n == number), Probe::Found(_))
    }

    #[test]
    fn a_table_sized_for_another_ones_capacity_is_as_large() {
        for capacity in [0, 6, 7, 1_000, 786_432] {
            let table = KeyTable::with_capacity(capacity);
            assert!(table.capacity() >= capacity);
            let again = KeyTable::with_capacity(table.capacity());
            assert_eq!(again.slots.len(), table.slots.len());
        }
    }

    #[test]
    fn removal_keeps_every_other_key_reachable() {
        let mut table = KeyTable::with_capacity(40);
        let mut present: Vec<u32> = (0..40).collect();
        for &n in &present {
            table.insert_new(hash_of(n), n);
        }
        let mut order = 7u32;
        while !present.is_empty() {
            order = order.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let gone = present.remove(order as usize % present.len());
            table.remove(hash_of(gone), gone);
            assert!(!contains(&table, gone));
            assert!(present.iter().all(|&n| contains(&table, n)));
            assert_eq!(table.len(), present.len());
        }
    }
}
