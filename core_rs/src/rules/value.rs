//! JavaScript-like value semantics shared by JsonLogic and the expression language: truthiness,
//! number and string conversion, loose and strict equality, ordering. They follow json-logic-js, the
//! reference implementation the official test suite was written against.

use serde_json::{Number, Value};
use std::cmp::Ordering;

/// JsonLogic truthiness: like JavaScript, except that an empty array is false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0 && !x.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

/// A number as a JSON value; NaN and infinities have no JSON form and become null.
pub fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        // Integral results stay integers so they print and compare as the data did.
        Value::Number(Number::from(x as i64))
    } else {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// JavaScript `Number(value)`.
pub fn to_number(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => string_to_number(s),
        Value::Array(_) => string_to_number(&to_js_string(value)),
        Value::Object(_) => f64::NAN,
    }
}

fn string_to_number(text: &str) -> f64 {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return 0.0;
    }
    match trimmed {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    let is_decimal = trimmed.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if is_decimal {
        trimmed.parse::<f64>().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    }
}

/// JavaScript `parseFloat(value)`: the longest numeric prefix of the string form, else NaN.
pub fn parse_float(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => float_prefix(s.trim_start()),
        Value::Array(_) => float_prefix(to_js_string(value).trim_start()),
        _ => f64::NAN,
    }
}

fn float_prefix(text: &str) -> f64 {
    if text.starts_with("Infinity") || text.starts_with("+Infinity") {
        return f64::INFINITY;
    }
    if text.starts_with("-Infinity") {
        return f64::NEG_INFINITY;
    }
    let bytes = text.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let digits_start = end;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if bytes.get(end) == Some(&b'.') {
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    if end == digits_start || text.get(digits_start..end) == Some(".") {
        return f64::NAN;
    }
    let mantissa_end = end;
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exp_end = end + 1;
        if matches!(bytes.get(exp_end), Some(b'+' | b'-')) {
            exp_end += 1;
        }
        let exp_digits = exp_end;
        while bytes.get(exp_end).is_some_and(u8::is_ascii_digit) {
            exp_end += 1;
        }
        if exp_end > exp_digits {
            end = exp_end;
        }
    }
    let prefix = text.get(..end).or_else(|| text.get(..mantissa_end)).unwrap_or("");
    prefix.parse::<f64>().unwrap_or(f64::NAN)
}

/// JavaScript `String(value)` (arrays join with ",", null inside arrays is empty).
pub fn to_js_string(value: &Value) -> String {
    let mut out = String::new();
    write_js_string(value, &mut out);
    out
}

fn write_js_string(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_js_number(n, out),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !item.is_null() {
                    write_js_string(item, out);
                }
            }
        }
        Value::Object(_) => out.push_str("[object Object]"),
    }
}

fn write_js_number(n: &Number, out: &mut String) {
    if n.is_f64() {
        let x = n.as_f64().unwrap_or(f64::NAN);
        // Rust prints integral floats without ".0", as JavaScript does.
        out.push_str(&format!("{x}"));
    } else {
        out.push_str(&n.to_string());
    }
}

/// `Array.prototype.join("")` on the arguments of `cat`: null becomes the empty string.
pub fn cat_piece(value: &Value, out: &mut String) {
    if !value.is_null() {
        write_js_string(value, out);
    }
}

fn is_primitive(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// JavaScript `===`: same type and value; arrays and objects are never identical to a copy.
pub fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    }
}

fn numbers_equal(x: &Number, y: &Number) -> bool {
    match (x.as_i64(), y.as_i64()) {
        (Some(i), Some(j)) => i == j,
        _ => x.as_f64() == y.as_f64(),
    }
}

/// JavaScript `==` (abstract equality) for JSON values.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Bool(_), _) | (_, Value::Bool(_)) if !(a.is_boolean() && b.is_boolean()) => {
            to_number(a) == to_number(b)
        }
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => to_number(a) == to_number(b),
        _ if is_primitive(a) && is_primitive(b) => strict_eq(a, b),
        _ if is_primitive(a) => loose_eq(a, &Value::String(to_js_string(b))),
        _ if is_primitive(b) => loose_eq(&Value::String(to_js_string(a)), b),
        _ => false,
    }
}

/// JavaScript relational comparison (`<` and friends): strings compare as strings, anything else
/// as numbers; `None` when either side is NaN (every comparison is then false).
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => return x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => return Some(x.as_str().cmp(y.as_str())),
        _ => {}
    }
    let left = relational_primitive(a);
    let right = relational_primitive(b);
    if let (Value::String(x), Value::String(y)) = (&left, &right) {
        return Some(x.as_str().cmp(y.as_str()));
    }
    to_number(&left).partial_cmp(&to_number(&right))
}

fn relational_primitive(value: &Value) -> Value {
    match value {
        Value::Array(_) => Value::String(to_js_string(value)),
        Value::Object(_) => Value::String(to_js_string(value)),
        other => other.clone(),
    }
}
