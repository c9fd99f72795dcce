//! Python binding of [`crate::outputs`]: unified events and incident changes encoded a batch at a time from
//! the event columns the checker returned (after the pipeline's stages changed them).

use crate::ingest::Shape;
use crate::outputs::{
    encode_events, encode_incident_changes, Cell, Envelope, EventRows, Extension, IncidentChange, REPORT_PROPERTIES,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::collections::HashMap;

#[pyclass(module = "hub._core", name = "EventEncoder", frozen)]
pub struct EventEncoder {
    shape: Shape,
    time_field: String,
    source_field: String,
    source_prefix: String,
    type_: String,
}

/// A value as extracted from Python; strings stay in Python's own UTF-8 buffer.
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
            "EventEncoder: a value is a {}; columns hold None, bool, int, float or str",
            value.get_type().name()?
        )))
    }
}

fn extract_all(values: &Bound<'_, PyAny>) -> PyResult<Vec<Extracted>> {
    let mut extracted = Vec::with_capacity(values.len().unwrap_or(0));
    for value in values.try_iter()? {
        extracted.push(extract(&value?)?);
    }
    Ok(extracted)
}

/// The columns, or those of the top-level properties named in `only` (`location` brings `location.lon`...).
fn extracted(columns: &Bound<'_, PyDict>, only: Option<&[&str]>) -> PyResult<Vec<(String, Vec<Extracted>)>> {
    let wanted = |name: &str| only.is_none_or(|names| names.contains(&name.split('.').next().unwrap_or(name)));
    let mut found = Vec::new();
    for (name, values) in columns.iter() {
        let name = name.extract::<String>()?;
        if wanted(&name) {
            let values = extract_all(&values)?;
            found.push((name, values));
        }
    }
    Ok(found)
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

fn extension(value: &Extracted) -> PyResult<Option<Extension<'_>>> {
    match value {
        Extracted::Null => Ok(None),
        Extracted::Bool(b) => Ok(Some(Extension::Bool(*b))),
        Extracted::Str(text) => Ok(Some(Extension::Str(text))),
        _ => Err(PyValueError::new_err("EventEncoder: an extension attribute is a str, a bool or None")),
    }
}

fn optional_str(value: &Extracted) -> PyResult<Option<&str>> {
    match value {
        Extracted::Null => Ok(None),
        Extracted::Str(text) => Ok(Some(text)),
        _ => Err(PyValueError::new_err("EventEncoder: expected a str or None")),
    }
}

fn float(value: &Extracted) -> PyResult<f64> {
    match value {
        Extracted::Float(f) => Ok(*f),
        Extracted::Int(i) => Ok(*i as f64),
        _ => Err(PyValueError::new_err("EventEncoder: expected a number")),
    }
}

/// The fields of one incident change tuple, extracted (see [`EventEncoder::encode_incident_changes`]).
struct ChangeFields {
    values: Vec<Extracted>,
    sources: Vec<PyBackedStr>,
    matched_rules: Vec<PyBackedStr>,
}

const CHANGE_FIELDS: usize = 15;

fn change_fields(change: &Bound<'_, PyAny>) -> PyResult<ChangeFields> {
    let tuple = change.cast::<PyTuple>()?;
    if tuple.len() != CHANGE_FIELDS {
        return Err(PyValueError::new_err(format!("an incident change is a tuple of {CHANGE_FIELDS} values")));
    }
    let values = tuple
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 11 | 12))
        .map(|(_, v)| extract(&v))
        .collect::<PyResult<_>>()?;
    Ok(ChangeFields { values, sources: tuple.get_item(11)?.extract()?, matched_rules: tuple.get_item(12)?.extract()? })
}

fn change(fields: &ChangeFields) -> PyResult<IncidentChange<'_>> {
    let v = &fields.values;
    let text = |i: usize| {
        optional_str(&v[i])?.ok_or_else(|| PyValueError::new_err(format!("incident change field {i} must be a str")))
    };
    let report = match &v[12] {
        Extracted::Int(row) => Some(usize::try_from(*row).map_err(|_| PyValueError::new_err("a report row is >= 0"))?),
        Extracted::Str(_) => None,
        _ => return Err(PyValueError::new_err("an incident change ends with its report's row or its closed reason")),
    };
    Ok(IncidentChange {
        subject: text(0)?,
        msg_id: text(1)?,
        change: text(2)?,
        incident_id: text(3)?,
        category: text(4)?,
        severity: text(5)?,
        district: optional_str(&v[6])?,
        late: matches!(v[7], Extracted::Bool(true)),
        opened_at: float(&v[8])?,
        updated_at: float(&v[9])?,
        received_at: match v[10] {
            Extracted::Null => None,
            ref value => Some(float(value)?),
        },
        report_count: match v[11] {
            Extracted::Int(count) => count,
            _ => return Err(PyValueError::new_err("a report count is an int")),
        },
        sources: fields.sources.iter().map(|s| &**s).collect(),
        matched_rules: fields.matched_rules.iter().map(|s| &**s).collect(),
        closed_reason: match &v[12] {
            Extracted::Str(reason) => Some(&**reason),
            _ => None,
        },
        report,
    })
}

fn bytes_list<'py>(py: Python<'py>, buffer: &[u8], offsets: &[usize]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, offsets.windows(2).map(|pair| PyBytes::new(py, &buffer[pair[0]..pair[1]])))
}

#[pymethods]
impl EventEncoder {
    /// `schema`: the event model's JSON Schema as JSON text; `time_field` names the property that is also
    /// the CloudEvent's `time`, `source_field` the one whose value ends its `source` (after
    /// `source_prefix`); `type_` is the CloudEvent type of every event.
    #[new]
    fn new(
        schema: &str,
        time_field: String,
        source_field: String,
        source_prefix: String,
        type_: String,
    ) -> PyResult<Self> {
        let shape = Shape::compile(schema).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self { shape, time_field, source_field, source_prefix, type_ })
    }

    /// One CloudEvent per event, as bytes. `columns` as the checker returned them (every one, changed by
    /// the pipeline's stages); per event its id and subject; `extensions` are `(name, values)` pairs in
    /// attribute order, a value a str, a bool or None (left out).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        columns: &Bound<'py, PyDict>,
        ids: Vec<PyBackedStr>,
        subjects: Vec<PyBackedStr>,
        extensions: Vec<(String, Bound<'py, PyAny>)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let extracted = extracted(columns, None)?;
        let columns = cells(&extracted);
        let extension_values = extensions
            .iter()
            .map(|(name, values)| Ok((name.clone(), extract_all(values)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let extensions = extension_values
            .iter()
            .map(|(name, values)| Ok((name.clone(), values.iter().map(extension).collect::<PyResult<Vec<_>>>()?)))
            .collect::<PyResult<Vec<_>>>()?;
        let ids: Vec<&str> = ids.iter().map(|id| &**id).collect();
        let subjects: Vec<&str> = subjects.iter().map(|subject| &**subject).collect();
        let envelope = Envelope {
            type_: &self.type_,
            source_prefix: &self.source_prefix,
            ids: &ids,
            subjects: &subjects,
            extensions: &extensions,
        };
        let (buffer, offsets) = py
            .detach(|| {
                let rows = EventRows::new(&self.shape, &columns, ids.len(), None)?;
                encode_events(&rows, &self.time_field, &self.source_field, &envelope)
            })
            .map_err(PyValueError::new_err)?;
        bytes_list(py, &buffer, &offsets)
    }

    /// Each event's `data` alone, as bytes (JSON the event model reads back).
    fn encode_data<'py>(
        &self,
        py: Python<'py>,
        columns: &Bound<'py, PyDict>,
        count: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let extracted = extracted(columns, None)?;
        let columns = cells(&extracted);
        let (buffer, offsets) = py
            .detach(|| {
                let rows = EventRows::new(&self.shape, &columns, count, None)?;
                let mut out = Vec::with_capacity(count * 512);
                let mut offsets = vec![0];
                for row in 0..count {
                    rows.write_data(&mut out, row)?;
                    offsets.push(out.len());
                }
                Ok::<_, String>((out, offsets))
            })
            .map_err(PyValueError::new_err)?;
        bytes_list(py, &buffer, &offsets)
    }

    /// One CloudEvent per incident change, as bytes. Each change is a tuple `(subject, msg_id, change,
    /// incident_id, category, severity, district, late, opened_at, updated_at, received_at, sources,
    /// matched_rules, report_count, closed_reason | row)`: the times in epoch seconds (received_at may be
    /// None); the last value is the row (an int) of the event whose report an update is, in `columns` (of
    /// `count` events; None when no change is an update), or the reason (a str) of a `closed` change.
    fn encode_incident_changes<'py>(
        &self,
        py: Python<'py>,
        changes: &Bound<'py, PyList>,
        columns: Option<&Bound<'py, PyDict>>,
        count: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let extracted =
            columns.map(|columns| extracted(columns, Some(&REPORT_PROPERTIES))).transpose()?.unwrap_or_default();
        let columns = cells(&extracted);
        let fields = changes.iter().map(|change| change_fields(&change)).collect::<PyResult<Vec<_>>>()?;
        let changes = fields.iter().map(change).collect::<PyResult<Vec<_>>>()?;
        let (buffer, offsets) = py
            .detach(|| {
                let rows = match extracted.is_empty() {
                    true => None,
                    false => Some(EventRows::new(&self.shape, &columns, count, Some(&REPORT_PROPERTIES))?),
                };
                encode_incident_changes(&changes, rows.as_ref())
            })
            .map_err(PyValueError::new_err)?;
        bytes_list(py, &buffer, &offsets)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EventEncoder>()
}
