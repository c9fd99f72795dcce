//! Python binding of [`crate::incidents`].
//!
//! Batches are read out of Python objects while the GIL is held (dedup keys are hashed on the way; merging
//! holds the str objects and reads their UTF-8 in place), then the core runs with the GIL released, then
//! results are built as Python lists.

use hashbrown::HashMap;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};
use pyo3::Borrowed;

use super::hub_error;
use crate::incidents::{
    idempotency_key, CategoryLimits, Closed, DedupStats, Deduper, ExpiringBatch, IncidentError, IncidentId,
    IncidentMerger, MergeEvent, MergeOutcome, MergePolicy, MergerStats,
};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDeduper>()?;
    m.add_class::<PyCompiledMergePolicy>()?;
    m.add_class::<PyIncidentMerger>()?;
    m.add_class::<PyMergeResult>()?;
    Ok(())
}

/// Maps a core error to the matching `hub.errors` class.
fn to_py_err(py: Python<'_>, error: IncidentError) -> PyErr {
    let class = match error {
        IncidentError::InvalidEvent { .. } | IncidentError::InvalidArgument(_) => "InvalidEventError",
        IncidentError::InvalidConfig { .. } => "ConfigError",
        IncidentError::InvalidSnapshot(_) => "SnapshotError",
    };
    hub_error(py, class, error.to_string())
}

/// Runs `work` (a snapshot or delta of a core object) without the GIL and hands its bytes to Python.
fn detached_bytes<'py>(
    py: Python<'py>,
    work: impl FnOnce() -> Result<Vec<u8>, IncidentError> + Send,
) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = py.detach(work).map_err(|e| to_py_err(py, e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Rebuilds a core object without the GIL: `restore` reads the full snapshot, then `apply` replays each
/// delta taken after it, in order.
fn restore_detached<T: Send>(
    py: Python<'_>,
    restore: impl FnOnce() -> Result<T, IncidentError> + Send,
    deltas: &[Vec<u8>],
    apply: impl Fn(&mut T, &[u8]) -> Result<(), IncidentError> + Send + Sync,
) -> PyResult<T> {
    py.detach(|| {
        let mut restored = restore()?;
        deltas.iter().try_for_each(|delta| apply(&mut restored, delta))?;
        Ok(restored)
    })
    .map_err(|e| to_py_err(py, e))
}

#[cold]
fn bad_item(py: Python<'_>, index: usize, field: &str, expected: &str, item: &Bound<'_, PyAny>) -> PyErr {
    let got = item.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    to_py_err(py, IncidentError::InvalidEvent { index, reason: format!("{field}: expected {expected}, got {got}") })
}

/// Calls `each(index, item)` for every item of a list, tuple or other iterable.
fn for_each_item<'py>(
    sequence: &Bound<'py, PyAny>,
    field: &str,
    each: impl FnMut(usize, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<usize> {
    // Lists and tuples are read by index: half the cost of the generic iterator protocol per item.
    if let Ok(list) = sequence.cast::<PyList>() {
        return for_each_counted(list.iter().map(Ok), each);
    }
    if let Ok(tuple) = sequence.cast::<PyTuple>() {
        return for_each_counted(tuple.iter().map(Ok), each);
    }
    let py = sequence.py();
    let iterator = sequence.try_iter().map_err(|_| {
        let got = sequence.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        to_py_err(py, IncidentError::InvalidArgument(format!("{field}: expected a sequence, got {got}")))
    })?;
    for_each_counted(iterator, each)
}

/// Like [`for_each_item`], but a list's items are lent rather than each given a new reference: no write to
/// every item's reference count (on a batch of 1M keys that write was a third of the cache misses of
/// reading it). Only for an `each` that runs no Python code with the lent item, so that the list cannot
/// change while an item is lent; `each` takes its own reference first if it must run some.
fn for_each_item_lent<'py>(
    sequence: &Bound<'py, PyAny>,
    field: &str,
    mut each: impl FnMut(usize, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<usize> {
    let Ok(list) = sequence.cast::<PyList>() else {
        return for_each_item(sequence, field, each);
    };
    let py = sequence.py();
    let mut index = 0;
    while index < list.len() {
        // SAFETY: the GIL is held and `index` is in bounds; the item stays alive while it is in the list,
        // and the list does not change before `each` returns (no Python code runs with the lent item).
        let item =
            unsafe { Borrowed::from_ptr_or_err(py, ffi::PyList_GetItem(list.as_ptr(), index as ffi::Py_ssize_t))? };
        each(index, &item)?;
        index += 1;
    }
    Ok(index)
}

fn for_each_counted<'py>(
    items: impl Iterator<Item = PyResult<Bound<'py, PyAny>>>,
    mut each: impl FnMut(usize, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<usize> {
    let mut count = 0;
    for item in items {
        each(count, &item?)?;
        count += 1;
    }
    Ok(count)
}

/// The length of a sized sequence (0 for other iterables): the capacity to reserve for its items.
fn size_hint(sequence: &Bound<'_, PyAny>) -> usize {
    sequence.len().unwrap_or(0)
}

/// The error for a str that has no UTF-8 (lone surrogates), naming the event.
#[cold]
fn not_unicode(py: Python<'_>, index: usize, field: &str) -> PyErr {
    to_py_err(
        py,
        IncidentError::InvalidEvent { index, reason: format!("{field}: not valid Unicode (a lone surrogate?)") },
    )
}

/// The string's UTF-8, or an error naming the event for strings that have none.
fn utf8<'a>(text: &'a Bound<'_, PyString>, index: usize, field: &str) -> PyResult<&'a str> {
    text.to_str().map_err(|_| not_unicode(text.py(), index, field))
}

fn extract_f64(item: &Bound<'_, PyAny>, index: usize, field: &str) -> PyResult<f64> {
    item.extract::<f64>().map_err(|_| bad_item(item.py(), index, field, "a number", item))
}

fn extract_optional_f64(item: &Bound<'_, PyAny>, index: usize, field: &str) -> PyResult<Option<f64>> {
    unless_none(item, |item| {
        item.extract::<f64>().map_err(|_| bad_item(item.py(), index, field, "a number or None", item))
    })
}

/// None for a Python `None`, else what `read` makes of the item.
#[inline]
fn unless_none<'py, T>(
    item: &Bound<'py, PyAny>,
    read: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
) -> PyResult<Option<T>> {
    if item.is_none() {
        Ok(None)
    } else {
        read(item).map(Some)
    }
}

/// `[False] * n` with True where `values` says so.
fn bool_list<'py>(py: Python<'py>, values: &[bool]) -> PyResult<Bound<'py, PyList>> {
    mostly_list(py, false, values.iter().copied())
}

/// `[usual] * n` (one bulk fill), then the values that differ from `usual` set one by one: cheaper than
/// setting every item when most are `usual`, as with duplicates (False), or report counts (1).
fn mostly_list<'py, T>(
    py: Python<'py>,
    usual: T,
    values: impl ExactSizeIterator<Item = T>,
) -> PyResult<Bound<'py, PyList>>
where
    T: Copy + PartialEq + IntoPyObject<'py>,
{
    let list = PyList::new(py, [usual])?.as_any().mul(values.len())?.cast_into::<PyList>()?;
    for (index, value) in values.enumerate().filter(|&(_, value)| value != usual) {
        list.set_item(index, value)?;
    }
    Ok(list)
}

fn stats_dict<'py>(py: Python<'py>, entries: &[(&str, u64)]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (name, value) in entries {
        dict.set_item(name, value)?;
    }
    Ok(dict)
}

/// Exact dedup by idempotency key within a window, with a bound on live keys. See hub/incidents.py.
#[pyclass(module = "hub._core", name = "Deduper")]
struct PyDeduper {
    inner: Deduper,
}

#[pymethods]
impl PyDeduper {
    #[new]
    fn new(py: Python<'_>, window_s: f64, max_keys: u64) -> PyResult<Self> {
        Deduper::new(window_s, max_keys).map(|inner| Self { inner }).map_err(|e| to_py_err(py, e))
    }

    /// One bool per key, true for duplicates; new keys are recorded. Keys are str or bytes.
    fn check_many<'py>(
        &mut self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut batch = self.inner.batch(size_hint(keys));
        for_each_item_lent(keys, "keys", |i, item| {
            let hash = if let Ok(text) = item.cast::<PyString>() {
                idempotency_key(utf8(text, i, "keys")?.as_bytes())
            } else if let Ok(bytes) = item.cast::<PyBytes>() {
                idempotency_key(bytes.as_bytes())
            } else {
                return Err(bad_item(py, i, "keys", "str or bytes", item));
            };
            batch.push_key(hash);
            Ok(())
        })?;
        for_each_item_lent(times, "times", |i, item| {
            let time = match item.cast_exact::<PyFloat>() {
                Ok(float) => float.value(),
                // Converting another object may run its `__float__`.
                Err(_) => extract_f64(&item.to_owned(), i, "times")?,
            };
            batch.push_time(time);
            Ok(())
        })?;
        let duplicates = py.detach(|| batch.check()).map_err(|e| to_py_err(py, e))?;
        bool_list(py, &duplicates)
    }

    /// The whole state as bytes.
    fn snapshot<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &mut self.inner;
        detached_bytes(py, || inner.snapshot())
    }

    /// The changes since the last snapshot or delta.
    fn snapshot_delta<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &mut self.inner;
        detached_bytes(py, || inner.snapshot_delta())
    }

    /// A deduper rebuilt from a full snapshot followed by the deltas taken after it, in order.
    #[staticmethod]
    #[pyo3(signature = (data, deltas = Vec::new()))]
    fn restore(py: Python<'_>, data: &[u8], deltas: Vec<Vec<u8>>) -> PyResult<Self> {
        restore_detached(py, || Deduper::restore(data), &deltas, Deduper::apply).map(|inner| Self { inner })
    }

    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let DedupStats { live_keys, evicted, expired, duplicates } = self.inner.stats();
        stats_dict(
            py,
            &[("live_keys", live_keys), ("evicted", evicted), ("expired", expired), ("duplicates", duplicates)],
        )
    }

    #[getter]
    fn window_s(&self) -> f64 {
        self.inner.window_s()
    }

    #[getter]
    fn max_keys(&self) -> u64 {
        self.inner.max_keys()
    }
}

/// A validated merge policy, built once by hub.incidents.MergePolicy.
#[pyclass(module = "hub._core", name = "CompiledMergePolicy", frozen)]
struct PyCompiledMergePolicy {
    inner: MergePolicy,
}

#[pymethods]
impl PyCompiledMergePolicy {
    #[new]
    #[pyo3(signature = (groups, default, per_category, text_similarity, incident_ttl_s))]
    fn new(
        py: Python<'_>,
        groups: Vec<(String, Vec<String>)>,
        default: (f64, f64),
        per_category: Vec<(String, f64, f64)>,
        text_similarity: f64,
        incident_ttl_s: Option<f64>,
    ) -> PyResult<Self> {
        let limits = |(distance_m, window_s): (f64, f64)| CategoryLimits { distance_m, window_s };
        let per_category = per_category.into_iter().map(|(name, d, w)| (name, limits((d, w)))).collect();
        MergePolicy::new(groups, limits(default), per_category, text_similarity, incident_ttl_s)
            .map(|inner| Self { inner })
            .map_err(|e| to_py_err(py, e))
    }

    /// The largest merge distance of any category, in metres.
    #[getter]
    fn search_radius_m(&self) -> f64 {
        self.inner.search_radius_m()
    }
}

/// The outcome for one event: the incident it belongs to, whether it opened it, and the report count.
#[pyclass(module = "hub.incidents", name = "MergeResult", frozen, eq, hash, get_all)]
#[derive(PartialEq, Eq, Hash)]
struct PyMergeResult {
    incident_id: String,
    is_new: bool,
    report_count: u32,
}

#[pymethods]
impl PyMergeResult {
    #[new]
    fn new(incident_id: String, is_new: bool, report_count: u32) -> Self {
        Self { incident_id, is_new, report_count }
    }

    fn __repr__(&self) -> String {
        format!(
            "MergeResult(incident_id={:?}, is_new={}, report_count={})",
            self.incident_id,
            if self.is_new { "True" } else { "False" },
            self.report_count
        )
    }
}

/// One event of a batch. Its strings are the Python str objects themselves, held ([`PyBackedStr`]): the core
/// reads their UTF-8 in place with the GIL released, nothing is copied.
struct RawEvent {
    event_id: PyBackedStr,
    time: f64,
    /// The event's category in [`Batch::categories`].
    category: usize,
    location: Option<(f64, f64)>,
    address: Option<PyBackedStr>,
    text: Option<PyBackedStr>,
}

struct Batch {
    /// The batch's category strings, each distinct str object once (see [`Categories`]).
    categories: Vec<PyBackedStr>,
    events: Vec<RawEvent>,
}

impl Batch {
    fn views(&self) -> Vec<MergeEvent<'_>> {
        self.events
            .iter()
            .map(|e| MergeEvent {
                event_id: &e.event_id,
                time: e.time,
                category: self.categories.get(e.category).map_or("", |c| c),
                location: e.location,
                address: e.address.as_deref(),
                text: e.text.as_deref(),
            })
            .collect()
    }
}

/// The item as a held str, or an error naming the event.
#[inline]
fn held_str(item: &Bound<'_, PyAny>, index: usize, field: &str, expected: &str) -> PyResult<PyBackedStr> {
    let text = item.cast::<PyString>().map_err(|_| bad_item(item.py(), index, field, expected, item))?;
    PyBackedStr::try_from(text.to_owned()).map_err(|_| not_unicode(item.py(), index, field))
}

#[inline]
fn held_optional_str(item: &Bound<'_, PyAny>, index: usize, field: &str) -> PyResult<Option<PyBackedStr>> {
    unless_none(item, |item| held_str(item, index, field, "str or None"))
}

/// A number item that may be lent: exact floats are read in place; converting another object may run its
/// `__float__`, so that is done on a reference of our own.
#[inline(always)]
fn lent_f64(item: &Bound<'_, PyAny>, index: usize, field: &str, expected: &str) -> PyResult<f64> {
    match item.cast_exact::<PyFloat>() {
        Ok(float) => Ok(float.value()),
        Err(_) => item.to_owned().extract::<f64>().map_err(|_| bad_item(item.py(), index, field, expected, item)),
    }
}

#[inline]
fn lent_optional_f64(item: &Bound<'_, PyAny>, index: usize, field: &str) -> PyResult<Option<f64>> {
    unless_none(item, |item| lent_f64(item, index, field, "a number or None"))
}

/// The distinct category str objects of a batch, recognised by identity: events of one category then share
/// one string, which also lets the core recognise the category without hashing its name. The objects are
/// held, so an address seen cannot be reused by another string during the batch.
struct Categories {
    /// (object address, index in the batch's categories) of the first few distinct objects.
    seen: Vec<(usize, usize)>,
}

impl Categories {
    /// Only a few categories are remembered; further ones are held once per event.
    const REMEMBERED: usize = 32;

    fn new() -> Self {
        Self { seen: Vec::new() }
    }

    /// The index in `held` of the item's category, adding it when new.
    #[inline(always)]
    fn index(&mut self, held: &mut Vec<PyBackedStr>, item: &Bound<'_, PyAny>, index: usize) -> PyResult<usize> {
        let address = item.as_ptr() as usize;
        if let Some(&(_, known)) = self.seen.iter().find(|(seen, _)| *seen == address) {
            return Ok(known);
        }
        held.push(held_str(item, index, "category", "str")?);
        if self.seen.len() < Self::REMEMBERED {
            self.seen.push((address, held.len() - 1));
        }
        Ok(held.len() - 1)
    }
}

#[inline]
fn location(py: Python<'_>, index: usize, lon: Option<f64>, lat: Option<f64>) -> PyResult<Option<(f64, f64)>> {
    match (lon, lat) {
        (Some(lon), Some(lat)) => Ok(Some((lon, lat))),
        (None, None) => Ok(None),
        _ => Err(unpaired_location(py, index)),
    }
}

#[cold]
fn unpaired_location(py: Python<'_>, index: usize) -> PyErr {
    to_py_err(
        py,
        IncidentError::InvalidEvent { index, reason: "lon and lat must both be given or both be None".into() },
    )
}

/// Reads rows `(event_id, time, category[, lon, lat, address, text])`, e.g. hub.incidents.MergeInput.
fn rows_to_batch(rows: &Bound<'_, PyAny>) -> PyResult<Batch> {
    let py = rows.py();
    let mut batch = Batch { categories: Vec::new(), events: Vec::with_capacity(size_hint(rows)) };
    let mut categories = Categories::new();
    for_each_item(rows, "events", |index, row| {
        let row = row.cast::<PyTuple>().map_err(|_| bad_item(py, index, "event", "a MergeInput (tuple)", row))?;
        let len = row.len();
        if !(3..=7).contains(&len) {
            return Err(to_py_err(
                py,
                IncidentError::InvalidEvent {
                    index,
                    reason: format!(
                        "expected 3 to 7 fields (event_id, time, category, lon, lat, address, text), got {len}"
                    ),
                },
            ));
        }
        let none = py.None().into_bound(py);
        let field = |i: usize| {
            if i < len {
                row.get_item(i)
            } else {
                Ok(none.clone())
            }
        };
        let event_id = held_str(&field(0)?, index, "event_id", "str")?;
        let time = extract_f64(&field(1)?, index, "time")?;
        let category = categories.index(&mut batch.categories, &field(2)?, index)?;
        let lon = extract_optional_f64(&field(3)?, index, "lon")?;
        let lat = extract_optional_f64(&field(4)?, index, "lat")?;
        let address = held_optional_str(&field(5)?, index, "address")?;
        let text = held_optional_str(&field(6)?, index, "text")?;
        let location = location(py, index, lon, lat)?;
        batch.events.push(RawEvent { event_id, time, category, location, address, text });
        Ok(())
    })?;
    Ok(batch)
}

/// Reads one column into the batch's events, `fill(event, item, index)` per item (lent: `fill` must run no
/// Python code with it, see [`for_each_item_lent`]); checks the column has one item per event. `None`
/// instead of a sequence, for an optional column, leaves every event's field None.
fn fill_column<'py>(
    events: &mut [RawEvent],
    column: &Bound<'py, PyAny>,
    field: &str,
    optional: bool,
    mut fill: impl FnMut(&mut RawEvent, &Bound<'py, PyAny>, usize) -> PyResult<()>,
) -> PyResult<()> {
    if optional && column.is_none() {
        return Ok(());
    }
    let seen = for_each_item_lent(column, field, |i, item| match events.get_mut(i) {
        Some(event) => fill(event, item, i),
        None => Ok(()),
    })?;
    check_length(column.py(), field, seen, events.len())
}

fn check_length(py: Python<'_>, field: &str, seen: usize, count: usize) -> PyResult<()> {
    if seen == count {
        Ok(())
    } else {
        Err(to_py_err(
            py,
            IncidentError::InvalidEvent {
                index: seen.min(count),
                reason: format!("column {field} has {seen} items but event_ids has {count}"),
            },
        ))
    }
}

/// Reads the columns straight into one event per id: no per-column vectors in between.
#[allow(clippy::too_many_arguments)]
fn columns_to_batch(
    event_ids: &Bound<'_, PyAny>,
    times: &Bound<'_, PyAny>,
    categories: &Bound<'_, PyAny>,
    lons: &Bound<'_, PyAny>,
    lats: &Bound<'_, PyAny>,
    addresses: &Bound<'_, PyAny>,
    texts: &Bound<'_, PyAny>,
) -> PyResult<Batch> {
    let py = event_ids.py();
    let mut batch = Batch { categories: Vec::new(), events: Vec::with_capacity(size_hint(event_ids)) };
    for_each_item_lent(event_ids, "event_ids", |i, item| {
        batch.events.push(RawEvent {
            event_id: held_str(item, i, "event_id", "str")?,
            time: 0.0,
            category: 0,
            location: None,
            address: None,
            text: None,
        });
        Ok(())
    })?;
    let events = &mut batch.events;
    fill_column(events, times, "times", false, |event, item, i| {
        event.time = lent_f64(item, i, "time", "a number")?;
        Ok(())
    })?;
    let mut distinct = Categories::new();
    fill_column(events, categories, "categories", false, |event, item, i| {
        event.category = distinct.index(&mut batch.categories, item, i)?;
        Ok(())
    })?;
    let mut lons_read = vec![None; events.len()];
    fill_column(events, lons, "lons", true, |_, item, i| {
        if let Some(lon) = lons_read.get_mut(i) {
            *lon = lent_optional_f64(item, i, "lon")?;
        }
        Ok(())
    })?;
    if lats.is_none() {
        for (i, lon) in lons_read.into_iter().enumerate() {
            location(py, i, lon, None)?;
        }
    } else {
        fill_column(events, lats, "lats", false, |event, item, i| {
            let lon = lons_read.get(i).copied().flatten();
            event.location = location(py, i, lon, lent_optional_f64(item, i, "lat")?)?;
            Ok(())
        })?;
    }
    fill_column(events, addresses, "addresses", true, |event, item, i| {
        event.address = held_optional_str(item, i, "address")?;
        Ok(())
    })?;
    fill_column(events, texts, "texts", true, |event, item, i| {
        event.text = held_optional_str(item, i, "text")?;
        Ok(())
    })?;
    Ok(batch)
}

/// Merges events into incidents. See hub/incidents.py.
#[pyclass(module = "hub._core", name = "IncidentMerger")]
struct PyIncidentMerger {
    inner: IncidentMerger,
    /// The Python str of each open incident's id by slot, with the incident's opening number: made once per
    /// incident, then shared by every result that names it and by the list `expire` returns.
    id_strings: Vec<Option<(u64, Py<PyString>)>>,
}

impl PyIncidentMerger {
    fn wrap(inner: IncidentMerger) -> Self {
        Self { inner, id_strings: Vec::new() }
    }

    fn merge(&mut self, py: Python<'_>, batch: &Batch) -> PyResult<Vec<MergeOutcome>> {
        let inner = &mut self.inner;
        let events = batch.views();
        py.detach(|| inner.add_many(&events)).map_err(|e| to_py_err(py, e))
    }

    fn merge_expiring(&mut self, py: Python<'_>, batch: &Batch, watermark: f64) -> PyResult<ExpiringBatch> {
        let inner = &mut self.inner;
        let events = batch.views();
        py.detach(|| inner.add_many_expiring(&events, watermark)).map_err(|e| to_py_err(py, e))
    }

    /// The id of the outcome's incident as a Python str, made on first use. `closed_later` knows the ids
    /// of the incidents the batch closed, which the merger no longer holds.
    fn incident_id<'py>(
        &mut self,
        py: Python<'py>,
        outcome: &MergeOutcome,
        closed_later: &mut ClosedLater<'_>,
    ) -> PyResult<Bound<'py, PyString>> {
        let slot = outcome.incident as usize;
        if let Some(Some((seq, id))) = self.id_strings.get(slot) {
            if *seq == outcome.seq {
                return Ok(id.bind(py).clone());
            }
        }
        let bytes = self
            .inner
            .incident_id(outcome)
            .or_else(|| closed_later.id(outcome.seq))
            .map_or(&[][..], IncidentId::as_bytes);
        let id = PyString::from_bytes(py, bytes)?;
        if self.id_strings.len() <= slot {
            self.id_strings.resize_with(slot + 1, || None);
        }
        if let Some(entry) = self.id_strings.get_mut(slot) {
            *entry = Some((outcome.seq, id.clone().unbind()));
        }
        Ok(id)
    }

    /// The id of an incident that expired, taken from the cache when it is there.
    fn closed_id<'py>(&mut self, py: Python<'py>, closed: &Closed) -> PyResult<Bound<'py, PyString>> {
        let cached = self
            .id_strings
            .get_mut(closed.incident as usize)
            .and_then(|entry| entry.take_if(|(seq, _)| *seq == closed.seq));
        match cached {
            Some((_, id)) => Ok(id.into_bound(py)),
            None => PyString::from_bytes(py, closed.id.as_bytes()),
        }
    }

    /// The batch's incident ids, one per event, and its closes as (positions, incident ids, deadlines)
    /// lists: no Python container per close (each would count towards, and a collection would walk, the
    /// young objects, among them the batch's columns). Made in the order things happened, so each id
    /// string is made once: an incident that closed mid-batch leaves its slot to a later one.
    fn expiring_ids<'py>(
        &mut self,
        py: Python<'py>,
        merged: &ExpiringBatch,
    ) -> PyResult<(Bound<'py, PyList>, ClosedLists<'py>)> {
        let mut closed_later = ClosedLater::new(&merged.closed);
        let mut ids = Vec::with_capacity(merged.outcomes.len());
        let mut closed_ids = Vec::with_capacity(merged.closed.len());
        let mut pending = merged.closed.iter().peekable();
        for (position, outcome) in merged.outcomes.iter().enumerate() {
            while let Some((_, closed)) = pending.next_if(|(at, _)| *at == position) {
                closed_ids.push(self.closed_id(py, closed)?);
            }
            ids.push(self.incident_id(py, outcome, &mut closed_later)?);
        }
        let positions = merged.closed.iter().map(|&(position, _)| position);
        let deadlines = merged.closed.iter().map(|(_, closed)| closed.deadline);
        let closed = (PyList::new(py, positions)?, PyList::new(py, closed_ids)?, PyList::new(py, deadlines)?);
        Ok((PyList::new(py, ids)?, closed))
    }

    fn expire_detached(&mut self, py: Python<'_>, now: f64) -> PyResult<Vec<Closed>> {
        let inner = &mut self.inner;
        py.detach(|| inner.expire(now)).map_err(|e| to_py_err(py, e))
    }
}

/// The closes of a batch as Python lists: positions, incident ids, deadlines.
type ClosedLists<'py> = (Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>);

/// The ids of the incidents a batch closed, found by opening number. Indexed on the first question:
/// only an incident that opened and closed within one batch is asked for, so most batches never build it.
struct ClosedLater<'a> {
    closed: &'a [(usize, Closed)],
    by_seq: Option<HashMap<u64, &'a IncidentId>>,
}

impl<'a> ClosedLater<'a> {
    fn new(closed: &'a [(usize, Closed)]) -> Self {
        Self { closed, by_seq: None }
    }

    fn id(&mut self, seq: u64) -> Option<&'a IncidentId> {
        let closed = self.closed;
        self.by_seq.get_or_insert_with(|| closed.iter().map(|(_, c)| (c.seq, &c.id)).collect()).get(&seq).copied()
    }
}

/// The `is_new` and `report_counts` lists of a batch.
fn outcome_lists<'py>(
    py: Python<'py>,
    outcomes: &[MergeOutcome],
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    // Most events of a busy stream open an incident; the others' counts vary.
    let new = mostly_list(py, true, outcomes.iter().map(|o| o.is_new))?;
    let counts = mostly_list(py, 1, outcomes.iter().map(|o| o.report_count))?;
    Ok((new, counts))
}

#[pymethods]
impl PyIncidentMerger {
    #[new]
    fn new(policy: &PyCompiledMergePolicy) -> Self {
        Self::wrap(IncidentMerger::new(policy.inner.clone()))
    }

    /// Merges rows (MergeInput tuples) in order; one MergeResult per row.
    fn add_many(&mut self, py: Python<'_>, events: &Bound<'_, PyAny>) -> PyResult<Vec<PyMergeResult>> {
        let outcomes = self.merge(py, &rows_to_batch(events)?)?;
        Ok(outcomes
            .iter()
            .map(|o| PyMergeResult {
                incident_id: self.inner.incident_id(o).map_or_else(String::new, |id| id.as_str().to_owned()),
                is_new: o.is_new,
                report_count: o.report_count,
            })
            .collect())
    }

    /// Merges a batch given as columns; returns (incident_ids, is_new, report_counts) lists.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (event_ids, times, categories, lons = None, lats = None, addresses = None, texts = None))]
    fn add_columns<'py>(
        &mut self,
        py: Python<'py>,
        event_ids: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
        categories: &Bound<'py, PyAny>,
        lons: Option<&Bound<'py, PyAny>>,
        lats: Option<&Bound<'py, PyAny>>,
        addresses: Option<&Bound<'py, PyAny>>,
        texts: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        let none = py.None().into_bound(py);
        let or_none = |column: Option<&Bound<'py, PyAny>>| column.cloned().unwrap_or_else(|| none.clone());
        let batch = columns_to_batch(
            event_ids,
            times,
            categories,
            &or_none(lons),
            &or_none(lats),
            &or_none(addresses),
            &or_none(texts),
        )?;
        let outcomes = self.merge(py, &batch)?;
        let mut no_closes = ClosedLater::new(&[]);
        let ids = outcomes.iter().map(|o| self.incident_id(py, o, &mut no_closes)).collect::<PyResult<Vec<_>>>()?;
        let (new, counts) = outcome_lists(py, &outcomes)?;
        Ok((PyList::new(py, ids)?, new, counts))
    }

    /// `add_columns` with expiry on a running watermark (see `IncidentMerger::add_many_expiring`): returns
    /// (incident_ids, is_new, report_counts, (positions, closed incident_ids, deadlines), watermark).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn add_columns_expiring<'py>(
        &mut self,
        py: Python<'py>,
        event_ids: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
        categories: &Bound<'py, PyAny>,
        lons: &Bound<'py, PyAny>,
        lats: &Bound<'py, PyAny>,
        addresses: &Bound<'py, PyAny>,
        texts: &Bound<'py, PyAny>,
        watermark: f64,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>, ClosedLists<'py>, f64)> {
        let batch = columns_to_batch(event_ids, times, categories, lons, lats, addresses, texts)?;
        let merged = self.merge_expiring(py, &batch, watermark)?;
        let (ids, closed) = self.expiring_ids(py, &merged)?;
        let (new, counts) = outcome_lists(py, &merged.outcomes)?;
        Ok((ids, new, counts, closed, merged.watermark))
    }

    /// Closes an open incident; False when no open incident has that id.
    fn close(&mut self, incident_id: &str) -> bool {
        self.inner.close(incident_id)
    }

    /// Closes incidents whose last report is older than their time-to-live at `now`; their ids.
    fn expire<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Bound<'py, PyList>> {
        let closed = self.expire_detached(py, now)?;
        let ids = closed.iter().map(|c| self.closed_id(py, c)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, ids)
    }

    /// `expire` that gives (incident_id, deadline) for each incident it closed.
    fn expire_with_deadlines<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Bound<'py, PyList>> {
        let closed = self.expire_detached(py, now)?;
        let closes = closed.iter().map(|c| Ok((self.closed_id(py, c)?, c.deadline))).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, closes)
    }

    /// Swaps in a new policy without losing open incidents.
    fn update_policy(&mut self, policy: &PyCompiledMergePolicy) {
        self.inner.update_policy(policy.inner.clone());
    }

    /// The whole state as bytes.
    fn snapshot<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &mut self.inner;
        detached_bytes(py, || inner.snapshot())
    }

    /// The changes since the last snapshot or delta.
    fn snapshot_delta<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &mut self.inner;
        detached_bytes(py, || inner.snapshot_delta())
    }

    #[staticmethod]
    #[pyo3(signature = (data, policy, deltas = Vec::new()))]
    fn restore(py: Python<'_>, data: &[u8], policy: &PyCompiledMergePolicy, deltas: Vec<Vec<u8>>) -> PyResult<Self> {
        let policy = policy.inner.clone();
        restore_detached(py, || IncidentMerger::restore(data, policy), &deltas, IncidentMerger::apply).map(Self::wrap)
    }

    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let MergerStats { events, opened, merged, closed, open_incidents } = self.inner.stats();
        stats_dict(
            py,
            &[
                ("events", events),
                ("opened", opened),
                ("merged", merged),
                ("closed", closed),
                ("open_incidents", open_incidents),
            ],
        )
    }
}
