//! State shared while compiling every rule of a set: the field slots and the grid patterns.

use super::ast::{Node, Op, VarRef};
use super::fields::FieldTable;
use regex::Regex;
use serde_json::Value;

/// The fields the pipeline adds to each event for `in_grid`: admin path names and ids joined by `/`.
const GRID_FIELDS: [&str; 2] = ["grid", "grid_ids"];

#[derive(Debug, Default)]
pub struct Builder {
    pub fields: FieldTable,
    pub grid_patterns: Vec<Regex>,
    /// The event's `grid` and `grid_ids` fields, read only once some rule uses `in_grid`.
    pub grid_fields: Vec<VarRef>,
    /// How many iterator bodies enclose the node being built; inside one, fields are the element's.
    pub iterator_depth: usize,
}

impl Builder {
    pub fn var_ref(&mut self, path: Vec<String>) -> VarRef {
        if self.iterator_depth > 0 {
            VarRef::Scoped { path }
        } else {
            let slot = self.fields.slot(&path);
            VarRef::Root { slot, path }
        }
    }

    /// A field whose name is only known at run time needs the whole event at the root.
    pub fn dynamic_var(&mut self, path: Node, default: Option<Box<Node>>) -> Node {
        let scoped = self.iterator_depth > 0;
        if !scoped {
            self.fields.require_whole_event();
        }
        Node::DynamicVar { path: Box::new(path), default, scoped }
    }

    /// `missing`/`missing_some` name fields by string; literal names get slots, computed ones need
    /// the whole event.
    pub fn register_named_fields(&mut self, op: Op, args: &[Node]) {
        if self.iterator_depth > 0 {
            return;
        }
        let names = match (op, args) {
            (Op::MissingSome, [_, names]) => std::slice::from_ref(names),
            _ => args,
        };
        for name in names {
            self.register_literal_names(name);
        }
    }

    fn register_literal_names(&mut self, node: &Node) {
        match node {
            Node::Literal(Value::Array(items)) => {
                for item in items {
                    self.register_literal_names(&Node::Literal(item.clone()));
                }
            }
            Node::Array(items) => items.iter().for_each(|item| self.register_literal_names(item)),
            Node::Literal(Value::String(name)) => {
                self.fields.slot(&super::fields::split_path(name));
            }
            Node::Literal(Value::Number(n)) => {
                self.fields.slot(&[n.to_string()]);
            }
            _ => self.fields.require_whole_event(),
        }
    }

    /// Compiles an `in_grid` glob: `*` is any run within one path segment, `?` one character; the
    /// pattern must start at a segment boundary and end at one, anywhere in the path.
    pub fn grid_pattern(&mut self, pattern: &str) -> Result<usize, String> {
        if pattern.is_empty() {
            return Err("in_grid pattern must not be empty".into());
        }
        let mut regex = String::from("(?:^|/)");
        for ch in pattern.chars() {
            match ch {
                '*' => regex.push_str("[^/]*"),
                '?' => regex.push_str("[^/]"),
                other => regex.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
            }
        }
        regex.push_str("(?:/|$)");
        let compiled = Regex::new(&regex).map_err(|e| format!("bad in_grid pattern: {e}"))?;
        if self.grid_fields.is_empty() {
            self.grid_fields = GRID_FIELDS
                .iter()
                .map(|name| {
                    let path = vec![(*name).to_owned()];
                    VarRef::Root { slot: self.fields.slot(&path), path }
                })
                .collect();
        }
        self.grid_patterns.push(compiled);
        Ok(self.grid_patterns.len() - 1)
    }

    pub fn call(&mut self, op: Op, args: Vec<Node>) -> Result<Node, String> {
        let (min, max) = op.arity();
        let name = super::ast::OP_NAMES.iter().find(|(_, o)| *o == op).map_or("?", |(n, _)| *n);
        if args.len() < min || max.is_some_and(|max| args.len() > max) {
            let expected = match max {
                Some(max) if max == min => format!("{min}"),
                Some(max) => format!("{min} to {max}"),
                None => format!("at least {min}"),
            };
            return Err(format!("'{name}' takes {expected} argument(s), got {}", args.len()));
        }
        if matches!(op, Op::Missing | Op::MissingSome) {
            self.register_named_fields(op, &args);
        }
        Ok(Node::Call(op, args))
    }
}
