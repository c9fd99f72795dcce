//! The only module that knows about Python: converts plain buffers to and from the core's types,
//! releases the GIL around batch work and maps core errors to Python exceptions.

use pyo3::prelude::*;

mod geo;
mod ids;
mod incidents;
mod ingest;
mod masking;
mod outputs;
mod rules;

#[pyfunction]
fn version() -> &'static str {
    crate::VERSION
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    geo::register(m)?;
    ids::register(m)?;
    incidents::register(m)?;
    ingest::register(m)?;
    masking::register(m)?;
    outputs::register(m)?;
    rules::register(m)?;
    Ok(())
}
