//! Incident ids (`inc-<event id>`) stored inline when short, so opening and closing an incident allocates
//! nothing for its id in the usual case.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes held inline; longer ids go to the heap. 30 keeps the id at 32 bytes and covers event ids of up to
/// 26 bytes.
const INLINE: usize = 30;

/// An incident id; written to snapshots exactly as a `String` would be.
#[derive(Clone, PartialEq, Eq)]
pub enum IncidentId {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl IncidentId {
    /// `inc-<event id>`.
    pub(crate) fn of_event(event_id: &str) -> Self {
        const PREFIX: &[u8; 4] = b"inc-";
        let mut bytes = [0u8; INLINE];
        let (prefix, rest) = bytes.split_at_mut(PREFIX.len());
        prefix.copy_from_slice(PREFIX);
        match rest.get_mut(..event_id.len()) {
            Some(target) => {
                target.copy_from_slice(event_id.as_bytes());
                Self::Inline { len: (PREFIX.len() + event_id.len()) as u8, bytes }
            }
            None => Self::from_parts(&["inc-", event_id]),
        }
    }

    pub(crate) fn from_parts(parts: &[&str]) -> Self {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let mut bytes = [0u8; INLINE];
        let mut free = &mut bytes[..];
        for part in parts {
            let Some((target, rest)) = free.split_at_mut_checked(part.len()) else {
                return Self::Heap(parts.concat().into_boxed_str());
            };
            target.copy_from_slice(part.as_bytes());
            free = rest;
        }
        Self::Inline { len: len as u8, bytes }
    }

    /// The id's UTF-8, unchecked: hashing, comparing and handing the id to Python need no validation.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(id) => id.as_bytes(),
        }
    }

    /// The id as text (validates inline bytes, which are UTF-8 by construction, on every call).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Self::Heap(id) => id,
        }
    }
}

impl fmt::Debug for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for IncidentId {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Serialize for IncidentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IncidentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        Ok(Self::from_parts(&[&id]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_ids_read_back_and_snapshot_like_strings() {
        for event_id in ["e", "evt-0000123", "a-26-byte-event-id-1234567", "an-event-id-too-long-to-fit-inline-😀"] {
            let id = IncidentId::of_event(event_id);
            let expected = format!("inc-{event_id}");
            assert_eq!(id.as_str(), expected);
            assert_eq!(postcard::to_allocvec(&id).unwrap(), postcard::to_allocvec(&expected).unwrap());
            assert_eq!(postcard::from_bytes::<IncidentId>(&postcard::to_allocvec(&id).unwrap()).unwrap(), id);
        }
        assert!(matches!(IncidentId::of_event("a-26-byte-event-id-1234567"), IncidentId::Inline { .. }));
        assert_eq!(std::mem::size_of::<IncidentId>(), 32);
    }
}
