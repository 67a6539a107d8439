//! Defender's timestamp shapes, read as UTC.
//!
//! `/api/machines` sends ISO 8601 with `Z` and 1 to 7 fraction digits; the
//! vulnerability exports send `2020-11-03 10:13:34.8476880`, with a space and no zone.
//! Zoneless values are UTC (the documented reading; see docs/defender-api.md §9).

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses any of Defender's timestamp shapes, or `None` if the text is not one.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
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

#[cfg(test)]
mod tests {
    use super::parse;

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
    fn junk_is_rejected() {
        assert_eq!(iso("1999-10-sdffew"), "none");
        assert_eq!(iso(""), "none");
        assert_eq!(iso("2020-13-45 99:00:00"), "none");
    }
}
