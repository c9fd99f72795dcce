//! Ingest messages decoded and validated a batch at a time: the JSON Schema of the canonical event model
//! (exported by pydantic at start-up) is compiled into a [`Shape`], each message is parsed with serde_json
//! and checked against it, and the events that pass come back as columns.
//!
//! The check is deliberately strict: a document is *accepted* only when every value already has its
//! canonical JSON type (no coercion of `"1.5"` to a number, no naive or unusual date-time spellings) and
//! satisfies every constraint of the schema. Anything else is *undecided* and left to the pydantic model,
//! which then gives the exact rejection reason (or accepts what lax validation allows). So the fast path can
//! never accept what the model would refuse, and the reasons of rejections are the model's own.

mod batch;
mod datetime;
mod documents;
#[cfg(test)]
mod fuzz;
mod schema;
mod tree;

pub use batch::{
    column_kind, columns_of, declared_object, decode_batch, Column, ColumnKind, Decoded, EventRules, IngestMessage,
    TimeWindow, Value as ColumnValue,
};
pub use datetime::{parse_rfc3339, Instant};
pub use documents::patched_document;
pub use schema::{ObjectShape, Shape, ShapeError};
pub use tree::{Json, Members};
