//! The pipeline's outputs encoded a batch at a time, byte for byte as the Python encoders wrote them
//! (`hub/wire.py` with orjson for the CloudEvents envelope, pydantic's serializer for an event's `data`),
//! into one buffer with offsets.

mod cloudevent;
mod events;
mod incidents;
mod json;
mod shaped;

pub use cloudevent::Extension;
pub use events::{encode_events, Cell, Columns, Envelope, EventRows};
pub use incidents::{encode_incident_changes, IncidentChange, REPORT_PROPERTIES};
pub use json::{instant_from_seconds, write_f64, write_str, write_time, Utc};
pub use shaped::{write_plain, write_shaped};
