//! The compiled form shared by both rule syntaxes: the expression language and JsonLogic parse into
//! the same tree, so they have one evaluator and one set of semantics.

use regex::Regex;
use serde_json::Value;

/// An operation. JsonLogic names map one-to-one (see [`Op::from_name`]); the expression language's
/// operators and functions map onto the same set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    And,
    Or,
    Not,
    Truthy,
    If,
    LooseEq,
    LooseNe,
    StrictEq,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
    Max,
    Min,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Map,
    Filter,
    Reduce,
    All,
    None,
    Some,
    Merge,
    In,
    Cat,
    Substr,
    Missing,
    MissingSome,
    Log,
    Hour,
    Minute,
    Weekday,
    TimeBetween,
    Lower,
    Upper,
    Contains,
    StartsWith,
    EndsWith,
    Len,
}

/// Every operation's JsonLogic name; the expression language calls the named functions the same way.
pub const OP_NAMES: &[(&str, Op)] = &[
    ("and", Op::And),
    ("or", Op::Or),
    ("!", Op::Not),
    ("!!", Op::Truthy),
    ("if", Op::If),
    ("?:", Op::If),
    ("==", Op::LooseEq),
    ("!=", Op::LooseNe),
    ("===", Op::StrictEq),
    ("!==", Op::StrictNe),
    ("<", Op::Lt),
    ("<=", Op::Le),
    (">", Op::Gt),
    (">=", Op::Ge),
    ("max", Op::Max),
    ("min", Op::Min),
    ("+", Op::Add),
    ("-", Op::Sub),
    ("*", Op::Mul),
    ("/", Op::Div),
    ("%", Op::Mod),
    ("map", Op::Map),
    ("filter", Op::Filter),
    ("reduce", Op::Reduce),
    ("all", Op::All),
    ("none", Op::None),
    ("some", Op::Some),
    ("merge", Op::Merge),
    ("in", Op::In),
    ("cat", Op::Cat),
    ("substr", Op::Substr),
    ("missing", Op::Missing),
    ("missing_some", Op::MissingSome),
    ("log", Op::Log),
    ("hour", Op::Hour),
    ("minute", Op::Minute),
    ("weekday", Op::Weekday),
    ("time_between", Op::TimeBetween),
    ("lower", Op::Lower),
    ("upper", Op::Upper),
    ("contains", Op::Contains),
    ("starts_with", Op::StartsWith),
    ("ends_with", Op::EndsWith),
    ("len", Op::Len),
];

impl Op {
    pub fn from_name(name: &str) -> Option<Op> {
        OP_NAMES.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }

    /// `==`, `!=`, `===`, `!==`, `<`, `<=`, `>`, `>=`.
    pub fn is_comparison(self) -> bool {
        matches!(self, Op::LooseEq | Op::LooseNe | Op::StrictEq | Op::StrictNe | Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }

    /// Iterators evaluate their second argument once per element, with the element as data.
    pub fn is_iterator(self) -> bool {
        matches!(self, Op::Map | Op::Filter | Op::Reduce | Op::All | Op::None | Op::Some)
    }

    /// The argument counts the operation accepts (inclusive); `None` means unbounded.
    pub fn arity(self) -> (usize, Option<usize>) {
        match self {
            Op::Not | Op::Truthy | Op::Log | Op::Hour | Op::Minute | Op::Weekday => (1, Some(1)),
            Op::Lower | Op::Upper | Op::Len => (1, Some(1)),
            Op::LooseEq | Op::LooseNe | Op::StrictEq | Op::StrictNe | Op::Gt | Op::Ge => (2, Some(2)),
            Op::Lt | Op::Le => (2, Some(3)),
            Op::Div | Op::Mod | Op::In | Op::Contains | Op::StartsWith | Op::EndsWith => (2, Some(2)),
            Op::Sub => (1, Some(2)),
            Op::Map | Op::Filter | Op::All | Op::None | Op::Some => (2, Some(2)),
            Op::Reduce => (2, Some(3)),
            Op::Substr => (2, Some(3)),
            Op::TimeBetween => (3, Some(3)),
            Op::MissingSome => (2, Some(2)),
            Op::And | Op::Or | Op::If | Op::Max | Op::Min | Op::Add | Op::Mul => (0, None),
            Op::Merge | Op::Cat | Op::Missing => (0, None),
        }
    }
}

/// Where a field reference looks: the event (resolved to a slot filled while parsing the event) or
/// the element an iterator is visiting.
#[derive(Debug)]
pub enum VarRef {
    Root { slot: usize, path: Vec<String> },
    Scoped { path: Vec<String> },
}

#[derive(Debug)]
pub enum Node {
    Literal(Value),
    /// A JsonLogic array: each element is evaluated.
    Array(Vec<Node>),
    Var {
        var: VarRef,
        default: Option<Box<Node>>,
    },
    /// A field whose path is computed at run time (`{"var": {"cat": [...]}}`).
    DynamicVar {
        path: Box<Node>,
        default: Option<Box<Node>>,
        scoped: bool,
    },
    /// `has(field)`: presence test that never counts as a missing field.
    Has(VarRef),
    Call(Op, Vec<Node>),
    /// `in_grid(pattern)`: index into the rule set's compiled grid patterns.
    InGrid(usize),
    Matches(Box<Regex>, Box<Node>),
}

impl Node {
    /// An array of sub-expressions; when every element is a literal it stays one literal value, so
    /// it is not rebuilt on every evaluation.
    pub fn array(items: Vec<Node>) -> Node {
        if items.iter().all(|n| matches!(n, Node::Literal(_))) {
            let values = items
                .into_iter()
                .filter_map(|n| match n {
                    Node::Literal(v) => Some(v),
                    _ => None,
                })
                .collect();
            Node::Literal(Value::Array(values))
        } else {
            Node::Array(items)
        }
    }

    /// The `field == "<string>"` (or `field in [strings]`) terms of the rule's top-level
    /// conjunction: the rule can only match events whose field holds one of those strings.
    pub fn required_strings(&self) -> Vec<(usize, Vec<String>)> {
        match self {
            Node::Call(Op::And, args) => args.iter().flat_map(Node::required_strings).collect(),
            Node::Call(Op::StrictEq | Op::LooseEq, args) => match args.as_slice() {
                [var, Node::Literal(Value::String(s))] | [Node::Literal(Value::String(s)), var] => {
                    var.root_slot().map(|slot| vec![(slot, vec![s.clone()])]).unwrap_or_default()
                }
                _ => Vec::new(),
            },
            Node::Call(Op::In, args) => match args.as_slice() {
                [var, Node::Literal(Value::Array(items))] => {
                    let strings: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_owned)).collect();
                    var.root_slot().zip(strings).into_iter().collect()
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// The terms of [`Self::required_strings`] that are top-level conjuncts on their own, as
    /// `(position, slot, strings)`: the position among the conjunction's operands, or 0 for a
    /// condition that is itself such a term.
    pub fn string_conjuncts(&self) -> Vec<(usize, usize, Vec<String>)> {
        let single = |position: usize, node: &Node| match node {
            Node::Call(Op::And, _) => None,
            _ => match node.required_strings().as_slice() {
                [(slot, strings)] => Some((position, *slot, strings.clone())),
                _ => None,
            },
        };
        match self {
            Node::Call(Op::And, args) => args.iter().enumerate().filter_map(|(i, arg)| single(i, arg)).collect(),
            other => single(0, other).into_iter().collect(),
        }
    }

    fn root_slot(&self) -> Option<usize> {
        match self {
            Node::Var { var: VarRef::Root { slot, .. }, default: None } => Some(*slot),
            _ => None,
        }
    }
}
