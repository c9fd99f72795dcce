//! The readable rule language: `category == "gas_leak" && payload.ppm >= 5000 && hour(time) >= 22`.
//!
//! ```text
//! expr    := or
//! or      := and (("||" | "or") and)*
//! and     := not (("&&" | "and") not)*
//! not     := ("!" | "not") not | compare
//! compare := sum (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := number | string | "true" | "false" | "null" | "(" expr ")" | "[" [expr ("," expr)*] "]"
//!          | name "(" [expr ("," expr)*] ")" | name ("." name | "[" (string | integer) "]")*
//! ```

use super::ast::{Node, Op};
use super::builder::Builder;
use super::CompileError;
use serde_json::Value;

/// Compiles one expression.
pub fn compile(source: &str, builder: &mut Builder) -> Result<Node, CompileError> {
    let tokens = lex(source).map_err(|(offset, reason)| CompileError::at_offset(source, offset, reason))?;
    let mut parser = Parser { tokens, next: 0, depth: 0, builder };
    let parsed = parser.expr().and_then(|node| match parser.peek() {
        Tok::End => Ok(node),
        other => Err(parser.unexpected(&format!("end of expression, found {}", other.describe()))),
    });
    parsed.map_err(|(offset, reason)| CompileError::at_offset(source, offset, reason))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Int(i64),
    Str(String),
    Name(String),
    Sym(&'static str),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(x) => format!("number {x}"),
            Tok::Int(i) => format!("number {i}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Name(n) => format!("'{n}'"),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::End => "end of expression".into(),
        }
    }
}

const SYMBOLS: &[&str] =
    &["&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]", ",", "."];

type Spanned = (Tok, usize);
type Failure = (usize, String);

fn lex(source: &str) -> Result<Vec<Spanned>, Failure> {
    let mut tokens = Vec::new();
    let mut rest = source.char_indices().peekable();
    while let Some(&(start, ch)) = rest.peek() {
        if ch.is_whitespace() {
            rest.next();
        } else if ch == '"' || ch == '\'' {
            rest.next();
            tokens.push((Tok::Str(string_literal(source, start, ch, &mut rest)?), start));
        } else if ch.is_ascii_digit() {
            let mut end = start;
            while let Some(&(i, c)) = rest.peek() {
                let exponent_sign =
                    (c == '+' || c == '-') && matches!(source.get(..i), Some(s) if s.ends_with(['e', 'E']));
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exponent_sign {
                    end = i + c.len_utf8();
                    rest.next();
                } else {
                    break;
                }
            }
            tokens.push((number_literal(source.get(start..end).unwrap_or(""), start)?, start));
        } else if ch.is_alphabetic() || ch == '_' {
            let mut end = start;
            while let Some(&(i, c)) = rest.peek() {
                if c.is_alphanumeric() || c == '_' {
                    end = i + c.len_utf8();
                    rest.next();
                } else {
                    break;
                }
            }
            tokens.push((Tok::Name(source.get(start..end).unwrap_or("").to_owned()), start));
        } else {
            let tail = source.get(start..).unwrap_or("");
            let Some(symbol) = SYMBOLS.iter().find(|s| tail.starts_with(**s)) else {
                return Err((start, format!("unexpected character {ch:?}")));
            };
            for _ in 0..symbol.len() {
                rest.next();
            }
            tokens.push((Tok::Sym(symbol), start));
        }
    }
    tokens.push((Tok::End, source.len()));
    Ok(tokens)
}

fn number_literal(text: &str, start: usize) -> Result<Tok, Failure> {
    if let Ok(int) = text.parse::<i64>() {
        return Ok(Tok::Int(int));
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Tok::Num(x)),
        _ => Err((start, format!("invalid number {text:?}"))),
    }
}

fn string_literal(
    source: &str,
    start: usize,
    quote: char,
    rest: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<String, Failure> {
    let mut out = String::new();
    while let Some((i, ch)) = rest.next() {
        match ch {
            c if c == quote => return Ok(out),
            '\\' => {
                let Some((_, escaped)) = rest.next() else { break };
                match escaped {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' | '"' | '\'' | '/' => out.push(escaped),
                    'u' => out.push(unicode_escape(source, i, rest)?),
                    other => return Err((i, format!("unknown escape \\{other}"))),
                }
            }
            c => out.push(c),
        }
    }
    Err((start, "unterminated string".into()))
}

fn unicode_escape(
    source: &str,
    at: usize,
    rest: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<char, Failure> {
    let digits: String = (0..4).filter_map(|_| rest.next().map(|(_, c)| c)).collect();
    let code = u32::from_str_radix(&digits, 16).ok().filter(|_| digits.len() == 4);
    code.and_then(char::from_u32).ok_or_else(|| {
        let shown = source.get(at..).unwrap_or("").chars().take(6).collect::<String>();
        (at, format!("invalid unicode escape {shown:?}"))
    })
}

/// Nesting deeper than this is rejected rather than risking the stack.
const MAX_DEPTH: usize = 64;

struct Parser<'b> {
    tokens: Vec<Spanned>,
    next: usize,
    depth: usize,
    builder: &'b mut Builder,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.next).map_or(&Tok::End, |(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.next).or(self.tokens.last()).map_or(0, |(_, o)| *o)
    }

    fn advance(&mut self) -> Tok {
        let tok = self.peek().clone();
        self.next += 1;
        tok
    }

    fn unexpected(&self, expected: &str) -> Failure {
        (self.offset(), format!("expected {expected}"))
    }

    fn eat_sym(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Tok::Sym(s) if *s == symbol) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Tok::Name(n) if n == word) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, symbol: &str) -> Result<(), Failure> {
        if self.eat_sym(symbol) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{symbol}', found {}", self.peek().describe())))
        }
    }

    fn call(&mut self, op: Op, args: Vec<Node>, at: usize) -> Result<Node, Failure> {
        self.builder.call(op, args).map_err(|reason| (at, reason))
    }

    fn expr(&mut self) -> Result<Node, Failure> {
        self.nested(Self::or)
    }

    fn nested(&mut self, parse: fn(&mut Self) -> Result<Node, Failure>) -> Result<Node, Failure> {
        if self.depth >= MAX_DEPTH {
            return Err((self.offset(), format!("expression nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let parsed = parse(self);
        self.depth -= 1;
        parsed
    }

    fn or(&mut self) -> Result<Node, Failure> {
        let mut terms = vec![self.and()?];
        while self.eat_sym("||") || self.eat_word("or") {
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Node::Call(Op::Or, terms) })
    }

    fn and(&mut self) -> Result<Node, Failure> {
        let mut terms = vec![self.not()?];
        while self.eat_sym("&&") || self.eat_word("and") {
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Node::Call(Op::And, terms) })
    }

    fn not(&mut self) -> Result<Node, Failure> {
        let at = self.offset();
        let is_not_in = matches!(self.tokens.get(self.next + 1), Some((Tok::Name(n), _)) if n == "in");
        if self.eat_sym("!") || (!is_not_in && self.eat_word("not")) {
            let operand = self.nested(Self::not)?;
            return self.call(Op::Not, vec![operand], at);
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Node, Failure> {
        let left = self.sum()?;
        let at = self.offset();
        let (op, negate) = match self.peek() {
            Tok::Sym("==") => (Op::StrictEq, false),
            Tok::Sym("!=") => (Op::StrictNe, false),
            Tok::Sym("<") => (Op::Lt, false),
            Tok::Sym("<=") => (Op::Le, false),
            Tok::Sym(">") => (Op::Gt, false),
            Tok::Sym(">=") => (Op::Ge, false),
            Tok::Name(n) if n == "in" => (Op::In, false),
            Tok::Name(n) if n == "not" => {
                self.next += 1;
                if !matches!(self.peek(), Tok::Name(n) if n == "in") {
                    return Err(self.unexpected("'in' after 'not'"));
                }
                (Op::In, true)
            }
            _ => return Ok(left),
        };
        self.next += 1;
        let right = self.sum()?;
        if matches!(self.peek(), Tok::Sym("==" | "!=" | "<" | "<=" | ">" | ">=")) {
            return Err((self.offset(), "comparisons do not chain; join them with &&".into()));
        }
        let compared = self.call(op, vec![left, right], at)?;
        if negate {
            self.call(Op::Not, vec![compared], at)
        } else {
            Ok(compared)
        }
    }

    fn sum(&mut self) -> Result<Node, Failure> {
        let mut left = self.product()?;
        loop {
            let at = self.offset();
            let op = if self.eat_sym("+") {
                Op::Add
            } else if self.eat_sym("-") {
                Op::Sub
            } else {
                return Ok(left);
            };
            let right = self.product()?;
            left = self.call(op, vec![left, right], at)?;
        }
    }

    fn product(&mut self) -> Result<Node, Failure> {
        let mut left = self.unary()?;
        loop {
            let at = self.offset();
            let op = if self.eat_sym("*") {
                Op::Mul
            } else if self.eat_sym("/") {
                Op::Div
            } else if self.eat_sym("%") {
                Op::Mod
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = self.call(op, vec![left, right], at)?;
        }
    }

    fn unary(&mut self) -> Result<Node, Failure> {
        let at = self.offset();
        if self.eat_sym("-") {
            let operand = self.nested(Self::unary)?;
            return match operand {
                Node::Literal(Value::Number(n)) => Ok(negated_literal(&n)),
                operand => self.call(Op::Sub, vec![operand], at),
            };
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, Failure> {
        let at = self.offset();
        match self.advance() {
            Tok::Int(i) => Ok(Node::Literal(Value::from(i))),
            Tok::Num(x) => Ok(Node::Literal(super::value::number(x))),
            Tok::Str(s) => Ok(Node::Literal(Value::String(s))),
            Tok::Sym("(") => {
                let inner = self.expr()?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Tok::Sym("[") => {
                let items = self.list("]")?;
                Ok(Node::array(items))
            }
            Tok::Name(name) => match name.as_str() {
                "true" => Ok(Node::Literal(Value::Bool(true))),
                "false" => Ok(Node::Literal(Value::Bool(false))),
                "null" => Ok(Node::Literal(Value::Null)),
                _ if self.eat_sym("(") => self.function(&name, at),
                _ => self.field(name),
            },
            other => {
                self.next -= 1;
                Err(self.unexpected(&format!("a value, found {}", other.describe())))
            }
        }
    }

    fn list(&mut self, close: &str) -> Result<Vec<Node>, Failure> {
        let mut items = Vec::new();
        if self.eat_sym(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_sym(close) {
                return Ok(items);
            }
            self.expect_sym(",")?;
        }
    }

    fn field(&mut self, first: String) -> Result<Node, Failure> {
        let mut path = vec![first];
        loop {
            if self.eat_sym(".") {
                match self.advance() {
                    Tok::Name(name) => path.push(name),
                    Tok::Int(i) if i >= 0 => path.push(i.to_string()),
                    other => {
                        self.next -= 1;
                        return Err(self.unexpected(&format!("a field name after '.', found {}", other.describe())));
                    }
                }
            } else if self.eat_sym("[") {
                match self.advance() {
                    Tok::Str(key) => path.push(key),
                    Tok::Int(i) if i >= 0 => path.push(i.to_string()),
                    other => {
                        self.next -= 1;
                        return Err(
                            self.unexpected(&format!("a string or index inside [], found {}", other.describe()))
                        );
                    }
                }
                self.expect_sym("]")?;
            } else {
                return Ok(Node::Var { var: self.builder.var_ref(path), default: None });
            }
        }
    }

    fn function(&mut self, name: &str, at: usize) -> Result<Node, Failure> {
        match name {
            "has" => {
                let field = self.expr()?;
                self.expect_sym(")")?;
                match field {
                    Node::Var { var, default: None } => Ok(Node::Has(var)),
                    _ => Err((at, "has() takes a field, e.g. has(payload.ppm)".into())),
                }
            }
            "in_grid" => {
                let pattern = self.string_argument("in_grid")?;
                self.expect_sym(")")?;
                self.builder.grid_pattern(&pattern).map(Node::InGrid).map_err(|reason| (at, reason))
            }
            "matches" => {
                let subject = self.expr()?;
                self.expect_sym(",")?;
                let pattern = self.string_argument("matches")?;
                self.expect_sym(")")?;
                let regex = regex::Regex::new(&pattern).map_err(|e| (at, format!("bad regular expression: {e}")))?;
                Ok(Node::Matches(Box::new(regex), Box::new(subject)))
            }
            _ => {
                let op = Op::from_name(name)
                    .filter(|op| !op.is_iterator() && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
                    .ok_or_else(|| (at, format!("unknown function '{name}'")))?;
                let args = self.list(")")?;
                self.call(op, args, at)
            }
        }
    }

    fn string_argument(&mut self, function: &str) -> Result<String, Failure> {
        match self.advance() {
            Tok::Str(s) => Ok(s),
            _ => {
                self.next -= 1;
                Err(self.unexpected(&format!("a string literal as the first argument of {function}()")))
            }
        }
    }
}

fn negated_literal(n: &serde_json::Number) -> Node {
    let negated = match n.as_i64() {
        Some(i) if i != i64::MIN => Value::from(-i),
        _ => super::value::number(-n.as_f64().unwrap_or(f64::NAN)),
    };
    Node::Literal(negated)
}
