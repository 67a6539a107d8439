//! Defender's vulnerability catalogue, `GET /api/vulnerabilities`: one record per
//! identifier the tenant's rows can use (CVE ids of the generator's ranges, the
//! lower-case ones in canonical upper case, and `TVM-2020-0002`), generated from its
//! index like the rows, with the shapes the documentation's examples show: fields
//! that are null or missing (`cvssVector`, `epss`), `CveSupportability` spelled
//! with a capital on some records.
//!
//! Paging and filters as documented: `$top` at most 8,000 (more is a 400),
//! `$skip`, and `$filter=updatedOn gt <time>`; a page past the end is empty.

use crate::rng::derive;
use serde_json::{json, Value};

/// The documented maximum of `$top`.
pub const MAX_TOP: usize = 8_000;

/// How many records the catalogue holds.
pub fn len() -> u64 {
    40_000 + 1_800 + 1
}

/// The identifier of record `index`, in the catalogue's order.
pub fn id_at(index: u64) -> String {
    match index {
        0..40_000 => format!("CVE-{}-{}", 2018 + index / 5_000, 10_000 + index % 5_000),
        40_000..41_800 => format!("CVE-{}-{}", 2019 + (index - 40_000) / 300, 20_000 + (index - 40_000) % 300),
        _ => "TVM-2020-0002".to_owned(),
    }
}

/// The index of an identifier's record, if the catalogue has one.
pub fn index_of(id: &str) -> Option<u64> {
    if id == "TVM-2020-0002" {
        return Some(41_800);
    }
    let (year, number) = id.strip_prefix("CVE-")?.split_once('-')?;
    let (year, number) = (year.parse::<u64>().ok()?, number.parse::<u64>().ok()?);
    match (year, number) {
        (2018..=2025, 10_000..15_000) => Some((year - 2018) * 5_000 + number - 10_000),
        (2019..=2024, 20_000..20_300) => Some(40_000 + (year - 2019) * 300 + number - 20_000),
        _ => None,
    }
}

/// When record `index` was last updated, before any change the test makes: seconds
/// since the epoch, within 2025 and 2026 up to November.
pub fn base_updated(seed: u64, index: u64) -> i64 {
    1_735_689_600 + (derive(seed, "catalogue-updated", index) % (690 * 86_400)) as i64
}

/// Record `index` as Defender sends it, updated at `updated` (seconds).
pub fn record(seed: u64, index: u64, updated: i64) -> Value {
    let id = id_at(index);
    let r = |stream: &str| derive(seed, stream, index);
    let time = |seconds: i64| {
        chrono::DateTime::from_timestamp(seconds, 0).expect("a time").format("%Y-%m-%dT%H:%M:%SZ").to_string()
    };
    let cvss = (r("catalogue-cvss") % 91 + 9) as f64 / 10.0;
    let severity = match cvss {
        s if s >= 9.0 => "Critical",
        s if s >= 7.0 => "High",
        s if s >= 4.0 => "Medium",
        _ => "Low",
    };
    let public = r("catalogue-public").is_multiple_of(3);
    let mut record = json!({
        "id": id,
        "name": id,
        "description": format!("{} in {} allows {} (simulated catalogue text of {id}).",
            ["A memory corruption", "An elevation of privilege", "A spoofing flaw", "A remote code execution flaw"][(r("catalogue-kind") % 4) as usize],
            ["a browser", "the kernel", "an office suite", "a runtime"][(r("catalogue-product") % 4) as usize],
            ["an attacker to run code", "a local user to gain privileges", "content to be spoofed"][(r("catalogue-effect") % 3) as usize]),
        "severity": severity,
        "cvssV3": cvss,
        "exposedMachines": r("catalogue-exposed") % 500,
        "publishedOn": time(updated - (r("catalogue-age") % (400 * 86_400)) as i64),
        "updatedOn": time(updated),
        "publicExploit": public,
        "exploitVerified": public && r("catalogue-verified").is_multiple_of(2),
        "exploitInKit": public && r("catalogue-kit").is_multiple_of(4),
        "exploitTypes": if public { json!(["RemoteCodeExecution"]) } else { json!([]) },
        "exploitUris": [],
    });
    match r("catalogue-shape") % 4 {
        // The list example's shape: a vector and the capitalised key.
        0 => {
            record["cvssVector"] = json!("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H");
            record["CveSupportability"] = json!("supported");
            record["epss"] = json!((r("catalogue-epss") % 1000) as f64 / 1000.0);
        }
        // No vector, EPSS null.
        1 => record["epss"] = Value::Null,
        _ => {
            record["cvssVector"] = json!("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H");
            record["cveSupportability"] = json!("supported");
            record["epss"] = json!((r("catalogue-epss") % 1000) as f64 / 1000.0);
        }
    }
    if id.starts_with("TVM-") {
        record["name"] = json!("Weak TLS configuration (Defender's own finding)");
        record["cvssV3"] = Value::Null;
    }
    record
}

/// The time of a `$filter=updatedOn gt <time>`, in seconds; an error names what
/// the filter may be.
pub fn updated_after(filter: &str) -> Result<i64, String> {
    let time = filter
        .trim()
        .strip_prefix("updatedOn gt ")
        .ok_or_else(|| format!("unsupported $filter `{filter}`: this simulator knows `updatedOn gt <time>`"))?;
    chrono::DateTime::parse_from_rfc3339(time.trim().trim_matches('\''))
        .map(|t| t.timestamp())
        .map_err(|e| format!("invalid time in $filter `{filter}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cover_what_rows_use() {
        assert_eq!(id_at(0), "CVE-2018-10000");
        assert_eq!(id_at(39_999), "CVE-2025-14999");
        assert_eq!(id_at(40_000), "CVE-2019-20000");
        assert_eq!(id_at(41_799), "CVE-2024-20299");
        assert_eq!(id_at(41_800), "TVM-2020-0002");
        assert_eq!(len(), 41_801);
        assert!((0..len()).all(|i| index_of(&id_at(i)) == Some(i)));
        assert_eq!(index_of("CVE-2017-10000"), None);
        assert_eq!(updated_after("updatedOn gt 2026-11-30T06:00:00Z"), Ok(1_796_018_400));
        assert!(updated_after("severity eq 'High'").is_err());
    }
}
