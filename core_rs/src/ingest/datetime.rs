//! The one date-time spelling the fast path accepts: `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`. Every other
//! spelling pydantic may accept (a space for `T`, lower-case `z`, `+0800`, more than six fractional digits,
//! unix timestamps) is left to pydantic, and naive times never pass.

/// A parsed date-time: microseconds since the Unix epoch and the offset it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant {
    pub epoch_us: i64,
    pub offset_s: i32,
}

impl Instant {
    /// Epoch seconds as Python's `datetime.timestamp()` gives them: the exact microsecond count divided
    /// by 10^6, correctly rounded (exact while the count fits in 53 bits, which [`parse_rfc3339`] ensures).
    pub fn epoch_seconds(&self) -> f64 {
        self.epoch_us as f64 / 1e6
    }
}

/// Microsecond counts beyond 2^53 do not convert to f64 exactly; such far dates are left to pydantic.
const MAX_EXACT_US: i64 = 1 << 53;

fn digits(text: &[u8]) -> Option<u32> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn offset_seconds(text: &[u8]) -> Option<i32> {
    match text {
        b"Z" => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 3600 + minutes * 60) as i32;
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => None,
    }
}

/// The instant `text` names, or None when it is not in the strict spelling or not a real date and time.
pub fn parse_rfc3339(text: &str) -> Option<Instant> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let year = i64::from(digits(&bytes[0..4])?);
    let (month, day) = (digits(&bytes[5..7])?, digits(&bytes[8..10])?);
    let (hour, minute, second) = (digits(&bytes[11..13])?, digits(&bytes[14..16])?, digits(&bytes[17..19])?);
    if year == 0
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &bytes[19..];
    let mut micros = 0u32;
    if let [b'.', fraction @ ..] = rest {
        let length = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if length == 0 || length > 6 {
            return None;
        }
        micros = digits(&fraction[..length])? * 10u32.pow(6 - length as u32);
        rest = &fraction[length..];
    }
    let offset_s = offset_seconds(rest)?;
    let local_s = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let epoch_us = (local_s - i64::from(offset_s)) * 1_000_000 + i64::from(micros);
    (epoch_us.abs() < MAX_EXACT_US).then_some(Instant { epoch_us, offset_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_spellings_parse_to_their_instant() {
        let utc = parse_rfc3339("2026-05-01T00:00:00Z").unwrap();
        assert_eq!(utc.epoch_us, 1_777_593_600_000_000);
        let east = parse_rfc3339("2026-05-01T08:00:00.5+08:00").unwrap();
        assert_eq!((east.epoch_us, east.offset_s), (1_777_593_600_500_000, 28_800));
    }

    #[test]
    fn other_spellings_and_impossible_dates_are_left_to_pydantic() {
        for text in [
            "2026-05-01T08:00:00",
            "2026-05-01 08:00:00Z",
            "2026-05-01T08:00:00z",
            "2026-05-01T08:00:00+0800",
            "2026-02-29T08:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T08:00:00.1234567Z",
            "0000-01-01T00:00:00Z",
            "2026-05-01T08:00:00+24:00",
            "2026-05-01T08:00:00.Z",
            "２026-05-01T08:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }
}
