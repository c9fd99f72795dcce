//! Geofence lookup (point → grid cells on every layer), polygon → intersecting cells, and
//! WGS-84 / GCJ-02 / BD-09 conversion.

mod buckets;
mod cell_grid;
pub mod coords;
mod far_mask;
pub mod geojson;
pub mod index;

use std::fmt;

pub use coords::CoordSystem;
pub use index::{AreaCells, GridIndex, LayerKind, LayerSource, LocateBatch, MemoryUse};

/// Every geofence error: the message says what was wrong and where (layer, feature number and id,
/// or point position).
#[derive(Debug, Clone, PartialEq)]
pub struct GeoError {
    message: String,
}

impl GeoError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// The same error with a location prefix (`layer "admin": ...`).
    pub fn within(self, context: &str) -> Self {
        Self { message: format!("{context}: {}", self.message) }
    }
}

impl fmt::Display for GeoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GeoError {}
