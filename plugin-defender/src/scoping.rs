//! Scoping a tenant: which devices a connector reports, from which severity on,
//! and which device attributes become tags.
//!
//! Device groups are named as operators know them (Defender's Settings > Device
//! groups), and decided by the machine listing alone: a device outside the scope is
//! not reported, and the host drops its rows (counted as vulnerabilities of an asset
//! not in the run). Deciding it again from each row's `rbacGroupName` could disagree
//! with the listing (a device moved between the two calls) and would then send an
//! asset without some of its vulnerabilities, which CVM closes. Defender's OData
//! filters cannot apply the groups at the source: `/api/machines` filters on
//! `rbacGroupId`, a number no operator knows, and the vulnerability endpoints take no
//! `$filter` at all (docs/defender-api.md).
//!
//! The minimum severity applies to rows (by the row's device group for a per-group
//! minimum): a row below it is skipped and counted, and CVM closes what an earlier,
//! wider run sent, as for any vulnerability a device no longer reports.

use std::collections::BTreeMap;

/// Skip reason: a device outside the connector's device groups.
pub const OUTSIDE_GROUPS: &str = "device outside the connector's device groups";
/// Skip reason: a row below the minimum severity.
pub const BELOW_SEVERITY: &str = "vulnerability below the connector's minimum severity";

/// The severities a minimum can name, lowest first, with the score each maps to.
pub const SEVERITIES: [(&str, u8); 4] = [("low", 3), ("medium", 6), ("high", 8), ("critical", 10)];

/// What a connector reports of its tenant. The default reports everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scoping {
    /// Only these groups (canonical names); empty: every group.
    pub groups: Vec<String>,
    /// Never these groups (canonical names).
    pub excluded_groups: Vec<String>,
    /// The lowest score reported (0: every row, also those without a severity).
    pub min_score: u8,
    /// A minimum per group (canonical name), replacing `min_score` there.
    pub min_score_by_group: BTreeMap<String, u8>,
    /// Device attributes added as tags.
    pub attribute_tags: AttributeTags,
}

/// Device attributes that can become tags, each on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttributeTags {
    pub exposure_level: bool,
    pub risk_score: bool,
    pub health_status: bool,
    pub onboarding_status: bool,
    pub agent_version: bool,
}

/// A group name as compared: trimmed, case-insensitive, and every spelling of "no
/// group" (none, `Unassigned`, `UnassignedGroup`) as one.
pub fn canonical_group(name: Option<&str>) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => "unassigned".into(),
        Some(n) if n.eq_ignore_ascii_case("unassigned") || n.eq_ignore_ascii_case("unassignedgroup") => {
            "unassigned".into()
        }
        Some(n) => n.to_lowercase(),
    }
}

impl Scoping {
    /// Whether a device of this group is reported.
    pub fn includes_group(&self, group: Option<&str>) -> bool {
        let group = canonical_group(group);
        (self.groups.is_empty() || self.groups.contains(&group)) && !self.excluded_groups.contains(&group)
    }

    /// Whether a row of this score, on a device of this group, is reported.
    pub fn reports_score(&self, group: Option<&str>, score: u8) -> bool {
        let minimum = match self.min_score_by_group.is_empty() {
            true => self.min_score,
            false => self.min_score_by_group.get(&canonical_group(group)).copied().unwrap_or(self.min_score),
        };
        score >= minimum
    }
}

/// A list of group names separated by commas (or new lines).
pub fn parse_groups(text: &str) -> Vec<String> {
    text.split([',', '\n']).map(str::trim).filter(|g| !g.is_empty()).map(|g| canonical_group(Some(g))).collect()
}

/// The score a minimum severity names (`all` or empty: 0).
pub fn parse_severity(text: &str) -> Result<u8, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("all") {
        return Ok(0);
    }
    SEVERITIES
        .iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|(_, score)| *score)
        .ok_or_else(|| format!("`{text}` is not a severity: all, low, medium, high or critical"))
}

/// `Group=severity` pairs separated by `;` or new lines, e.g.
/// `Servers EU=high; Kiosks=critical`.
pub fn parse_min_by_group(text: &str) -> Result<BTreeMap<String, u8>, String> {
    let mut by_group = BTreeMap::new();
    for pair in text.split([';', '\n']).map(str::trim).filter(|p| !p.is_empty()) {
        let (group, severity) =
            pair.rsplit_once('=').ok_or_else(|| format!("`{pair}` is not `group=severity`, e.g. `Servers=high`"))?;
        if group.trim().is_empty() {
            return Err(format!("`{pair}` names no group"));
        }
        by_group.insert(canonical_group(Some(group)), parse_severity(severity)?);
    }
    Ok(by_group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_match_by_name_whatever_the_case_and_no_group_is_one_group() {
        let scope = Scoping { groups: parse_groups("Servers EU, workstations\n, ,"), ..Scoping::default() };
        assert_eq!(scope.groups, ["servers eu", "workstations"]);
        assert!(scope.includes_group(Some("Servers EU")) && scope.includes_group(Some(" WORKSTATIONS ")));
        assert!(!scope.includes_group(Some("Kiosks")) && !scope.includes_group(None));
        let except = Scoping { excluded_groups: parse_groups("UnassignedGroup"), ..Scoping::default() };
        assert!(!except.includes_group(None) && !except.includes_group(Some("Unassigned")));
        assert!(except.includes_group(Some("Kiosks")));
        assert!(Scoping::default().includes_group(None));
    }

    #[test]
    fn a_minimum_severity_per_group_replaces_the_global_one() {
        let scope = Scoping {
            min_score: parse_severity("Medium").unwrap(),
            min_score_by_group: parse_min_by_group("Servers EU=critical; kiosks = all").unwrap(),
            ..Scoping::default()
        };
        assert!(scope.reports_score(Some("Workstations"), 6) && !scope.reports_score(Some("Workstations"), 3));
        assert!(!scope.reports_score(Some("servers eu"), 8) && scope.reports_score(Some("Servers EU"), 10));
        assert!(scope.reports_score(Some("Kiosks"), 0), "`all` reports rows without a severity");
        assert!(Scoping::default().reports_score(None, 0));
        assert_eq!(
            parse_severity("severe"),
            Err("`severe` is not a severity: all, low, medium, high or critical".into())
        );
        assert!(parse_min_by_group("Servers").unwrap_err().contains("is not `group=severity`"));
        assert!(parse_min_by_group("=high").unwrap_err().contains("names no group"));
    }
}
