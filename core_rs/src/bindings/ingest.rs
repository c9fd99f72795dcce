//! Python binding of [`crate::ingest`]: an event checker compiled once from the model's JSON Schema,
//! deciding whole batches of ingest messages with the GIL released.

use crate::ingest::{
    columns_of, decode_batch, patched_document, ColumnKind, ColumnValue, Decoded, EventRules, IngestMessage, Shape,
    TimeWindow,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

#[pyclass(module = "hub._core", name = "EventChecker", frozen)]
pub struct EventChecker {
    shape: Shape,
    source_field: String,
    time_field: String,
    event_type: String,
}

fn cell<'py>(py: Python<'py>, value: &ColumnValue<'_>, offsets: bool) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        ColumnValue::Null => py.None().into_bound(py),
        ColumnValue::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        ColumnValue::Int(i) => i.into_pyobject(py)?.into_any(),
        ColumnValue::Float(f) => f.into_pyobject(py)?.into_any(),
        ColumnValue::Str(text) => PyString::new(py, text).into_any(),
        ColumnValue::Json(text) => PyString::new(py, text).into_any(),
        ColumnValue::Time(instant) if offsets => instant.offset_s.into_pyobject(py)?.into_any(),
        ColumnValue::Time(instant) => instant.epoch_us.into_pyobject(py)?.into_any(),
    })
}

fn column_list<'py>(py: Python<'py>, values: &[ColumnValue<'_>], offsets: bool) -> PyResult<Bound<'py, PyList>> {
    let cells = values.iter().map(|value| cell(py, value, offsets)).collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, cells)
}

fn columns_dict<'py>(py: Python<'py>, decoded: &Decoded<'_>) -> PyResult<Bound<'py, PyDict>> {
    let columns = PyDict::new(py);
    for column in &decoded.columns {
        columns.set_item(&column.name, column_list(py, &column.values, false)?)?;
        if column.kind == ColumnKind::Time {
            columns.set_item(format!("{}.utcoffset", column.name), column_list(py, &column.values, true)?)?;
        }
    }
    Ok(columns)
}

#[pymethods]
impl EventChecker {
    /// `schema`: the model's JSON Schema as JSON text; `source_field` and `time_field` name the properties
    /// that must match the subject and lie within the event-time window; `event_type` is the CloudEvent
    /// type whose `data` is an event.
    #[new]
    fn new(schema: &str, source_field: String, time_field: String, event_type: String) -> PyResult<Self> {
        let shape = Shape::compile(schema).map_err(|e| PyValueError::new_err(e.to_string()))?;
        columns_of(&shape).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self { shape, source_field, time_field, event_type })
    }

    /// `(name, kind)` of every column, in the model's order: kind `value` (a string, number or boolean),
    /// `object` (True where a nested model is present; its properties follow as `name.property`), `json`
    /// (arrays and free objects as JSON text) or `time` (microseconds since the epoch, with the offset in
    /// seconds in the column `name.utcoffset`).
    fn columns(&self) -> PyResult<Vec<(String, &'static str)>> {
        let columns = columns_of(&self.shape).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(columns.into_iter().map(|(name, kind)| (name, kind.name())).collect())
    }

    /// `(accepted, undecided, columns)`: message positions taken by the fast path and those left to the
    /// model; `columns` maps each column name to its values in `accepted` order.
    #[allow(clippy::too_many_arguments)]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        payloads: Vec<PyBackedBytes>,
        subjects: Vec<PyBackedStr>,
        received: Vec<f64>,
        max_bytes: usize,
        max_ahead_s: f64,
        max_age_s: f64,
        accept_out_of_range: bool,
    ) -> PyResult<(Vec<usize>, Vec<usize>, Bound<'py, PyDict>)> {
        if payloads.len() != subjects.len() || payloads.len() != received.len() {
            return Err(PyValueError::new_err(format!(
                "EventChecker.decode: {} payloads, {} subjects, {} reception times; give one of each per message",
                payloads.len(),
                subjects.len(),
                received.len()
            )));
        }
        let window = TimeWindow { max_ahead_s, max_age_s, accept_out_of_range };
        let rules = EventRules {
            shape: &self.shape,
            source_field: &self.source_field,
            time_field: &self.time_field,
            event_type: &self.event_type,
            max_bytes,
            window,
        };
        let messages: Vec<IngestMessage<'_>> = payloads
            .iter()
            .zip(&subjects)
            .zip(&received)
            .map(|((data, subject), received)| IngestMessage { data, subject, received: *received })
            .collect();
        let decoded =
            py.detach(|| decode_batch(&messages, &rules)).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let columns = columns_dict(py, &decoded)?;
        Ok((decoded.accepted, decoded.undecided, columns))
    }
}

/// The documents rules match: each message's event document (a CloudEvent's `data`, or the message) with
/// `fields` set, given as `(name, values)` with one str per message. Give only messages the checker accepted
/// (None for the others). None for a message not given, or whose document the core's parser does not take:
/// the caller builds that one.
#[pyfunction]
fn rule_documents<'py>(
    py: Python<'py>,
    payloads: Vec<Option<PyBackedBytes>>,
    fields: Vec<(String, Vec<PyBackedStr>)>,
) -> PyResult<Bound<'py, PyList>> {
    if let Some((name, values)) = fields.iter().find(|(_, values)| values.len() != payloads.len()) {
        return Err(PyValueError::new_err(format!(
            "rule_documents: {} values of {name} for {} payloads",
            values.len(),
            payloads.len()
        )));
    }
    let documents = py.detach(|| {
        (0..payloads.len())
            .map(|row| {
                let row_fields: Vec<(&str, &str)> =
                    fields.iter().map(|(name, values)| (name.as_str(), &*values[row])).collect();
                patched_document(payloads[row].as_deref()?, &row_fields)
            })
            .collect::<Vec<_>>()
    });
    PyList::new(py, documents.iter().map(|document| document.as_ref().map(|bytes| PyBytes::new(py, bytes))))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EventChecker>()?;
    m.add_function(wrap_pyfunction!(rule_documents, m)?)
}
