//! The byte envelope shared by dedup and merger snapshots:
//! `b"CHUB"` | format version | component tag | postcard body | xxh3-64 of everything before it.
//!
//! The checksum turns truncated or foreign bytes into a clear error instead of a half-restored state.
//! Every snapshot carries a generation number; a delta names the generation it follows, so a gap or a
//! reordering in a chain of deltas is refused rather than silently applied.

use serde::de::DeserializeOwned;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use super::IncidentError;

const MAGIC: &[u8; 4] = b"CHUB";
const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 2;
const CHECKSUM_LEN: usize = 8;

/// Which component wrote the bytes, so a merger snapshot handed to a deduper is refused by name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Component {
    Deduper = 1,
    Merger = 2,
}

impl Component {
    fn name(tag: u8) -> &'static str {
        match tag {
            1 => "a Deduper snapshot",
            2 => "an IncidentMerger snapshot",
            _ => "an unknown component's snapshot",
        }
    }
}

/// Either the whole state or the changes since the snapshot of generation `follows`.
#[derive(Serialize, serde::Deserialize)]
pub(crate) enum Image<Full, Delta> {
    Full { generation: u64, state: Full },
    Delta { follows: u64, generation: u64, changes: Delta },
}

pub(crate) fn seal<T: Serialize>(component: Component, body: &T) -> Result<Vec<u8>, IncidentError> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(component as u8);
    let mut out = postcard::to_extend(body, out)
        .map_err(|e| IncidentError::InvalidSnapshot(format!("could not encode the state: {e}")))?;
    let checksum = xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

pub(crate) fn open<T: DeserializeOwned>(component: Component, bytes: &[u8]) -> Result<T, IncidentError> {
    let bad = |reason: String| IncidentError::InvalidSnapshot(reason);
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN || !bytes.starts_with(MAGIC) {
        return Err(bad(format!(
            "{} bytes that do not start with a CityHub snapshot header (expected bytes from snapshot())",
            bytes.len()
        )));
    }
    let (sealed, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let mut expected = [0u8; CHECKSUM_LEN];
    expected.copy_from_slice(checksum);
    if xxh3_64(sealed) != u64::from_le_bytes(expected) {
        return Err(bad("checksum mismatch: the bytes are truncated or corrupted".into()));
    }
    let (Some(&version), Some(&tag), Some(body)) =
        (sealed.get(MAGIC.len()), sealed.get(MAGIC.len() + 1), sealed.get(HEADER_LEN..))
    else {
        return Err(bad("snapshot header is truncated".into()));
    };
    if version != FORMAT_VERSION {
        return Err(bad(format!("format version {version}, this build reads version {FORMAT_VERSION}")));
    }
    if tag != component as u8 {
        return Err(bad(format!(
            "these bytes are {}, expected {}",
            Component::name(tag),
            Component::name(component as u8)
        )));
    }
    postcard::from_bytes(body).map_err(|e| bad(format!("body does not decode: {e}")))
}

/// Checks that a delta continues the state of generation `current`.
pub(crate) fn check_follows(current: u64, follows: u64) -> Result<(), IncidentError> {
    if current == follows {
        Ok(())
    } else {
        Err(IncidentError::InvalidSnapshot(format!(
            "delta follows generation {follows} but the state is at generation {current} \
             (apply deltas in the order they were taken, starting from their full snapshot)"
        )))
    }
}
