//! Evaluation of the compiled tree against one event.
//!
//! A field the event lacks makes the value *unknown* ([`Unknown`]) instead of null: `and`, `or`,
//! `if` and `!` follow three-valued (Kleene) logic, so `unknown || true` is true and `unknown && false`
//! is false, while a condition that stays unknown does not match and is counted as missing a field.
//! [`Mode::JsonLogic`] turns that off and reads missing fields as null, as json-logic-js does.

use super::ast::{Node, Op, VarRef};
use super::extract::Slots;
use super::fields::{split_path, FieldTable};
use super::value::{cat_piece, compare, loose_eq, number, parse_float, strict_eq, to_js_string, to_number, truthy};
use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::Cell;
use std::cmp::Ordering;

/// The condition needs a field the event does not have (or a time it cannot read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown;

pub type Out<'s> = Result<Cow<'s, Value>, Unknown>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Rule matching: missing fields are unknown.
    Rules,
    /// Plain JsonLogic `apply`: missing fields are null.
    JsonLogic,
}

/// The event as the evaluator sees it: either the whole parsed document or only the slots the rule
/// set reads.
pub struct Event<'a> {
    pub whole: Option<&'a Value>,
    pub slots: &'a Slots,
    pub fields: &'a FieldTable,
}

pub struct Context<'a> {
    pub event: Event<'a>,
    pub mode: Mode,
    pub timezone: &'a jiff::tz::TimeZone,
    pub grid_patterns: &'a [Regex],
    /// Per-event memo of `in_grid` results: 0 not yet evaluated, 1 no, 2 yes.
    pub grid_memo: &'a [Cell<u8>],
    /// The event's grid path fields (`grid`, `grid_ids`) that `in_grid` matches against.
    pub grid_fields: &'a [VarRef],
}

static NULL: Value = Value::Null;

pub fn walk<'v>(mut value: &'v Value, path: &[String]) -> Option<&'v Value> {
    for key in path {
        value = match value {
            Value::Object(map) => map.get(key)?,
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

impl<'a> Context<'a> {
    fn root_field(&self, slot: usize, path: &[String]) -> Option<&'a Value> {
        match self.event.whole {
            Some(whole) => walk(whole, path),
            None => self.event.slots.get(slot),
        }
    }

    fn field<'s>(&self, var: &VarRef, scope: Option<&'s Value>) -> Option<&'s Value>
    where
        'a: 's,
    {
        match var {
            VarRef::Root { slot, path } => self.root_field(*slot, path),
            VarRef::Scoped { path } => walk(scope.unwrap_or(&NULL), path),
        }
    }

    /// A field named by a dotted string at run time (`missing`, computed `var`).
    fn named_field<'s>(&self, dotted: &str, scoped: bool, scope: Option<&'s Value>) -> Option<&'s Value>
    where
        'a: 's,
    {
        let path = split_path(dotted);
        if scoped {
            return walk(scope.unwrap_or(&NULL), &path);
        }
        match self.event.whole {
            Some(whole) => walk(whole, &path),
            None => self.event.fields.slot_of_dotted(dotted).and_then(|slot| self.root_field(slot, &path)),
        }
    }

    fn absent<'s>(&self, default: Option<&'a Node>, scope: Option<&'s Value>) -> Out<'s>
    where
        'a: 's,
    {
        match (default, self.mode) {
            (Some(default), _) => self.eval(default, scope),
            (None, Mode::JsonLogic) => Ok(Cow::Borrowed(&NULL)),
            (None, Mode::Rules) => Err(Unknown),
        }
    }

    /// Whether the condition holds: `Err(Unknown)` when it depends on a missing field. The same as
    /// `truthy(eval(node))`, with `and`, `or`, `!` and comparisons answered as booleans directly
    /// rather than through the values JsonLogic would return.
    pub fn holds(&self, node: &'a Node) -> Result<bool, Unknown> {
        match node {
            Node::Call(Op::And, args) => self.all_or_any(args, false, 0),
            Node::Call(Op::Or, args) => self.all_or_any(args, true, 0),
            Node::Call(Op::Not, args) => match args.first() {
                Some(arg) => self.holds(arg).map(|held| !held),
                None => Ok(true),
            },
            Node::Call(op, args) => match args.as_slice() {
                [left, right] if op.is_comparison() => match (self.direct(left), self.direct(right)) {
                    (Some(left), Some(right)) => Ok(compared(*op, left?, right?).unwrap_or(false)),
                    _ => {
                        let (left, right) = (self.eval(left, None)?, self.eval(right, None)?);
                        Ok(compared(*op, &left, &right).unwrap_or(false))
                    }
                },
                _ => self.eval(node, None).map(|v| truthy(&v)),
            },
            _ => self.eval(node, None).map(|v| truthy(&v)),
        }
    }

    /// A top-level comparison's operand when it is an event field or a literal, read without going
    /// through [`Self::eval`]; `None` for anything else.
    #[inline]
    fn direct(&self, node: &'a Node) -> Option<Result<&'a Value, Unknown>> {
        match node {
            Node::Literal(value) => Some(Ok(value)),
            Node::Var { var: VarRef::Root { slot, path }, default: None } => match self.root_field(*slot, path) {
                Some(value) => Some(Ok(value)),
                None if self.mode == Mode::Rules => Some(Err(Unknown)),
                None => Some(Ok(&NULL)),
            },
            _ => None,
        }
    }

    /// [`Self::holds`] for a rule whose top-level conjuncts in `settled` (bit `i`: conjunct `i`, the
    /// condition itself when it is no conjunction) are already known to hold, because the index
    /// picked the rule by the very strings they require.
    pub fn holds_settled(&self, node: &'a Node, settled: u64) -> Result<bool, Unknown> {
        match node {
            _ if settled == 0 => self.holds(node),
            Node::Call(Op::And, args) => self.all_or_any(args, false, settled),
            _ => Ok(true),
        }
    }

    /// [`Self::and_or`] as a boolean: the first operand that decides wins over unknown ones.
    /// Operands in `skip` (bit `i`: operand `i`) are known to be true.
    fn all_or_any(&self, args: &'a [Node], is_or: bool, skip: u64) -> Result<bool, Unknown> {
        let mut unknown = false;
        for (position, arg) in args.iter().enumerate() {
            if position < 64 && skip & (1 << position) != 0 {
                continue;
            }
            match self.holds(arg) {
                Ok(held) if held == is_or => return Ok(is_or),
                Ok(_) => {}
                Err(Unknown) => unknown = true,
            }
        }
        if unknown {
            Err(Unknown)
        } else {
            Ok(!is_or && !args.is_empty())
        }
    }

    pub fn eval<'s>(&self, node: &'a Node, scope: Option<&'s Value>) -> Out<'s>
    where
        'a: 's,
    {
        match node {
            Node::Literal(value) => Ok(Cow::Borrowed(value)),
            Node::Array(items) => {
                let values = items.iter().map(|item| self.eval(item, scope).map(Cow::into_owned));
                Ok(Cow::Owned(Value::Array(values.collect::<Result<_, _>>()?)))
            }
            Node::Var { var, default } => match self.field(var, scope) {
                Some(value) => Ok(Cow::Borrowed(value)),
                None => self.absent(default.as_deref(), scope),
            },
            Node::DynamicVar { path, default, scoped } => {
                let path = self.eval(path, scope)?;
                let dotted = match path.as_ref() {
                    Value::Null => String::new(),
                    other => to_js_string(other),
                };
                let found = if dotted.is_empty() {
                    if *scoped {
                        scope
                    } else {
                        self.event.whole
                    }
                } else {
                    self.named_field(&dotted, *scoped, scope)
                };
                match found {
                    Some(value) => Ok(Cow::Borrowed(value)),
                    None => self.absent(default.as_deref(), scope),
                }
            }
            Node::Has(var) => Ok(boolean(self.field(var, scope).is_some())),
            Node::InGrid(pattern) => self.in_grid(*pattern).map(boolean),
            Node::Matches(regex, subject) => {
                let subject = self.eval(subject, scope)?;
                Ok(boolean(subject.as_str().is_some_and(|s| regex.is_match(s))))
            }
            Node::Call(op, args) => self.call(*op, args, scope),
        }
    }

    fn in_grid(&self, pattern: usize) -> Result<bool, Unknown> {
        let memo = self.grid_memo.get(pattern);
        match memo.map(Cell::get) {
            Some(1) => return Ok(false),
            Some(2) => return Ok(true),
            _ => {}
        }
        let regex = self.grid_patterns.get(pattern).ok_or(Unknown)?;
        let paths: Vec<&str> =
            self.grid_fields.iter().filter_map(|var| self.field(var, None)).filter_map(Value::as_str).collect();
        if paths.is_empty() {
            return Err(Unknown);
        }
        let hit = paths.iter().any(|path| regex.is_match(path));
        if let Some(memo) = memo {
            memo.set(if hit { 2 } else { 1 });
        }
        Ok(hit)
    }

    fn args<'s>(&self, args: &'a [Node], scope: Option<&'s Value>) -> Result<Vec<Cow<'s, Value>>, Unknown>
    where
        'a: 's,
    {
        args.iter().map(|arg| self.eval(arg, scope)).collect()
    }

    fn arg<'s>(&self, args: &'a [Node], index: usize, scope: Option<&'s Value>) -> Out<'s>
    where
        'a: 's,
    {
        match args.get(index) {
            Some(arg) => self.eval(arg, scope),
            None => Ok(Cow::Borrowed(&NULL)),
        }
    }

    fn call<'s>(&self, op: Op, args: &'a [Node], scope: Option<&'s Value>) -> Out<'s>
    where
        'a: 's,
    {
        match op {
            Op::And => self.and_or(args, scope, false),
            Op::Or => self.and_or(args, scope, true),
            Op::If => self.if_chain(args, scope),
            Op::Not => Ok(boolean(!truthy(self.arg(args, 0, scope)?.as_ref()))),
            Op::Truthy => Ok(boolean(truthy(self.arg(args, 0, scope)?.as_ref()))),
            Op::Map | Op::Filter | Op::All | Op::None | Op::Some | Op::Reduce => self.iterate(op, args, scope),
            Op::Log => self.arg(args, 0, scope),
            _ => match args {
                // The common shape (comparisons): no argument vector to allocate.
                [left, right] => {
                    let pair = [self.eval(left, scope)?, self.eval(right, scope)?];
                    self.apply(op, &pair).map(Cow::Owned)
                }
                _ => {
                    let values = self.args(args, scope)?;
                    self.apply(op, &values).map(Cow::Owned)
                }
            },
        }
    }

    /// JsonLogic `and`/`or` return the deciding operand; an unknown operand only matters when no
    /// other operand decides.
    fn and_or<'s>(&self, args: &'a [Node], scope: Option<&'s Value>, is_or: bool) -> Out<'s>
    where
        'a: 's,
    {
        let mut last = Cow::Borrowed(&NULL);
        let mut unknown = false;
        for arg in args {
            match self.eval(arg, scope) {
                Ok(value) if truthy(&value) == is_or => return Ok(value),
                Ok(value) => last = value,
                Err(Unknown) => unknown = true,
            }
        }
        if unknown {
            Err(Unknown)
        } else {
            Ok(last)
        }
    }

    fn if_chain<'s>(&self, args: &'a [Node], scope: Option<&'s Value>) -> Out<'s>
    where
        'a: 's,
    {
        let mut rest = args;
        while let [condition, then, tail @ ..] = rest {
            if truthy(self.eval(condition, scope)?.as_ref()) {
                return self.eval(then, scope);
            }
            rest = tail;
        }
        match rest {
            [otherwise] => self.eval(otherwise, scope),
            _ => Ok(Cow::Borrowed(&NULL)),
        }
    }

    fn iterate<'s>(&self, op: Op, args: &'a [Node], scope: Option<&'s Value>) -> Out<'s>
    where
        'a: 's,
    {
        let collection = self.arg(args, 0, scope)?;
        let items: &[Value] = collection.as_array().map_or(&[], Vec::as_slice);
        let Some(body) = args.get(1) else {
            return Ok(Cow::Borrowed(&NULL));
        };
        let result = match op {
            Op::Map => Value::Array(
                items.iter().map(|item| self.eval(body, Some(item)).map(Cow::into_owned)).collect::<Result<_, _>>()?,
            ),
            Op::Filter => Value::Array(self.kept(body, items)?.into_iter().cloned().collect()),
            Op::All => {
                let mut all = !items.is_empty();
                for item in items {
                    if !truthy(self.eval(body, Some(item))?.as_ref()) {
                        all = false;
                        break;
                    }
                }
                Value::Bool(all)
            }
            Op::Some => Value::Bool(!self.kept(body, items)?.is_empty()),
            Op::None => Value::Bool(self.kept(body, items)?.is_empty()),
            _ => {
                let mut accumulator = self.arg(args, 2, scope)?.into_owned();
                for item in items {
                    let frame = serde_json::json!({"current": item, "accumulator": accumulator});
                    accumulator = self.eval(body, Some(&frame))?.into_owned();
                }
                accumulator
            }
        };
        Ok(Cow::Owned(result))
    }

    fn kept<'v>(&self, body: &'a Node, items: &'v [Value]) -> Result<Vec<&'v Value>, Unknown> {
        let mut kept = Vec::new();
        for item in items {
            if truthy(self.eval(body, Some(item))?.as_ref()) {
                kept.push(item);
            }
        }
        Ok(kept)
    }

    /// Operations whose arguments are all evaluated first.
    fn apply(&self, op: Op, values: &[Cow<'_, Value>]) -> Result<Value, Unknown> {
        let at = |i: usize| values.get(i).map_or(&NULL, |v| v.as_ref());
        Ok(match op {
            // `a < b < c` (three operands): both comparisons hold.
            Op::Lt | Op::Le => Value::Bool(
                compared(op, at(0), at(1)).unwrap_or(false)
                    && values.get(2).is_none_or(|third| compared(op, at(1), third).unwrap_or(false)),
            ),
            Op::LooseEq | Op::LooseNe | Op::StrictEq | Op::StrictNe | Op::Gt | Op::Ge => {
                Value::Bool(compared(op, at(0), at(1)).unwrap_or(false))
            }
            Op::Max | Op::Min => extreme(op == Op::Max, values),
            Op::Add => number(values.iter().map(|v| parse_float(v)).sum()),
            Op::Mul => product(values),
            Op::Sub => match values {
                [only] => number(-to_number(only)),
                _ => number(to_number(at(0)) - to_number(at(1))),
            },
            Op::Div => number(to_number(at(0)) / to_number(at(1))),
            Op::Mod => number(to_number(at(0)) % to_number(at(1))),
            Op::Merge => merge(values),
            Op::In => Value::Bool(contains(at(1), at(0))),
            Op::Contains => Value::Bool(contains(at(0), at(1))),
            Op::Cat => {
                let mut out = String::new();
                values.iter().for_each(|v| cat_piece(v, &mut out));
                Value::String(out)
            }
            Op::Substr => Value::String(substr(at(0), at(1), values.get(2).map(|v| v.as_ref()))),
            Op::Missing => Value::Array(self.missing(values)),
            Op::MissingSome => self.missing_some(at(0), at(1)),
            Op::Hour | Op::Minute | Op::Weekday => self.clock(op, at(0))?,
            Op::TimeBetween => Value::Bool(self.time_between(at(0), at(1), at(2))?),
            Op::Lower => Value::String(to_js_string(at(0)).to_lowercase()),
            Op::Upper => Value::String(to_js_string(at(0)).to_uppercase()),
            Op::StartsWith => Value::Bool(to_js_string(at(0)).starts_with(&to_js_string(at(1)))),
            Op::EndsWith => Value::Bool(to_js_string(at(0)).ends_with(&to_js_string(at(1)))),
            Op::Len => match at(0) {
                Value::String(s) => Value::from(s.chars().count()),
                Value::Array(items) => Value::from(items.len()),
                Value::Object(map) => Value::from(map.len()),
                _ => Value::Null,
            },
            Op::And | Op::Or | Op::If | Op::Not | Op::Truthy | Op::Log => Value::Null,
            Op::Map | Op::Filter | Op::Reduce | Op::All | Op::None | Op::Some => Value::Null,
        })
    }

    fn missing(&self, values: &[Cow<'_, Value>]) -> Vec<Value> {
        let keys: Vec<&Value> = match values.first().map(|v| v.as_ref()) {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => values.iter().map(|v| v.as_ref()).collect(),
        };
        keys.into_iter()
            .filter(|key| {
                let found = self.named_field(&to_js_string(key), false, None);
                matches!(found, None | Some(Value::Null)) || found.and_then(Value::as_str) == Some("")
            })
            .cloned()
            .collect()
    }

    fn missing_some(&self, need: &Value, options: &Value) -> Value {
        let options = options.as_array().map_or(&[][..], Vec::as_slice);
        let as_args: Vec<Cow<'_, Value>> = vec![Cow::Owned(Value::Array(options.to_vec()))];
        let missing = self.missing(&as_args);
        let present = options.len().saturating_sub(missing.len());
        if present as f64 >= to_number(need) {
            Value::Array(Vec::new())
        } else {
            Value::Array(missing)
        }
    }

    fn local_time(&self, time: &Value) -> Result<jiff::civil::DateTime, Unknown> {
        let timestamp: jiff::Timestamp = time.as_str().and_then(|s| s.parse().ok()).ok_or(Unknown)?;
        Ok(self.timezone.to_datetime(timestamp))
    }

    fn clock(&self, op: Op, time: &Value) -> Result<Value, Unknown> {
        let local = self.local_time(time)?;
        Ok(Value::from(match op {
            Op::Hour => i64::from(local.hour()),
            Op::Minute => i64::from(local.minute()),
            _ => i64::from(local.weekday().to_monday_one_offset()),
        }))
    }

    /// Whether the local time of day lies in `[from, to)`; a window whose end is before its start
    /// wraps past midnight (`"22:00"` to `"06:00"`).
    fn time_between(&self, time: &Value, from: &Value, to: &Value) -> Result<bool, Unknown> {
        let local = self.local_time(time)?.time();
        let from = parse_clock(from).ok_or(Unknown)?;
        let to = parse_clock(to).ok_or(Unknown)?;
        Ok(if from <= to { from <= local && local < to } else { local >= from || local < to })
    }
}

/// `"HH:MM"` or `"HH:MM:SS"` as a civil time.
pub fn parse_clock(value: &Value) -> Option<jiff::civil::Time> {
    let text = value.as_str()?;
    let mut parts = text.split(':').map(|p| p.parse::<i8>().ok());
    let hour = parts.next()??;
    let minute = parts.next()??;
    let second = parts.next().unwrap_or(Some(0))?;
    if parts.next().is_some() {
        return None;
    }
    jiff::civil::Time::new(hour, minute, second, 0).ok()
}

fn boolean<'s>(b: bool) -> Cow<'s, Value> {
    Cow::Owned(Value::Bool(b))
}

fn extreme(max: bool, values: &[Cow<'_, Value>]) -> Value {
    let mut best = if max { f64::NEG_INFINITY } else { f64::INFINITY };
    for value in values {
        let x = to_number(value);
        if x.is_nan() {
            return Value::Null;
        }
        best = if max { best.max(x) } else { best.min(x) };
    }
    number(best)
}

/// `*` reduces without a seed, like json-logic-js: a single operand comes back unconverted.
fn product(values: &[Cow<'_, Value>]) -> Value {
    match values {
        [] => Value::Null,
        [only] => only.as_ref().clone(),
        [first, rest @ ..] => number(rest.iter().fold(parse_float(first), |acc, v| acc * parse_float(v))),
    }
}

fn merge(values: &[Cow<'_, Value>]) -> Value {
    let mut merged = Vec::new();
    for value in values {
        match value.as_ref() {
            Value::Array(items) => merged.extend(items.iter().cloned()),
            other => merged.push(other.clone()),
        }
    }
    Value::Array(merged)
}

/// A two-operand comparison (`None` for an operation that is not one).
fn compared(op: Op, a: &Value, b: &Value) -> Option<bool> {
    let ordered = |wanted: fn(Ordering) -> bool| compare(a, b).is_some_and(wanted);
    Some(match op {
        Op::LooseEq => loose_eq(a, b),
        Op::LooseNe => !loose_eq(a, b),
        Op::StrictEq => strict_eq(a, b),
        Op::StrictNe => !strict_eq(a, b),
        Op::Lt => ordered(Ordering::is_lt),
        Op::Le => ordered(Ordering::is_le),
        Op::Gt => ordered(Ordering::is_gt),
        Op::Ge => ordered(Ordering::is_ge),
        _ => return None,
    })
}

/// `in`: substring of a string, or an element (strict equality) of an array.
fn contains(haystack: &Value, needle: &Value) -> bool {
    match haystack {
        Value::String(text) => text.contains(to_js_string(needle).as_str()),
        Value::Array(items) => items.iter().any(|item| strict_eq(item, needle)),
        _ => false,
    }
}

/// JavaScript `String.prototype.substr(start, length)`, with json-logic-js's negative length meaning
/// "stop this many characters before the end".
fn substr(source: &Value, start: &Value, length: Option<&Value>) -> String {
    let chars: Vec<char> = to_js_string(source).chars().collect();
    let len = chars.len() as f64;
    let start = integer(to_number(start));
    let begin = if start < 0.0 { (len + start).max(0.0) } else { start.min(len) };
    let end = match length.map(|l| integer(to_number(l))) {
        None => len,
        Some(l) if l < 0.0 => (len + l).max(begin),
        Some(l) => (begin + l).min(len),
    };
    chars.get(begin as usize..end.max(begin) as usize).map_or_else(String::new, |s| s.iter().collect())
}

fn integer(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.trunc()
    }
}
