//! Python binding of [`crate::rules`]: compiles rule specs into a shared rule set and matches whole
//! batches of event JSON with the GIL released. Match results are the per-rule Python objects given
//! at compile time, so a match costs no allocation on the Python side beyond the result lists.

use super::{hub_error, hub_error_with};
use crate::rules::{apply_jsonlogic, BatchMatches, CompileFailure, Condition, EventError, RuleSet, RuleSpec};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList};

/// `hub.errors.RuleError` whose `problems` lists `(rule_id, position, reason)`.
fn rule_error(py: Python<'_>, failure: CompileFailure) -> PyErr {
    let problems: Vec<(String, String, String)> = match &failure {
        CompileFailure::Rules(problems) => {
            problems.iter().map(|p| (p.rule_id.clone(), p.error.position.to_string(), p.error.reason.clone())).collect()
        }
        CompileFailure::Timezone(reason) => vec![(String::new(), "timezone".into(), reason.clone())],
    };
    let message = failure.to_string();
    hub_error_with(py, "RuleError", &message, (message.as_str(), problems))
}

fn event_error(py: Python<'_>, error: EventError) -> PyErr {
    hub_error(py, "InvalidEventError", error.to_string())
}

fn condition(kind: &str, source: String) -> PyResult<Condition> {
    match kind {
        "expression" => Ok(Condition::Expression(source)),
        "jsonlogic" => Ok(Condition::JsonLogic(source)),
        other => Err(PyValueError::new_err(format!("unknown condition kind {other:?}"))),
    }
}

#[pyclass(module = "hub._core", name = "CompiledRules", frozen)]
pub struct CompiledRules {
    rules: RuleSet,
    /// One object per rule (in input order), returned for each match.
    results: Vec<Py<PyAny>>,
}

/// Batches from this size up build their result lists with Python's cyclic garbage collector
/// paused (see [`with_gc_paused`]); smaller ones are not worth the three calls.
const GC_PAUSE_MIN_EVENTS: usize = 1024;

/// Runs `build` with the cyclic garbage collector paused, then restores it. A batch allocates one
/// list per event; every 700 allocations would otherwise start a collection that walks the new
/// lists (and now and then every older object) and finds nothing to free, since the lists only
/// hold the rule set's own result objects. No Python code runs meanwhile (the GIL is held).
fn with_gc_paused<'py, T>(py: Python<'py>, build: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    let gc = py.import("gc")?;
    if !gc.call_method0("isenabled")?.is_truthy()? {
        return build();
    }
    gc.call_method0("disable")?;
    let built = build();
    gc.call_method0("enable")?;
    built
}

impl CompiledRules {
    fn lists<'py>(&self, py: Python<'py>, matches: &BatchMatches) -> PyResult<Bound<'py, PyList>> {
        let build = || {
            let inner = (0..matches.len()).map(|index| self.list(py, matches.event(index)));
            PyList::new(py, inner.collect::<PyResult<Vec<_>>>()?)
        };
        if matches.len() >= GC_PAUSE_MIN_EVENTS {
            with_gc_paused(py, build)
        } else {
            build()
        }
    }

    /// Matches a batch with the GIL released, on one thread or (`parallel`) across cores. The
    /// events are only borrowed there, so their references are dropped later with the GIL held
    /// rather than queued for it one by one.
    fn match_detached(
        &self,
        py: Python<'_>,
        events: &[PyBackedBytes],
        first_only: bool,
        parallel: bool,
    ) -> PyResult<BatchMatches> {
        let rules = &self.rules;
        let matches = py.detach(|| {
            let slices: Vec<&[u8]> = events.iter().map(|e| e.as_ref()).collect();
            if parallel {
                rules.match_batch_parallel(&slices, first_only)
            } else {
                rules.match_batch(&slices, first_only)
            }
        });
        matches.map_err(|e| event_error(py, e))
    }

    /// One exact-size iterator, so the list is allocated once at its final length.
    fn list<'py>(&self, py: Python<'py>, rule_indices: &[u32]) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, rule_indices.iter().map(|&i| self.results.get(i as usize)))
    }
}

#[pymethods]
impl CompiledRules {
    /// `rules` are `(id, priority, kind, source)` with kind `"expression"` or `"jsonlogic"` (JSON text);
    /// `results[i]` is what a match of rule `i` returns.
    #[new]
    fn new(
        py: Python<'_>,
        rules: Vec<(String, i64, String, String)>,
        timezone: &str,
        results: Vec<Py<PyAny>>,
    ) -> PyResult<Self> {
        if results.len() != rules.len() {
            return Err(PyValueError::new_err("results must hold one object per rule"));
        }
        let specs = rules
            .into_iter()
            .map(|(id, priority, kind, source)| Ok(RuleSpec { id, priority, condition: condition(&kind, source)? }))
            .collect::<PyResult<Vec<_>>>()?;
        let compiled = py.detach(|| RuleSet::compile(&specs, timezone));
        let rules = compiled.map_err(|failure| rule_error(py, failure))?;
        Ok(CompiledRules { rules, results })
    }

    /// Matches one event (JSON bytes): the result objects of the matching rules, in priority order.
    fn match_one<'py>(&self, py: Python<'py>, event: &[u8], first_only: bool) -> PyResult<Bound<'py, PyList>> {
        let matches = self.rules.match_batch(&[event], first_only).map_err(|e| event_error(py, e))?;
        self.list(py, matches.event(0))
    }

    /// Matches a batch of events in one call, with the GIL released while matching; `parallel`
    /// splits a large batch across cores.
    fn match_many<'py>(
        &self,
        py: Python<'py>,
        events: Vec<PyBackedBytes>,
        first_only: bool,
        parallel: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let matches = self.match_detached(py, &events, first_only, parallel)?;
        self.lists(py, &matches)
    }

    /// [`Self::match_many`] as two native-endian buffers and no per-event objects: `offsets` (u64,
    /// one more than the events) and `rules` (u32 input indices); event `i` matched
    /// `rules[offsets[i]..offsets[i + 1]]`.
    fn match_indices<'py>(
        &self,
        py: Python<'py>,
        events: Vec<PyBackedBytes>,
        first_only: bool,
        parallel: bool,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let matches = self.match_detached(py, &events, first_only, parallel)?;
        let offsets: Vec<u8> = matches.offsets.iter().flat_map(|&o| (o as u64).to_ne_bytes()).collect();
        let rules: Vec<u8> = matches.rules.iter().flat_map(|r| r.to_ne_bytes()).collect();
        Ok((PyBytes::new(py, &offsets), PyBytes::new(py, &rules)))
    }

    /// `(events, [(matches, missing), ...])` with one pair per rule, in input order.
    fn stats(&self) -> (u64, Vec<(u64, u64)>) {
        let (events, per_rule) = self.rules.stats();
        (events, per_rule.into_iter().map(|s| (s.matches, s.missing)).collect())
    }

    fn __len__(&self) -> usize {
        self.rules.len()
    }
}

/// Applies one JsonLogic rule (JSON text) to data (JSON text) with plain JsonLogic semantics;
/// returns the result as JSON text.
#[pyfunction]
fn jsonlogic_apply(py: Python<'_>, logic: &str, data: &str, timezone: &str) -> PyResult<String> {
    let parse = |text: &str, what: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| PyValueError::new_err(format!("{what} is not JSON: {e}")))
    };
    let (logic, data) = (parse(logic, "logic")?, parse(data, "data")?);
    let result = apply_jsonlogic(&logic, &data, timezone).map_err(|e| hub_error(py, "RuleError", e))?;
    Ok(result.to_string())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CompiledRules>()?;
    m.add_function(wrap_pyfunction!(jsonlogic_apply, m)?)?;
    Ok(())
}
