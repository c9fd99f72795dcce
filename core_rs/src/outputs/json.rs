//! JSON text exactly as the Python side writes it (pydantic's serializer for `data`, orjson for CloudEvents
//! envelopes; the two agree on everything here except how a UTC time is written).

use crate::ingest::Instant;

/// A string as a JSON string: `"` and `\` escaped, control characters as `\n`-style or `\u00xx` escapes,
/// everything else (non-ASCII included) as it is.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
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
    out.push(b'"');
}

/// A finite float with the fewest digits that read back to it: plain decimals (with `.0` when whole)
/// from 1e-5 up to 1e16, scientific notation (`1e-7`, `1.5e+16`) outside. Non-finite values are `null`.
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let scientific = format!("{value:e}"); // shortest round-trip digits, e.g. "-1.2345e-7"
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    out.extend_from_slice(sign.as_bytes());
    if !(-5..16).contains(&exponent) {
        out.extend_from_slice(mantissa.as_bytes());
        out.extend_from_slice(format!("e{}{exponent}", if exponent > 0 { "+" } else { "" }).as_bytes());
    } else if exponent < 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-exponent - 1) as usize));
        out.extend_from_slice(digits.as_bytes());
    } else {
        let whole = exponent as usize + 1;
        if digits.len() <= whole {
            out.extend_from_slice(digits.as_bytes());
            out.extend(std::iter::repeat_n(b'0', whole - digits.len()));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits.as_bytes()[..whole]);
            out.push(b'.');
            out.extend_from_slice(&digits.as_bytes()[whole..]);
        }
    }
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
    let mut text = format!(
        "\"{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    if instant.offset_s == 0 && utc == Utc::Z {
        text.push('Z');
    } else {
        let offset = instant.offset_s.unsigned_abs();
        let sign = if instant.offset_s < 0 { '-' } else { '+' };
        text.push_str(&format!("{sign}{:02}:{:02}", offset / 3600, offset / 60 % 60));
    }
    text.push('"');
    out.extend_from_slice(text.as_bytes());
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
            (1e15, "1000000000000000.0"), (1e16, "1e+16"), (1.5e16, "1.5e+16"), (0.0001, "0.0001"),
            (0.00001, "0.00001"), (1e-6, "1e-6"), (-0.0, "-0.0"), (5e-324, "5e-324"), (0.1, "0.1"),
            (100.0, "100.0"), (104.0756, "104.0756"), (123456789012345.6, "123456789012345.6"),
            (1.7976931348623157e308, "1.7976931348623157e+308"), (-2.5e-7, "-2.5e-7"),
        ];
        for (value, text) in cases {
            assert_eq!(float(value), text, "{value}");
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
