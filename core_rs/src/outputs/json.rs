//! JSON text exactly as the Python side writes it (pydantic's serializer for `data`, orjson for CloudEvents
//! envelopes; the two agree on everything here except how a UTC time is written).

use crate::ingest::Instant;

/// A string as a JSON string: `"` and `\` escaped, control characters as `\n`-style or `\u00xx` escapes,
/// everything else (non-ASCII included) as it is.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    write_joined(out, &[text]);
}

/// One JSON string holding the concatenation of `parts`.
pub fn write_joined(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for part in parts {
        write_escaped(out, part);
    }
    out.push(b'"');
}

/// The bytes a JSON string escapes: control characters, `"` and `\\`.
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

fn write_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Most strings need no escape: one pass the compiler vectorises tells.
    if !bytes.iter().fold(false, |found, &byte| found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if !ESCAPED[byte as usize] {
            continue;
        }
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{byte:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A finite float with the fewest digits that read back to it: plain decimals (with `.0` when whole)
/// from 1e-5 up to 1e16, scientific notation (`1e-7`, `1.5e+16`) outside. Non-finite values are `null`.
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if value.is_sign_negative() {
        out.push(b'-');
    }
    let mut buffer = zmij::Buffer::new();
    let (digits, exponent) = shortest_digits(buffer.format_finite(value.abs()).as_bytes());
    let digits = digits.as_slice();
    if digits.is_empty() {
        out.extend_from_slice(b"0.0");
    } else if !(-5..16).contains(&exponent) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        if exponent > 0 {
            out.push(b'+');
        }
        write_int(out, i64::from(exponent));
    } else if exponent < 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-exponent - 1) as usize));
        out.extend_from_slice(digits);
    } else {
        let whole = exponent as usize + 1;
        if digits.len() <= whole {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', whole - digits.len()));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..whole]);
            out.push(b'.');
            out.extend_from_slice(&digits[whole..]);
        }
    }
}

/// The significant digits (no leading or trailing zeros; none for zero) of a non-negative number written in
/// decimal or scientific notation, and the exponent of the first digit.
fn shortest_digits(text: &[u8]) -> (arrayvec_digits::Digits, i32) {
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&text[..at], parse_exponent(&text[at + 1..])),
        None => (text, 0),
    };
    let mut digits = arrayvec_digits::Digits::default();
    let mut point = 0i32;
    let mut before_point = true;
    for &byte in mantissa {
        match byte {
            b'.' => before_point = false,
            b'0' if digits.is_empty() => point -= i32::from(!before_point),
            _ => {
                digits.push(byte);
                point += i32::from(before_point);
            }
        }
    }
    digits.trim_trailing_zeros();
    (digits, point + exponent - 1)
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    let value = digits.iter().fold(0i32, |n, d| n * 10 + i32::from(d - b'0'));
    if negative {
        -value
    } else {
        value
    }
}

/// The digits of a float, on the stack.
mod arrayvec_digits {
    #[derive(Default)]
    pub struct Digits {
        bytes: [u8; 32],
        len: usize,
    }

    impl Digits {
        pub fn push(&mut self, digit: u8) {
            if self.len < self.bytes.len() {
                self.bytes[self.len] = digit;
                self.len += 1;
            }
        }

        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        pub fn trim_trailing_zeros(&mut self) {
            while self.len > 0 && self.bytes[self.len - 1] == b'0' {
                self.len -= 1;
            }
        }

        pub fn as_slice(&self) -> &[u8] {
            &self.bytes[..self.len]
        }
    }
}

/// The instant `datetime.fromtimestamp(seconds, timezone.utc)` makes of epoch seconds: the fraction rounded
/// half to even to microseconds, as CPython rounds it (`pytime_double_to_denominator`), so a time the hub
/// stamps from a float (a reception, a clock) is written as the Python encoders wrote it.
pub fn instant_from_seconds(seconds: f64) -> Instant {
    let whole = seconds.trunc();
    let mut micros = ((seconds - whole) * 1e6).round_ties_even();
    let mut whole = whole;
    if micros >= 1e6 {
        micros -= 1e6;
        whole += 1.0;
    } else if micros < 0.0 {
        micros += 1e6;
        whole -= 1.0;
    }
    Instant { epoch_us: (whole as i64).saturating_mul(1_000_000).saturating_add(micros as i64), offset_s: 0 }
}

/// An integer as JSON.
pub fn write_int(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// How a UTC offset of zero is written: pydantic writes `Z`, orjson `+00:00`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Utc {
    Z,
    Offset,
}

/// An instant in the offset it was written with, as a JSON string: `2026-05-01T08:00:00+08:00`, with
/// `.ffffff` when it has microseconds.
pub fn write_time(out: &mut Vec<u8>, instant: Instant, utc: Utc) {
    let local_us = instant.epoch_us + i64::from(instant.offset_s) * 1_000_000;
    let (seconds, micros) = (local_us.div_euclid(1_000_000), local_us.rem_euclid(1_000_000));
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    out.push(b'"');
    write_padded(out, year, 4);
    out.push(b'-');
    write_padded(out, i64::from(month), 2);
    out.push(b'-');
    write_padded(out, i64::from(day), 2);
    out.push(b'T');
    write_padded(out, second_of_day / 3600, 2);
    out.push(b':');
    write_padded(out, second_of_day / 60 % 60, 2);
    out.push(b':');
    write_padded(out, second_of_day % 60, 2);
    if micros != 0 {
        out.push(b'.');
        write_padded(out, micros, 6);
    }
    if instant.offset_s == 0 && utc == Utc::Z {
        out.push(b'Z');
    } else {
        let offset = i64::from(instant.offset_s.unsigned_abs());
        out.push(if instant.offset_s < 0 { b'-' } else { b'+' });
        write_padded(out, offset / 3600, 2);
        out.push(b':');
        write_padded(out, offset / 60 % 60, 2);
    }
    out.push(b'"');
}

/// A non-negative number in at least `width` digits, zero-padded (a negative one as itself).
fn write_padded(out: &mut Vec<u8>, value: i64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value);
    if value >= 0 {
        out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits.len())));
    }
    out.extend_from_slice(digits.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(value: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_are_written_as_orjson_and_pydantic_write_them() {
        let cases = [
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "0.00001"),
            (1e-6, "1e-6"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (104.0756, "104.0756"),
            (123456789012345.6, "123456789012345.6"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-2.5e-7, "-2.5e-7"),
            (0.0, "0.0"),
            (1.0, "1.0"),
            (1234.5, "1234.5"),
            (1e-5, "0.00001"),
            (9.999999999999998e15, "9999999999999998.0"),
            (1e-300, "1e-300"),
            (0.1 + 0.2, "0.30000000000000004"),
            (123456789012345678.0, "1.2345678901234568e+17"),
        ];
        for (value, text) in cases {
            assert_eq!(float(value), text, "{value}");
        }
    }

    #[test]
    fn float_seconds_round_to_microseconds_as_cpython_does() {
        // datetime.fromtimestamp(x, timezone.utc) for each x, microseconds since the epoch.
        let cases = [
            (1_777_593_600.5, 1_777_593_600_500_000),
            (1_777_593_600.123_456_5, 1_777_593_600_123_456),
            (-0.000_000_5, 0),
            (-1.5, -1_500_000),
            (0.999_999_5, 1_000_000),
            (1e-7, 0),
        ];
        for (seconds, micros) in cases {
            assert_eq!(instant_from_seconds(seconds).epoch_us, micros, "{seconds}");
        }
    }

    #[test]
    fn times_keep_their_offset_and_microseconds() {
        let mut out = Vec::new();
        let instant = crate::ingest::parse_rfc3339("2026-04-30T23:59:59.000001-03:30").unwrap();
        write_time(&mut out, instant, Utc::Z);
        assert_eq!(out, b"\"2026-04-30T23:59:59.000001-03:30\"");
        out.clear();
        write_time(&mut out, crate::ingest::parse_rfc3339("1969-12-31T23:59:59.5Z").unwrap(), Utc::Offset);
        assert_eq!(out, b"\"1969-12-31T23:59:59.500000+00:00\"");
    }
}
