//! JsonLogic (jsonlogic.com) to the shared tree. Positions are JSON Pointers into the rule.

use super::ast::{Node, Op};
use super::builder::Builder;
use super::fields::split_path;
use super::CompileError;
use serde_json::{Map, Value};

/// Compiles one JsonLogic rule.
pub fn compile(logic: &Value, builder: &mut Builder) -> Result<Node, CompileError> {
    let mut pointer = String::new();
    node(logic, builder, &mut pointer)
}

/// Nesting deeper than this (in pointer tokens) is rejected rather than risking the stack.
const MAX_POINTER_DEPTH: usize = 256;

fn node(logic: &Value, builder: &mut Builder, pointer: &mut String) -> Result<Node, CompileError> {
    if pointer.matches('/').count() > MAX_POINTER_DEPTH {
        return Err(error(pointer, "rule nested too deeply"));
    }
    match logic {
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                nodes.push(within(pointer, &i.to_string(), |p| node(item, builder, p))?);
            }
            Ok(Node::array(nodes))
        }
        Value::Object(map) if map.len() == 1 => operation(map, builder, pointer),
        other => Ok(Node::Literal(other.clone())),
    }
}

fn within<T>(pointer: &mut String, token: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = pointer.len();
    pointer.push('/');
    pointer.push_str(&token.replace('~', "~0").replace('/', "~1"));
    let result = f(pointer);
    pointer.truncate(len);
    result
}

fn error(pointer: &str, reason: impl Into<String>) -> CompileError {
    CompileError::at_pointer(if pointer.is_empty() { "/" } else { pointer }, reason)
}

fn operation(map: &Map<String, Value>, builder: &mut Builder, pointer: &mut String) -> Result<Node, CompileError> {
    let Some((name, raw_args)) = map.iter().next() else {
        return Err(error(pointer, "empty operation"));
    };
    let args: Vec<&Value> = match raw_args {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    within(pointer, name, |pointer| match name.as_str() {
        "var" => var(&args, builder, pointer),
        "has" => has(&args, builder, pointer),
        "in_grid" => in_grid(&args, builder, pointer),
        "matches" => matches_regex(&args, builder, pointer),
        _ => {
            let Some(op) = Op::from_name(name) else {
                return Err(error(pointer, format!("unknown operation '{name}'")));
            };
            let nodes = arguments(op, &args, builder, pointer)?;
            builder.call(op, nodes).map_err(|reason| error(pointer, reason))
        }
    })
}

fn arguments(op: Op, args: &[&Value], builder: &mut Builder, pointer: &mut String) -> Result<Vec<Node>, CompileError> {
    let mut nodes = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let in_body = op.is_iterator() && i == 1;
        builder.iterator_depth += usize::from(in_body);
        let built = within(pointer, &i.to_string(), |p| node(arg, builder, p));
        builder.iterator_depth -= usize::from(in_body);
        nodes.push(built?);
    }
    Ok(nodes)
}

fn var(args: &[&Value], builder: &mut Builder, pointer: &mut String) -> Result<Node, CompileError> {
    let default = match args.get(1) {
        Some(value) => Some(Box::new(within(pointer, "1", |p| node(value, builder, p))?)),
        None => None,
    };
    let path = match args.first() {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(path)) => split_path(path),
        Some(Value::Number(n)) => split_path(&n.to_string()),
        Some(computed) => {
            let path = within(pointer, "0", |p| node(computed, builder, p))?;
            return Ok(match path {
                Node::Literal(Value::String(s)) => Node::Var { var: builder.var_ref(split_path(&s)), default },
                path => builder.dynamic_var(path, default),
            });
        }
    };
    Ok(Node::Var { var: builder.var_ref(path), default })
}

fn literal_string<'v>(args: &[&'v Value], what: &str, pointer: &str) -> Result<&'v str, CompileError> {
    match args.first() {
        Some(Value::String(s)) => Ok(s),
        _ => Err(error(pointer, format!("{what} takes a string literal"))),
    }
}

fn has(args: &[&Value], builder: &mut Builder, pointer: &str) -> Result<Node, CompileError> {
    let path = literal_string(args, "has", pointer)?;
    Ok(Node::Has(builder.var_ref(split_path(path))))
}

fn in_grid(args: &[&Value], builder: &mut Builder, pointer: &str) -> Result<Node, CompileError> {
    let pattern = literal_string(args, "in_grid", pointer)?;
    builder.grid_pattern(pattern).map(Node::InGrid).map_err(|reason| error(pointer, reason))
}

fn matches_regex(args: &[&Value], builder: &mut Builder, pointer: &mut String) -> Result<Node, CompileError> {
    let [subject, Value::String(pattern)] = args else {
        return Err(error(pointer, "matches takes a value and a regular-expression string literal"));
    };
    let regex = regex::Regex::new(pattern).map_err(|e| error(pointer, format!("bad regular expression: {e}")))?;
    let subject = within(pointer, "0", |p| node(subject, builder, p))?;
    Ok(Node::Matches(Box::new(regex), Box::new(subject)))
}
