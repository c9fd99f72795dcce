//! Fast-ingest protocol frames for a run of `hub.nats.publisher.Message` objects (see `crate::frames`).

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict};

use crate::frames::{fast_ingest_frames as frames_of, Frame};

const MSG_ID: &str = "Nats-Msg-Id";

/// A message's parts as the frame builder reads them, borrowed from the Python objects.
struct Parts {
    subject: PyBackedStr,
    payload: PyBackedBytes,
    msg_id: PyBackedStr,
    headers: Vec<(PyBackedStr, PyBackedStr)>,
}

fn parts(message: &Bound<'_, PyAny>, conditions: Option<&Bound<'_, PyDict>>) -> PyResult<Parts> {
    let py = message.py();
    let mut headers = Vec::new();
    let own = message.getattr(intern!(py, "headers"))?;
    if !own.is_none() {
        headers.extend(pairs(own.cast::<PyDict>()?)?);
    }
    if let Some(conditions) = conditions {
        headers.extend(pairs(conditions)?);
    }
    Ok(Parts {
        subject: message.getattr(intern!(py, "subject"))?.extract()?,
        payload: message.getattr(intern!(py, "data"))?.extract()?,
        msg_id: message.getattr(intern!(py, "msg_id"))?.extract()?,
        headers,
    })
}

fn pairs(headers: &Bound<'_, PyDict>) -> PyResult<Vec<(PyBackedStr, PyBackedStr)>> {
    headers.iter().map(|(key, value)| Ok((key.extract()?, value.extract()?))).collect()
}

/// The HPUB frames of `messages`, numbered `first..` in a fast-ingest batch of `total` messages whose reply
/// subjects start with `reply_prefix`, in one bytes object. Each carries its `Nats-Msg-Id` and its own headers;
/// the first also carries `conditions` (the fence's). A subject with whitespace or a header name that is not a
/// token is a `ValueError`.
#[pyfunction]
#[pyo3(signature = (messages, reply_prefix, first, total, conditions=None))]
fn fast_ingest_frames<'py>(
    py: Python<'py>,
    messages: Vec<Bound<'py, PyAny>>,
    reply_prefix: &str,
    first: usize,
    total: usize,
    conditions: Option<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let parts = messages
        .iter()
        .enumerate()
        .map(|(index, message)| parts(message, if index == 0 { conditions.as_ref() } else { None }))
        .collect::<PyResult<Vec<_>>>()?;
    let buffer = py
        .detach(|| {
            let headers: Vec<Vec<(&str, &str)>> = parts
                .iter()
                .map(|part| {
                    let own = part.headers.iter().map(|(key, value)| (&**key, &**value));
                    std::iter::once((MSG_ID, &*part.msg_id)).chain(own).collect()
                })
                .collect();
            let frames: Vec<Frame<'_>> = parts
                .iter()
                .zip(&headers)
                .map(|(part, headers)| Frame { subject: &part.subject, headers, payload: &part.payload })
                .collect();
            frames_of(&frames, reply_prefix, first, total)
        })
        .map_err(|error| PyValueError::new_err(error.to_string()))?;
    Ok(PyBytes::new(py, &buffer))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fast_ingest_frames, m)?)
}
