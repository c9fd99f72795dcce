//! When open incidents fall due.
//!
//! An incident's deadline is its last report's time plus its category's time-to-live. An entry is pushed when
//! the incident opens and again whenever a later report moves its deadline; the entries a move leaves behind
//! are stale and are dropped when they come due (the caller tells current from stale). Reports mostly arrive
//! in time order, so the deadlines pushed for one time-to-live arrive in order as well: each time-to-live has
//! a first-in-first-out queue that stays sorted, with constant-time pushes and pops. A deadline that would
//! break its queue's order (a late report) goes to a heap instead.
//!
//! The earliest deadline held is kept at hand, so asking whether anything is due (once per event when expiry
//! runs on a watermark that each event moves) reads one number.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

/// (deadline, seq, slot): ordered by deadline, then by opening order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Deadline(pub f64, pub u64, pub u32);

impl Eq for Deadline {}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1)).then(self.2.cmp(&other.2))
    }
}

pub(crate) struct Deadlines {
    /// The time-to-live of each queue, by queue number.
    ttls: Vec<f64>,
    queues: Vec<VecDeque<Deadline>>,
    late: BinaryHeap<Reverse<Deadline>>,
    /// Entries in the queues and the heap.
    len: usize,
    /// The earliest deadline of any entry, current or stale; infinity when there is none.
    earliest: f64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self { ttls: Vec::new(), queues: Vec::new(), late: BinaryHeap::new(), len: 0, earliest: f64::INFINITY }
    }
}

impl Deadlines {
    /// The queue for deadlines `ttl_s` after a report (added when new).
    pub fn queue_for(&mut self, ttl_s: f64) -> usize {
        if let Some(queue) = self.ttls.iter().position(|t| t.to_bits() == ttl_s.to_bits()) {
            return queue;
        }
        self.ttls.push(ttl_s);
        self.queues.push(VecDeque::new());
        self.queues.len() - 1
    }

    pub fn push(&mut self, queue: usize, deadline: Deadline) {
        self.len += 1;
        self.earliest = self.earliest.min(deadline.0);
        match self.queues.get_mut(queue) {
            Some(entries) if entries.back().is_none_or(|last| last.0 <= deadline.0) => entries.push_back(deadline),
            _ => self.late.push(Reverse(deadline)),
        }
    }

    /// Entries held, current and stale.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether an entry, current or stale, is due before `now`: one comparison.
    pub fn any_due(&self, now: f64) -> bool {
        self.earliest < now
    }

    /// Removes every entry due before `now`; fills `due` (a buffer kept by the caller, so taking allocates
    /// nothing once it has grown) with the current ones in deadline order.
    pub fn take_due(&mut self, now: f64, is_current: impl Fn(&Deadline) -> bool, due: &mut Vec<Deadline>) {
        due.clear();
        if !self.any_due(now) {
            return;
        }
        for entries in &mut self.queues {
            while let Some(&deadline) = entries.front().filter(|d| d.0 < now) {
                entries.pop_front();
                self.len -= 1;
                if is_current(&deadline) {
                    due.push(deadline);
                }
            }
        }
        while let Some(&Reverse(deadline)) = self.late.peek().filter(|d| d.0 .0 < now) {
            self.late.pop();
            self.len -= 1;
            if is_current(&deadline) {
                due.push(deadline);
            }
        }
        // A concatenation of sorted runs: the stable sort merges them in about linear time. An incident
        // restored into its old slot can have two current entries: it is closed once. (With expiry on a
        // moving watermark most calls take one entry or none.)
        if due.len() > 1 {
            due.sort();
            due.dedup();
        }
        self.earliest = self.find_earliest();
    }

    /// Drops the stale entries (order kept).
    pub fn retain(&mut self, is_current: impl Fn(&Deadline) -> bool) {
        for entries in &mut self.queues {
            entries.retain(&is_current);
        }
        self.late.retain(|Reverse(d)| is_current(d));
        self.recount();
    }

    /// Recounts the entries and finds the earliest again (after entries were dropped).
    fn recount(&mut self) {
        self.len = self.queues.iter().map(VecDeque::len).sum::<usize>() + self.late.len();
        self.earliest = self.find_earliest();
    }

    /// The earliest deadline held: the front of a queue or the top of the heap.
    fn find_earliest(&self) -> f64 {
        let fronts = self.queues.iter().filter_map(VecDeque::front);
        fronts.chain(self.late.peek().map(|Reverse(d)| d)).map(|d| d.0).fold(f64::INFINITY, f64::min)
    }

    /// Forgets every entry and every queue (the time-to-lives change with the policy).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_come_out_in_deadline_then_opening_order() {
        let mut deadlines = Deadlines::default();
        let (short, long) = (deadlines.queue_for(10.0), deadlines.queue_for(20.0));
        assert_eq!(deadlines.queue_for(10.0), short);
        deadlines.push(short, Deadline(15.0, 3, 3));
        deadlines.push(long, Deadline(12.0, 1, 1));
        deadlines.push(short, Deadline(11.0, 2, 2)); // out of order: goes to the heap
        deadlines.push(long, Deadline(15.0, 0, 0));
        deadlines.push(long, Deadline(40.0, 4, 4));
        assert!(deadlines.any_due(11.5) && !deadlines.any_due(11.0));
        let mut due = vec![Deadline(1.0, 9, 9)]; // left from an earlier call: replaced
        deadlines.take_due(20.0, |d| d.1 != 1, &mut due);
        assert_eq!(due, vec![Deadline(11.0, 2, 2), Deadline(15.0, 0, 0), Deadline(15.0, 3, 3)]);
        assert_eq!(deadlines.len(), 1);
        assert!(!deadlines.any_due(40.0) && deadlines.any_due(40.5));
        deadlines.retain(|_| false);
        assert_eq!(deadlines.len(), 0);
        assert!(!deadlines.any_due(f64::MAX));
    }
}
