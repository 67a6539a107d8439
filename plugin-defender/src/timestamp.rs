//! Defender's timestamp shapes, read as UTC.
//!
//! `/api/machines` sends ISO 8601 with `Z` and 1 to 7 fraction digits; the
//! vulnerability exports send `2020-11-03 10:13:34.8476880`, with a space and no zone.
//! Zoneless values are UTC (the documented reading; see docs/defender-api.md, "Timestamps and data shapes").

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses any of Defender's timestamp shapes, or `None` if the text is not one.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(t) = fixed_layout(text) {
        return Some(t);
    }
    if let Ok(with_zone) = DateTime::parse_from_rfc3339(text) {
        return Some(with_zone.with_timezone(&Utc));
    }
    let zoneless = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')).unwrap_or(text);
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(zoneless, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

/// The shapes nearly every row has, `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z]`, read
/// without chrono's general parser (it tries formats in turn and dominated mapping
/// time); anything else falls through to it.
fn fixed_layout(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = number(20..20 + digits)? * 10u32.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    if !(rest.is_empty() || rest == b"Z" || rest == b"z") {
        return None;
    }
    chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::{fixed_layout, parse};
    use chrono::NaiveDateTime;

    fn iso(text: &str) -> String {
        parse(text).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)).unwrap_or_else(|| "none".into())
    }

    #[test]
    fn iso_8601_with_z_and_seven_fraction_digits() {
        assert_eq!(iso("2018-08-02T14:55:03.7791856Z"), "2018-08-02T14:55:03.779185600Z");
    }

    #[test]
    fn zoneless_space_separated_is_utc() {
        assert_eq!(iso("2020-12-30 14:17:26"), "2020-12-30T14:17:26Z");
        assert_eq!(iso("2020-11-03 10:13:34.8476880"), "2020-11-03T10:13:34.847688Z");
    }

    #[test]
    fn zoneless_with_t_and_trailing_z_variants() {
        assert_eq!(iso("2020-12-30T14:17:26"), "2020-12-30T14:17:26Z");
        assert_eq!(iso("2020-12-30 14:17:26Z"), "2020-12-30T14:17:26Z");
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        assert_eq!(iso("2021-01-25T09:27:36+02:00"), "2021-01-25T07:27:36Z");
    }

    #[test]
    fn the_fast_path_agrees_with_chrono() {
        for text in [
            "2020-12-30 14:17:26",
            "2020-11-03 10:13:34.8476880",
            "2020-11-03T10:13:34.1Z",
            "2018-08-02T14:55:03.7791856Z",
            "2024-02-29 23:59:59.999999999",
        ] {
            let zoneless = text.trim_end_matches('Z');
            let format = if zoneless.contains('T') { "%Y-%m-%dT%H:%M:%S%.f" } else { "%Y-%m-%d %H:%M:%S%.f" };
            let chrono = NaiveDateTime::parse_from_str(zoneless, format).unwrap().and_utc();
            assert_eq!(fixed_layout(text), Some(chrono), "{text}");
        }
        assert_eq!(fixed_layout("2023-02-29 00:00:00"), None, "not a date");
        assert_eq!(fixed_layout("2021-01-25T09:27:36+02:00"), None, "offsets go to chrono");
        assert_eq!(fixed_layout("2021-01-25T09:27:36.1234567890"), None, "over 9 digits");
    }

    #[test]
    fn junk_is_rejected() {
        assert_eq!(iso("1999-10-sdffew"), "none");
        assert_eq!(iso(""), "none");
        assert_eq!(iso("2020-13-45 99:00:00"), "none");
    }
}
