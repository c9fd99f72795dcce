//! A JSON Schema, as pydantic exports it for a model, compiled into a [`Shape`] that checks and
//! normalises parsed JSON. Only the keywords pydantic emits for the hub's models are understood; any other
//! keyword is a compile error naming it, so a model change the checker cannot follow stops the hub at
//! start-up (and fails its tests) instead of letting the two checks drift apart.

use super::tree::{Json, Members};
use regex::Regex;
use std::fmt;

/// Keywords that describe a schema without constraining it.
const ANNOTATIONS: &[&str] = &["title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"];

/// Why a schema could not be compiled: where in it, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event schema at {}: {}", if self.path.is_empty() { "(root)" } else { &self.path }, self.reason)
    }
}

impl std::error::Error for ShapeError {}

/// Bounds of a number; `exclusive` bounds refuse the bound itself.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
}

impl Bounds {
    fn admits(&self, value: f64) -> bool {
        self.minimum.is_none_or(|bound| value >= bound)
            && self.maximum.is_none_or(|bound| value <= bound)
            && self.exclusive_minimum.is_none_or(|bound| value > bound)
            && self.exclusive_maximum.is_none_or(|bound| value < bound)
    }
}

#[derive(Debug, Clone, Default)]
pub struct StrRule {
    min_chars: Option<usize>,
    max_chars: Option<usize>,
    pattern: Option<Regex>,
    choices: Option<Vec<String>>,
}

impl StrRule {
    fn admits(&self, text: &str) -> bool {
        let within = |limit: Option<usize>, ok: fn(usize, usize) -> bool| {
            limit.is_none_or(|limit| ok(text.chars().count(), limit))
        };
        within(self.min_chars, |n, limit| n >= limit)
            && within(self.max_chars, |n, limit| n <= limit)
            && self.pattern.as_ref().is_none_or(|pattern| pattern.is_match(text))
            && self.choices.as_ref().is_none_or(|choices| choices.iter().any(|choice| choice == text))
    }
}

/// One property of an object shape.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub shape: Shape,
    pub required: bool,
    /// Filled in when the property is absent (pydantic's default, as the schema states it).
    pub default: Option<Json<'static>>,
}

#[derive(Debug, Clone)]
pub struct ObjectShape {
    pub fields: Vec<Field>,
    /// `additionalProperties`: None refuses unknown properties, Some(shape) checks their values.
    pub extra: Option<Box<Shape>>,
}

/// What a JSON value must be.
#[derive(Debug, Clone)]
pub enum Shape {
    Any,
    Null,
    Bool,
    Str(StrRule),
    /// A timezone-aware RFC 3339 date-time in the strict spelling of [`super::parse_rfc3339`].
    DateTime,
    Number(Bounds),
    Integer(Bounds),
    Array(Box<Shape>),
    Object(ObjectShape),
    AnyOf(Vec<Shape>),
}

struct Compiler<'a, 's> {
    defs: Option<&'a Members<'s>>,
    depth: usize,
}

/// `$ref` chains deeper than this are taken for a cycle (pydantic's models here are not recursive).
const MAX_REF_DEPTH: usize = 32;

fn error(path: &str, reason: impl Into<String>) -> ShapeError {
    ShapeError { path: path.to_string(), reason: reason.into() }
}

/// The member called `key` of a schema object.
fn get<'m, 's>(schema: &'m Members<'s>, key: &str) -> Option<&'m Json<'s>> {
    schema.iter().find(|(name, _)| name == key).map(|(_, value)| value)
}

fn keys<'m>(schema: &'m Members<'_>) -> impl Iterator<Item = &'m str> {
    schema.iter().map(|(name, _)| name.as_ref())
}

fn number(schema: &Members<'_>, key: &str, path: &str) -> Result<Option<f64>, ShapeError> {
    match get(schema, key) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or_else(|| error(path, format!("{key} must be a number"))),
    }
}

fn count(schema: &Members<'_>, key: &str, path: &str) -> Result<Option<usize>, ShapeError> {
    match get(schema, key) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| error(path, format!("{key} must be a non-negative integer"))),
    }
}

impl Shape {
    /// The shape of a whole JSON Schema document, as JSON text (its `$defs` resolve `$ref`s). The order of
    /// `properties` is kept: it is the order a model writes its fields in.
    pub fn compile(schema: &str) -> Result<Shape, ShapeError> {
        let schema = Json::parse(schema.as_bytes()).map_err(|e| error("", format!("the schema is not JSON: {e}")))?;
        let root = schema.members().ok_or_else(|| error("", "a schema must be a JSON object"))?;
        let defs = match get(root, "$defs") {
            None => None,
            Some(Json::Object(defs)) => Some(defs.as_slice()),
            Some(_) => return Err(error("$defs", "must be an object")),
        };
        Compiler { defs, depth: 0 }.shape(root, "")
    }

    /// Whether `value` already has the form the model stores and meets every constraint.
    pub fn admits(&self, value: &Json<'_>) -> bool {
        match (self, value) {
            (Shape::Any, _) => keeps_every_number(value),
            (Shape::Null, Json::Null) | (Shape::Bool, Json::Bool(_)) => true,
            (Shape::Str(rule), Json::Str(text)) => rule.admits(text),
            (Shape::DateTime, Json::Str(text)) => super::parse_rfc3339(text).is_some(),
            (Shape::Number(bounds), Json::Int(_) | Json::UInt(_) | Json::Float(_)) => {
                keeps_every_number(value) && value.as_f64().is_some_and(|float| bounds.admits(float))
            }
            (Shape::Integer(bounds), Json::Int(i)) => bounds.admits(*i as f64),
            (Shape::Array(items), Json::Array(values)) => values.iter().all(|item| items.admits(item)),
            (Shape::Object(object), Json::Object(members)) => object.admits(members),
            // A union is accepted only when exactly one branch takes the value: pydantic's choice among
            // several would depend on its own union rules.
            (Shape::AnyOf(branches), _) => branches.iter().filter(|branch| branch.admits(value)).count() == 1,
            _ => false,
        }
    }

    /// The branch of a union that takes an admitted `value` (the shape itself when it is no union).
    pub fn branch_for(&self, value: &Json<'_>) -> &Shape {
        match self {
            Shape::AnyOf(branches) => branches.iter().find(|branch| branch.admits(value)).unwrap_or(self),
            _ => self,
        }
    }
}

/// Integers beyond 64 bits reach serde_json as floats (Python keeps them exact), so a value holding a float
/// that may have been such an integer is left to pydantic.
const FLOAT_FROM_BIG_INTEGER: f64 = 9_223_372_036_854_775_808.0;

fn keeps_every_number(value: &Json<'_>) -> bool {
    match value {
        Json::Float(f) => f.fract() != 0.0 || f.abs() < FLOAT_FROM_BIG_INTEGER,
        Json::Array(values) => values.iter().all(keeps_every_number),
        Json::Object(members) => members.iter().all(|(_, value)| keeps_every_number(value)),
        _ => true,
    }
}

/// Objects with more declared properties than this are checked for missing required ones field by field.
const MASKED_FIELDS: usize = 64;

impl ObjectShape {
    fn admits(&self, members: &[(std::borrow::Cow<'_, str>, Json<'_>)]) -> bool {
        let mut present = 0u64;
        for (name, value) in members {
            match self.index(name) {
                Some(index) if self.fields[index].shape.admits(value) => present |= 1 << index.min(MASKED_FIELDS - 1),
                Some(_) => return false,
                None if self.extra.as_ref().is_some_and(|extra| extra.admits(value)) => {}
                None => return false,
            }
        }
        self.fields.iter().enumerate().all(|(index, field)| {
            !field.required
                || match index < MASKED_FIELDS - 1 {
                    true => present & (1 << index) != 0,
                    false => members.iter().any(|(name, _)| *name == field.name),
                }
        })
    }

    /// Where the property called `name` is among the fields.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|field| field.name.len() == name.len() && field.name == name)
    }

    /// Each field's value among `members` (None where absent), in field order.
    pub fn values<'m, 'a>(&self, members: &'m [(std::borrow::Cow<'a, str>, Json<'a>)]) -> Vec<Option<&'m Json<'a>>> {
        let mut values = vec![None; self.fields.len()];
        for (name, value) in members {
            if let Some(index) = self.index(name) {
                values[index] = Some(value);
            }
        }
        values
    }
}

impl<'s> Compiler<'_, 's> {
    fn shape(&mut self, schema: &Members<'s>, path: &str) -> Result<Shape, ShapeError> {
        if let Some(reference) = get(schema, "$ref") {
            return self.reference(reference, schema, path);
        }
        if let Some(branches) = get(schema, "anyOf") {
            return self.any_of(branches, schema, path);
        }
        let type_ = get(schema, "type").and_then(Json::as_str).map(str::to_owned);
        let known: &[&str] = match type_.as_deref() {
            None if keys(schema).all(|key| ANNOTATIONS.contains(&key)) => return Ok(Shape::Any),
            None => return Err(error(path, "a schema without \"type\" is understood only when it is empty")),
            Some("null") => &[],
            Some("boolean") => &[],
            Some("string") => &["minLength", "maxLength", "pattern", "enum", "format"],
            Some("number") | Some("integer") => &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"],
            Some("array") => &["items"],
            Some("object") => &["properties", "required", "additionalProperties", "$defs"],
            Some(other) => return Err(error(path, format!("type {other:?} is not understood"))),
        };
        if let Some(unknown) =
            keys(schema).find(|key| *key != "type" && !known.contains(key) && !ANNOTATIONS.contains(key))
        {
            return Err(error(
                path,
                format!(
                    "keyword {unknown:?} is not understood by the Rust event checker; \
                teach core_rs/src/ingest/schema.rs its meaning"
                ),
            ));
        }
        match type_.as_deref().unwrap_or_default() {
            "null" => Ok(Shape::Null),
            "boolean" => Ok(Shape::Bool),
            "string" => self.string(schema, path),
            "number" => Ok(Shape::Number(Self::bounds(schema, path)?)),
            "integer" => Ok(Shape::Integer(Self::bounds(schema, path)?)),
            "array" => match get(schema, "items") {
                None => Ok(Shape::Array(Box::new(Shape::Any))),
                Some(Json::Object(items)) => Ok(Shape::Array(Box::new(self.shape(items, &format!("{path}/items"))?))),
                Some(_) => Err(error(path, "items must be a schema object")),
            },
            _ => self.object(schema, path),
        }
    }

    fn reference(&mut self, reference: &Json<'s>, schema: &Members<'s>, path: &str) -> Result<Shape, ShapeError> {
        if let Some(unknown) = keys(schema).find(|key| *key != "$ref" && !ANNOTATIONS.contains(key)) {
            return Err(error(path, format!("keyword {unknown:?} beside $ref is not understood")));
        }
        let name = reference
            .as_str()
            .and_then(|text| text.strip_prefix("#/$defs/"))
            .ok_or_else(|| error(path, format!("only #/$defs/ references are understood, got {reference:?}")))?;
        let target = self
            .defs
            .and_then(|defs| get(defs, name))
            .and_then(Json::members)
            .ok_or_else(|| error(path, format!("reference to unknown definition {name:?}")))?;
        if self.depth >= MAX_REF_DEPTH {
            return Err(error(path, "references nest too deep (a recursive model is not understood)"));
        }
        self.depth += 1;
        let shape = self.shape(target, &format!("$defs/{name}"));
        self.depth -= 1;
        shape
    }

    fn any_of(&mut self, branches: &Json<'s>, schema: &Members<'s>, path: &str) -> Result<Shape, ShapeError> {
        if let Some(unknown) = keys(schema).find(|key| *key != "anyOf" && !ANNOTATIONS.contains(key)) {
            return Err(error(path, format!("keyword {unknown:?} beside anyOf is not understood")));
        }
        let branches = branches.as_array().ok_or_else(|| error(path, "anyOf must be an array"))?;
        let shapes = branches
            .iter()
            .enumerate()
            .map(|(i, branch)| {
                let branch = branch.members().ok_or_else(|| error(path, "anyOf branches must be schema objects"))?;
                self.shape(branch, &format!("{path}/anyOf/{i}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Shape::AnyOf(shapes))
    }

    fn string(&mut self, schema: &Members<'s>, path: &str) -> Result<Shape, ShapeError> {
        match get(schema, "format").map(Json::as_str) {
            None => {}
            Some(Some("date-time"))
                if keys(schema).all(|k| k == "type" || k == "format" || ANNOTATIONS.contains(&k)) =>
            {
                return Ok(Shape::DateTime)
            }
            Some(format) => return Err(error(path, format!("string format {format:?} is not understood"))),
        }
        let pattern = match get(schema, "pattern") {
            None => None,
            Some(Json::Str(pattern)) => {
                Some(Regex::new(pattern).map_err(|e| error(path, format!("pattern {pattern:?}: {e}")))?)
            }
            Some(_) => return Err(error(path, "pattern must be a string")),
        };
        let choices = match get(schema, "enum") {
            None => None,
            Some(Json::Array(values)) => Some(
                values
                    .iter()
                    .map(|value| value.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| error(path, "only string enums are understood"))?,
            ),
            Some(_) => return Err(error(path, "enum must be an array")),
        };
        Ok(Shape::Str(StrRule {
            min_chars: count(schema, "minLength", path)?,
            max_chars: count(schema, "maxLength", path)?,
            pattern,
            choices,
        }))
    }

    fn bounds(schema: &Members<'_>, path: &str) -> Result<Bounds, ShapeError> {
        Ok(Bounds {
            minimum: number(schema, "minimum", path)?,
            maximum: number(schema, "maximum", path)?,
            exclusive_minimum: number(schema, "exclusiveMinimum", path)?,
            exclusive_maximum: number(schema, "exclusiveMaximum", path)?,
        })
    }

    fn object(&mut self, schema: &Members<'s>, path: &str) -> Result<Shape, ShapeError> {
        let required: Vec<&str> = match get(schema, "required") {
            None => Vec::new(),
            Some(Json::Array(names)) => names.iter().filter_map(Json::as_str).collect(),
            Some(_) => return Err(error(path, "required must be an array of names")),
        };
        let fields = match get(schema, "properties") {
            None => Vec::new(),
            Some(Json::Object(properties)) => properties
                .iter()
                .map(|(name, property)| {
                    let property =
                        property.members().ok_or_else(|| error(path, format!("property {name:?} must be a schema")))?;
                    Ok(Field {
                        name: name.to_string(),
                        shape: self.shape(property, &format!("{path}/properties/{name}"))?,
                        required: required.contains(&name.as_ref()),
                        default: get(property, "default").map(Json::to_owned_json),
                    })
                })
                .collect::<Result<Vec<_>, ShapeError>>()?,
            Some(_) => return Err(error(path, "properties must be an object")),
        };
        let extra = match get(schema, "additionalProperties") {
            Some(Json::Bool(false)) => None,
            None if !fields.is_empty() => {
                return Err(error(path, "an object with properties must say additionalProperties (extra=\"forbid\")"))
            }
            None | Some(Json::Bool(true)) => Some(Box::new(Shape::Any)),
            Some(Json::Object(values)) => Some(Box::new(self.shape(values, &format!("{path}/additionalProperties"))?)),
            Some(_) => return Err(error(path, "additionalProperties must be a boolean or a schema")),
        };
        Ok(Shape::Object(ObjectShape { fields, extra }))
    }
}
