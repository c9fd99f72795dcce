//! Time-ordered event ids: 26 Crockford base-32 digits (ULID-shaped), 48 bits of milliseconds then 80 bits of
//! BLAKE2b over the event's idempotency key. The id depends on the input alone, so a replay after a crash
//! publishes the same ids and JetStream drops the second publication; the digest parameters match Python's
//! `hashlib.blake2b(key, digest_size=10)` so ids stay the same across releases.

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;

pub const ID_LEN: usize = 26;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ENTROPY_BYTES: usize = 10;
const MILLIS_MASK: u128 = (1 << 48) - 1;

/// The id of the event at `epoch_s` (seconds) whose idempotency key is `key`.
pub fn time_ordered_id(epoch_s: f64, key: &[u8]) -> [u8; ID_LEN] {
    // `as` saturates and truncates toward zero, as Python's int() does for every time a datetime can hold.
    let millis = ((epoch_s * 1000.0) as i64).max(0) as u128 & MILLIS_MASK;
    encode((millis << 80) | entropy(key))
}

fn entropy(key: &[u8]) -> u128 {
    let mut digest = [0u8; ENTROPY_BYTES];
    let mut hasher = Blake2bVar::new(ENTROPY_BYTES).expect("10 bytes is a valid BLAKE2b output size");
    hasher.update(key);
    hasher.finalize_variable(&mut digest).expect("the buffer has the requested output size");
    digest.iter().fold(0u128, |value, byte| (value << 8) | u128::from(*byte))
}

fn encode(value: u128) -> [u8; ID_LEN] {
    let mut digits = [0u8; ID_LEN];
    for (position, digit) in digits.iter_mut().rev().enumerate() {
        *digit = CROCKFORD[((value >> (5 * position)) & 31) as usize];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_id() {
        // 2026-11-23T08:30:00.123Z, the id the first release's Python encoder gave
        let id = time_ordered_id(1_795_422_600.123, b"iot_mqtt:r-1");
        assert_eq!(&id, b"01M83RDEXVGSK35WXJH6BQ1DDC");
    }

    #[test]
    fn times_before_the_epoch_count_as_zero() {
        assert_eq!(&time_ordered_id(-5.0, b"k")[..10], b"0000000000");
    }
}
