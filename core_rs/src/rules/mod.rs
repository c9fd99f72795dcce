//! Rule compilation (expressions and JsonLogic) and indexed matching.
//!
//! A rule set compiles once: both syntaxes become one tree ([`ast`]), every event field the rules
//! read gets a slot ([`fields`]), and rules are indexed by the `category` they require, so an event
//! is evaluated only against its category's rules plus those that accept any category. Matching
//! parses just the wanted fields of each event ([`extract`]) and evaluates with three-valued logic
//! for missing fields ([`eval`]).

mod ast;
mod builder;
mod eval;
mod expr;
mod extract;
mod fields;
mod index;
mod jsonlogic;
mod value;

use ast::{Node, VarRef};
use builder::Builder;
use eval::{Context, Event, Mode, Unknown};
use extract::{PathTrie, Slots};
use rayon::prelude::*;
use regex::Regex;
use serde_json::Value;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

pub use ast::OP_NAMES;

/// A rule's condition in one of the two accepted syntaxes.
#[derive(Debug, Clone)]
pub enum Condition {
    /// The expression language, e.g. `category == "gas_leak" && payload.ppm >= 5000`.
    Expression(String),
    /// JsonLogic as JSON text.
    JsonLogic(String),
}

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub id: String,
    /// Higher runs first; equal priorities keep the order the rules were given in.
    pub priority: i64,
    pub condition: Condition,
}

/// Where in a rule's source a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// 1-based line and column (in characters) of the expression or JSON text.
    LineColumn { line: usize, column: usize },
    /// A JSON Pointer into a JsonLogic rule.
    Pointer(String),
    /// The rule as a whole (duplicate id, ...).
    Rule,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::LineColumn { line, column } => write!(f, "line {line}, column {column}"),
            Position::Pointer(pointer) => write!(f, "JsonLogic {pointer}"),
            Position::Rule => f.write_str("rule"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub position: Position,
    pub reason: String,
}

impl CompileError {
    pub fn at_offset(source: &str, offset: usize, reason: impl Into<String>) -> CompileError {
        let before = source.get(..offset).unwrap_or(source);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        CompileError { position: Position::LineColumn { line, column }, reason: reason.into() }
    }

    pub fn at_pointer(pointer: &str, reason: impl Into<String>) -> CompileError {
        CompileError { position: Position::Pointer(pointer.to_owned()), reason: reason.into() }
    }
}

/// A rule that did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub rule_id: String,
    pub error: CompileError,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {:?} at {}: {}", self.rule_id, self.error.position, self.error.reason)
    }
}

#[derive(Debug)]
pub enum CompileFailure {
    Timezone(String),
    Rules(Vec<RuleProblem>),
}

impl fmt::Display for CompileFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileFailure::Timezone(reason) => f.write_str(reason),
            CompileFailure::Rules(problems) => {
                write!(f, "{} rule(s) do not compile", problems.len())?;
                problems.iter().try_for_each(|p| write!(f, "\n  {p}"))
            }
        }
    }
}

/// An event that is not JSON at all (a JSON value of the wrong shape simply matches nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub index: usize,
    pub reason: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {} is not valid JSON: {}", self.index, self.reason)
    }
}

struct CompiledRule {
    /// Position in the list given to [`RuleSet::compile`].
    input_index: u32,
    condition: Node,
    matches: AtomicU64,
    missing: AtomicU64,
}

/// Matches of a batch, flattened: event `i` matched `rules[offsets[i]..offsets[i + 1]]` (input
/// indices of the rules, in priority order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchMatches {
    pub offsets: Vec<usize>,
    pub rules: Vec<u32>,
}

impl BatchMatches {
    pub fn event(&self, index: usize) -> &[u32] {
        match (self.offsets.get(index), self.offsets.get(index + 1)) {
            (Some(&start), Some(&end)) => self.rules.get(start..end).unwrap_or(&[]),
            _ => &[],
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-rule counters, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub matches: u64,
    /// Events for which the rule's outcome stayed unknown because a field it reads was missing.
    pub missing: u64,
}

/// A compiled, indexed rule set. Immutable once built (counters aside), so a new set is swapped in
/// as a whole.
pub struct RuleSet {
    /// Sorted by priority (highest first), then input order; candidate lists index into this.
    rules: Vec<CompiledRule>,
    index: index::RuleIndex,
    fields: fields::FieldTable,
    trie: PathTrie,
    grid_patterns: Vec<Regex>,
    grid_fields: Vec<VarRef>,
    timezone: jiff::tz::TimeZone,
    events: AtomicU64,
}

fn compile_condition(condition: &Condition, builder: &mut Builder) -> Result<Node, CompileError> {
    match condition {
        Condition::Expression(source) => expr::compile(source, builder),
        Condition::JsonLogic(text) => {
            let logic: Value = serde_json::from_str(text).map_err(|e| CompileError {
                position: Position::LineColumn { line: e.line(), column: e.column() },
                reason: format!("invalid JSON: {e}"),
            })?;
            jsonlogic::compile(&logic, builder)
        }
    }
}

/// Resolves an IANA zone name (bundled database, so results do not depend on the host).
fn timezone(name: &str) -> Result<jiff::tz::TimeZone, CompileFailure> {
    jiff::tz::TimeZone::get(name).map_err(|e| CompileFailure::Timezone(format!("unknown timezone {name:?}: {e}")))
}

impl RuleSet {
    /// Compiles every rule; all problems are reported together.
    pub fn compile(specs: &[RuleSpec], timezone_name: &str) -> Result<RuleSet, CompileFailure> {
        let timezone = timezone(timezone_name)?;
        let mut builder = Builder::default();
        let category_slot = builder.fields.slot(&["category".to_owned()]);
        let mut problems = Vec::new();
        let mut compiled = Vec::with_capacity(specs.len());
        let mut seen = HashMap::new();
        for (index, spec) in specs.iter().enumerate() {
            if seen.insert(spec.id.as_str(), index).is_some() {
                let error = CompileError { position: Position::Rule, reason: "duplicate rule id".into() };
                problems.push(RuleProblem { rule_id: spec.id.clone(), error });
                continue;
            }
            match compile_condition(&spec.condition, &mut builder) {
                Ok(condition) => compiled.push((spec.priority, index, condition)),
                Err(error) => problems.push(RuleProblem { rule_id: spec.id.clone(), error }),
            }
        }
        if !problems.is_empty() {
            return Err(CompileFailure::Rules(problems));
        }
        compiled.sort_by_key(|(priority, index, _)| (std::cmp::Reverse(*priority), *index));
        let rules: Vec<CompiledRule> = compiled
            .into_iter()
            .map(|(_, index, condition)| CompiledRule {
                input_index: u32::try_from(index).unwrap_or(u32::MAX),
                condition,
                matches: AtomicU64::new(0),
                missing: AtomicU64::new(0),
            })
            .collect();
        let requirements: Vec<_> = rules.iter().map(|rule| rule.condition.required_strings()).collect();
        let conjuncts: Vec<_> = rules.iter().map(|rule| rule.condition.string_conjuncts()).collect();
        let terms = index::Terms { requirements: &requirements, conjuncts: &conjuncts };
        Ok(RuleSet {
            index: index::RuleIndex::new(&terms, category_slot),
            rules,
            trie: PathTrie::new(&builder.fields),
            fields: builder.fields,
            grid_patterns: builder.grid_patterns,
            grid_fields: builder.grid_fields,
            timezone,
            events: AtomicU64::new(0),
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Matches a batch of events (JSON documents) on the calling thread. All matching rules in
    /// priority order, or only the first with `first_only`. Fails only on bytes that are not JSON
    /// (the first such event is named).
    pub fn match_batch(&self, events: &[&[u8]], first_only: bool) -> Result<BatchMatches, EventError> {
        let result = self.match_chunk(events, 0, first_only);
        self.events.fetch_add(events.len() as u64, Ordering::Relaxed);
        result
    }

    /// [`RuleSet::match_batch`] with a batch of [`PARALLEL_MIN_EVENTS`] or more split into chunks
    /// that rayon's pool shares out between the machine's cores. Only worth it when cores are idle:
    /// on a busy machine the workers wait for CPU time and the batch is slower (see docs/rules.md).
    pub fn match_batch_parallel(&self, events: &[&[u8]], first_only: bool) -> Result<BatchMatches, EventError> {
        if events.len() < PARALLEL_MIN_EVENTS {
            return self.match_batch(events, first_only);
        }
        let parts: Vec<Result<BatchMatches, EventError>> = events
            .par_chunks(PARALLEL_CHUNK)
            .enumerate()
            .map(|(i, part)| self.match_chunk(part, i * PARALLEL_CHUNK, first_only))
            .collect();
        self.events.fetch_add(events.len() as u64, Ordering::Relaxed);
        concatenate(parts)
    }

    /// Matches `events`, whose first is number `first_index` of the whole batch.
    fn match_chunk(&self, events: &[&[u8]], first_index: usize, first_only: bool) -> Result<BatchMatches, EventError> {
        let mut scratch = Scratch::new(self);
        let mut out = BatchMatches { offsets: Vec::with_capacity(events.len() + 1), rules: Vec::new() };
        out.offsets.push(0);
        for (index, bytes) in events.iter().enumerate() {
            if let Some(next) = events.get(index + 1) {
                touch_cache_lines(next);
            }
            let located = |e: serde_json::Error| EventError { index: first_index + index, reason: e.to_string() };
            scratch.load(self, bytes).map_err(located)?;
            self.match_loaded(&scratch, first_only, &mut out.rules);
            out.offsets.push(out.rules.len());
        }
        Ok(out)
    }

    /// The value of a slot's field in the loaded event.
    fn slot_value<'e>(&self, scratch: &'e Scratch, slot: usize) -> Option<&'e Value> {
        match &scratch.whole {
            Some(whole) => self.fields.paths().get(slot).and_then(|path| eval::walk(whole, path)),
            None => scratch.slots.get(slot),
        }
    }

    fn match_loaded(&self, scratch: &Scratch, first_only: bool, out: &mut Vec<u32>) {
        scratch.grid_memo.iter().for_each(|memo| memo.set(0));
        let context = Context {
            event: Event { whole: scratch.whole.as_ref(), slots: &scratch.slots, fields: &self.fields },
            mode: Mode::Rules,
            timezone: &self.timezone,
            grid_patterns: &self.grid_patterns,
            grid_memo: &scratch.grid_memo,
            grid_fields: &self.grid_fields,
        };
        let candidates = self.index.candidates(|slot| self.slot_value(scratch, slot).and_then(Value::as_str));
        for candidate in candidates {
            let Some(rule) = self.rules.get(candidate.rule as usize) else { continue };
            match context.holds_settled(&rule.condition, candidate.settled) {
                Ok(true) => {
                    rule.matches.fetch_add(1, Ordering::Relaxed);
                    out.push(rule.input_index);
                    if first_only {
                        return;
                    }
                }
                Ok(false) => {}
                Err(Unknown) => {
                    rule.missing.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Events matched so far and each rule's counters, in input order.
    pub fn stats(&self) -> (u64, Vec<RuleStats>) {
        let mut per_rule: Vec<(u32, RuleStats)> = self
            .rules
            .iter()
            .map(|rule| {
                let stats = RuleStats {
                    matches: rule.matches.load(Ordering::Relaxed),
                    missing: rule.missing.load(Ordering::Relaxed),
                };
                (rule.input_index, stats)
            })
            .collect();
        per_rule.sort_by_key(|(index, _)| *index);
        (self.events.load(Ordering::Relaxed), per_rule.into_iter().map(|(_, s)| s).collect())
    }
}

/// Reads one byte of every cache line of `bytes`. Events handed over from Python lie scattered
/// among other objects, where the hardware prefetcher cannot guess the next one: touching the next
/// event before scanning this one starts all its cache misses at once, in parallel with the scan,
/// instead of one after the other as the scan reaches each line.
#[inline]
fn touch_cache_lines(bytes: &[u8]) {
    let sampled = bytes.iter().step_by(64).chain(bytes.last()).fold(0u8, |acc, &byte| acc ^ byte);
    std::hint::black_box(sampled);
}

/// Smaller batches are matched on one thread even when asked for parallel matching.
const PARALLEL_MIN_EVENTS: usize = 4096;
/// Events per rayon task: small enough that an idle core can take over work from a busy one.
const PARALLEL_CHUNK: usize = 1024;

/// Joins the matches of consecutive chunks; the first failing chunk's error wins.
fn concatenate(parts: Vec<Result<BatchMatches, EventError>>) -> Result<BatchMatches, EventError> {
    let mut joined = BatchMatches { offsets: vec![0], rules: Vec::new() };
    for part in parts {
        let part = part?;
        let base = joined.rules.len();
        joined.offsets.extend(part.offsets.iter().skip(1).map(|offset| base + offset));
        joined.rules.extend(part.rules);
    }
    Ok(joined)
}

/// Buffers reused across the events of a batch.
struct Scratch {
    slots: Slots,
    whole: Option<Value>,
    grid_memo: Vec<Cell<u8>>,
    /// The scanner's stack of open arrays and objects.
    frames: Vec<u8>,
}

impl Scratch {
    fn new(rules: &RuleSet) -> Scratch {
        Scratch {
            slots: Slots::new(rules.fields.len()),
            whole: None,
            grid_memo: vec![Cell::new(0); rules.grid_patterns.len()],
            frames: Vec::new(),
        }
    }

    fn load(&mut self, rules: &RuleSet, bytes: &[u8]) -> Result<(), serde_json::Error> {
        if rules.fields.needs_whole_event() {
            self.whole = Some(serde_json::from_slice(bytes)?);
            Ok(())
        } else {
            rules.trie.extract(bytes, &mut self.slots, &mut self.frames)
        }
    }
}

/// Evaluates one JsonLogic rule on `data` with plain JsonLogic semantics (missing fields are null),
/// as json-logic-js's `apply` does. Used for conformance tests and for trying rules out.
pub fn apply_jsonlogic(logic: &Value, data: &Value, timezone_name: &str) -> Result<Value, String> {
    let timezone = timezone(timezone_name).map_err(|e| e.to_string())?;
    let mut builder = Builder::default();
    builder.fields.require_whole_event();
    let node = jsonlogic::compile(logic, &mut builder).map_err(|e| format!("at {}: {}", e.position, e.reason))?;
    let memo = vec![Cell::new(0); builder.grid_patterns.len()];
    let no_slots = Slots::default();
    let context = Context {
        event: Event { whole: Some(data), slots: &no_slots, fields: &builder.fields },
        mode: Mode::JsonLogic,
        timezone: &timezone,
        grid_patterns: &builder.grid_patterns,
        grid_memo: &memo,
        grid_fields: &builder.grid_fields,
    };
    context.eval(&node, None).map(|v| v.into_owned()).map_err(|Unknown| "unknown".to_owned())
}

#[cfg(test)]
mod tests;
