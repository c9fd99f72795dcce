//! The only module that knows about Python: converts plain buffers to and from the core's types,
//! releases the GIL around batch work and maps core errors to Python exceptions.

use pyo3::call::PyCallArgs;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

mod frames;
mod geo;
mod ids;
mod incidents;
mod ingest;
mod masking;
mod outputs;
mod rules;

/// `hub.errors.<class>` called with `args` (the message first), or a `ValueError` carrying `message` when that
/// class cannot be built (every `hub.errors` class the core raises is also a `ValueError`).
fn hub_error_with<'py, A: PyCallArgs<'py>>(py: Python<'py>, class: &str, message: &str, args: A) -> PyErr {
    let built = py.import("hub.errors").and_then(|module| module.getattr(class)).and_then(|c| c.call1(args));
    match built {
        Ok(instance) => PyErr::from_value(instance),
        Err(_) => PyValueError::new_err(message.to_owned()),
    }
}

/// `hub.errors.<class>(message)`: how every core error reaches Python.
fn hub_error(py: Python<'_>, class: &str, message: String) -> PyErr {
    hub_error_with(py, class, &message, (message.as_str(),))
}

#[pyfunction]
fn version() -> &'static str {
    crate::VERSION
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    frames::register(m)?;
    geo::register(m)?;
    ids::register(m)?;
    incidents::register(m)?;
    ingest::register(m)?;
    masking::register(m)?;
    outputs::register(m)?;
    rules::register(m)?;
    Ok(())
}
