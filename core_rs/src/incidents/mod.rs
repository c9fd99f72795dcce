//! Exact dedup by idempotency key and merging of events into incidents.
//!
//! - [`Deduper`]: has this idempotency key been seen within the window? Bounded memory, oldest evicted first.
//! - [`IncidentMerger`]: does this event report an incident that is already open (compatible category, within
//!   distance D and window T, or near-identical text at the same address)?
//!
//! Both keep their whole state in plain maps and can write it to bytes (a full snapshot, or the changes since
//! the last snapshot) and be rebuilt from those bytes, so a restarted hub neither re-emits nor re-opens.

mod dedup;
mod expiry;
mod grid;
mod incident_id;
mod key_table;
mod merge;
mod policy;
mod snapshot;
mod textsim;

use std::fmt;

pub use dedup::{idempotency_key, DedupBatch, DedupStats, Deduper};
pub use incident_id::IncidentId;
pub use merge::{Closed, ExpiringBatch, IncidentMerger, MergeEvent, MergeOutcome, MergerStats};
pub use policy::{CategoryLimits, MergePolicy};
pub use textsim::{matching_slots, minhash, normalize, similarity_to_slots, SLOTS};

/// Everything that can go wrong in this module; the binding layer maps each variant to a Python exception.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentError {
    /// One event of a batch is unusable; nothing of the batch was applied.
    InvalidEvent { index: usize, reason: String },
    /// An argument other than an event is unusable, e.g. `expire(now)` with NaN or a batch that is no sequence.
    InvalidArgument(String),
    /// A dedup or merge setting is out of range; `key` names the setting.
    InvalidConfig { key: String, reason: String },
    /// Bytes handed to a restore are not a snapshot of the expected kind, or do not follow the state.
    InvalidSnapshot(String),
}

impl fmt::Display for IncidentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEvent { index, reason } => {
                write!(f, "event {index} of the batch: {reason}")
            }
            Self::InvalidArgument(reason) => f.write_str(reason),
            Self::InvalidConfig { key, reason } => write!(f, "{key}: {reason}"),
            Self::InvalidSnapshot(reason) => write!(f, "snapshot rejected: {reason}"),
        }
    }
}

impl std::error::Error for IncidentError {}

pub(crate) fn config_error(key: impl Into<String>, reason: impl Into<String>) -> IncidentError {
    IncidentError::InvalidConfig { key: key.into(), reason: reason.into() }
}
