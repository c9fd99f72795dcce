//! Event ids for a batch (see `crate::ids`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyString;

use crate::ids::time_ordered_id;

/// One id per (time, key) pair.
#[pyfunction]
fn time_ordered_ids<'py>(
    py: Python<'py>,
    times: Vec<f64>,
    keys: Vec<PyBackedStr>,
) -> PyResult<Vec<Bound<'py, PyString>>> {
    if times.len() != keys.len() {
        return Err(PyValueError::new_err(format!("time_ordered_ids: {} times but {} keys", times.len(), keys.len())));
    }
    let ids: Vec<_> =
        py.detach(|| times.iter().zip(&keys).map(|(time, key)| time_ordered_id(*time, key.as_bytes())).collect());
    Ok(ids.iter().map(|id| PyString::new(py, std::str::from_utf8(id).unwrap_or_default())).collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(time_ordered_ids, m)?)
}
