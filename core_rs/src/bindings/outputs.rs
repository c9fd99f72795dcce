//! Python binding of [`crate::outputs`]: unified events encoded a batch at a time from the columns the
//! event checker returned (after the pipeline's stages changed them).

use crate::ingest::Shape;
use crate::outputs::{encode_events, Cell, Envelope};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString};
use std::collections::HashMap;

#[pyclass(module = "hub._core", name = "EventEncoder", frozen)]
pub struct EventEncoder {
    shape: Shape,
    time_field: String,
    source: String,
    type_: String,
}

/// A cell as extracted from Python; strings stay in Python's own UTF-8 buffer.
enum Extracted {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(PyBackedStr),
}

fn extract(value: &Bound<'_, PyAny>) -> PyResult<Extracted> {
    if value.is_none() {
        Ok(Extracted::Null)
    } else if let Ok(b) = value.cast::<PyBool>() {
        Ok(Extracted::Bool(b.is_true()))
    } else if value.is_instance_of::<PyInt>() {
        Ok(Extracted::Int(value.extract()?))
    } else if value.is_instance_of::<PyFloat>() {
        Ok(Extracted::Float(value.extract()?))
    } else if value.is_instance_of::<PyString>() {
        Ok(Extracted::Str(value.extract()?))
    } else {
        Err(PyValueError::new_err(format!(
            "EventEncoder.encode: a column holds {}; columns hold None, bool, int, float or str",
            value.get_type().name()?
        )))
    }
}

fn extracted(columns: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Vec<Extracted>)>> {
    columns
        .iter()
        .map(|(name, values)| {
            let values = values.try_iter()?.map(|value| extract(&value?)).collect::<PyResult<Vec<_>>>()?;
            Ok((name.extract::<String>()?, values))
        })
        .collect()
}

fn cell(value: &Extracted) -> Cell<'_> {
    match value {
        Extracted::Null => Cell::Null,
        Extracted::Bool(b) => Cell::Bool(*b),
        Extracted::Int(i) => Cell::Int(*i),
        Extracted::Float(f) => Cell::Float(*f),
        Extracted::Str(text) => Cell::Str(text),
    }
}

fn cells(columns: &[(String, Vec<Extracted>)]) -> HashMap<String, Vec<Cell<'_>>> {
    columns.iter().map(|(name, values)| (name.clone(), values.iter().map(cell).collect())).collect()
}

#[pymethods]
impl EventEncoder {
    /// `schema`: the event model's JSON Schema as JSON text; `time_field` names the property that is
    /// also the CloudEvent's `time`; `source` and `type_` are the CloudEvent attributes of every event.
    #[new]
    fn new(schema: &str, time_field: String, source: String, type_: String) -> PyResult<Self> {
        let schema: serde_json::Value =
            serde_json::from_str(schema).map_err(|e| PyValueError::new_err(format!("event schema is not JSON: {e}")))?;
        let shape = Shape::compile(&schema).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self { shape, time_field, source, type_ })
    }

    /// `(buffer, offsets)`: event `i` is `buffer[offsets[i]:offsets[i + 1]]`. `extensions` are
    /// `(name, values)` pairs in attribute order; a None value leaves the attribute out of that event.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        columns: &Bound<'py, PyDict>,
        ids: Vec<String>,
        subjects: Vec<String>,
        extensions: Vec<(String, Vec<Option<String>>)>,
    ) -> PyResult<(Bound<'py, PyBytes>, Vec<usize>)> {
        let extracted = extracted(columns)?;
        let columns = cells(&extracted);
        let envelope = Envelope { source: &self.source, type_: &self.type_, ids: &ids, subjects: &subjects, extensions: &extensions };
        let (buffer, offsets) = py
            .detach(|| encode_events(&self.shape, &self.time_field, &columns, &envelope))
            .map_err(PyValueError::new_err)?;
        Ok((PyBytes::new(py, &buffer), offsets))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EventEncoder>()
}
