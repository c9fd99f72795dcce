//! The pipeline's outputs encoded a batch at a time, byte for byte as the Python encoders write them
//! (`hub/wire.py` with orjson for the CloudEvents envelope, pydantic's serializer for `data`), into one
//! buffer with offsets.

mod events;
mod json;
mod shaped;

pub use events::{encode_events, Cell, Envelope};
pub use json::{write_f64, write_str, write_time, Utc};
pub use shaped::{write_plain, write_shaped};
