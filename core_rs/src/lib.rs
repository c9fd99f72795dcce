//! CityHub's hot path. Everything here is plain Rust; the Python binding layer lives in
//! [`bindings`] alone and is compiled only with the `python` feature.

pub mod frames;
pub mod geo;
pub mod ids;
pub mod incidents;
pub mod ingest;
mod large_pages;
pub mod masking;
pub mod outputs;
pub mod rules;

#[cfg(feature = "python")]
mod bindings;

/// Version of the core, reported by `hub._core.version()`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
