//! The event fields a rule set reads. Each distinct path gets a slot; parsing an event fills only
//! those slots (see [`crate::rules::extract`]); the rest of the document is checked but not built.

use std::collections::HashMap;

/// Splits a JsonLogic-style dotted path (`payload.ppm`, `items.0`); the empty path is the whole event.
pub fn split_path(path: &str) -> Vec<String> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('.').map(str::to_owned).collect()
    }
}

#[derive(Debug, Default)]
pub struct FieldTable {
    paths: Vec<Vec<String>>,
    by_path: HashMap<Vec<String>, usize>,
    by_dotted: HashMap<String, usize>,
    /// Some rule reads the whole event or computes field names at run time: parse events fully.
    needs_whole_event: bool,
}

impl FieldTable {
    /// The slot of `path`, assigning one on first use.
    pub fn slot(&mut self, path: &[String]) -> usize {
        if path.is_empty() {
            self.needs_whole_event = true;
        }
        if let Some(slot) = self.by_path.get(path) {
            return *slot;
        }
        let slot = self.paths.len();
        self.paths.push(path.to_vec());
        self.by_path.insert(path.to_vec(), slot);
        self.by_dotted.entry(path.join(".")).or_insert(slot);
        slot
    }

    pub fn slot_of_dotted(&self, dotted: &str) -> Option<usize> {
        self.by_dotted.get(dotted).copied()
    }

    pub fn require_whole_event(&mut self) {
        self.needs_whole_event = true;
    }

    pub fn needs_whole_event(&self) -> bool {
        self.needs_whole_event
    }

    pub fn paths(&self) -> &[Vec<String>] {
        &self.paths
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }
}
