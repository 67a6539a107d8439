//! Dependabot alerts into platform records.
//!
//! - Asset: one per repository. `key` and `application` are `owner/name`, `url` is
//!   the repository's page, `external_id` is `github-repository:<id>` (stable across
//!   renames). Tags: `GitHub Dependabot`, `github-org:<owner>`, and `private` or
//!   `public`.
//! - Vulnerability: one per alert, identified by the advisory's GHSA id (present on
//!   every advisory, unlike a CVE id), scored by its CVSS base score or else its
//!   severity, found at the alert's `created_at`. Details name the package,
//!   manifest, vulnerable range, fixed version and the alert's page.
//! - Definition: per advisory: its summary, CVE ids, description, and the upgrade
//!   that fixes it.
//!
//! An alert that is fixed, dismissed or auto-dismissed (incremental runs ask for
//! them) is a vulnerability fixed at that time. Alerts in another state, of
//! withdrawn advisories, or missing their repository or advisory id are skipped
//! with a reason.
//!
//! Every repository of the organization is an asset, also one without open alerts:
//! sent with an empty list, it lets CVM close the alerts that were fixed there.

use crate::model::{Alert, Package, Repository};
use connector_sdk::types::{Asset, Datetime, Locators, Vulnerability, VulnerabilityDefinition, VulnerabilityStatus};
use std::collections::BTreeMap;

pub const SCANNER_TYPE: &str = "GitHub Dependabot";
pub const ALERTS_FETCHED: &str = "alerts fetched";
pub const REPOSITORIES_FETCHED: &str = "repositories fetched";
pub const SKIP_UNNAMED_REPOSITORY: &str = "repository without a full name";
pub const SKIP_NOT_OPEN: &str = "alert neither open nor fixed or dismissed at a readable time";
pub const SKIP_WITHDRAWN: &str = "advisory withdrawn by GitHub";
pub const SKIP_NO_REPOSITORY: &str = "alert without a repository";
pub const SKIP_NO_ADVISORY: &str = "alert without an advisory id";
pub const SKIP_NOT_AN_ALERT: &str = "page entry that is not an alert object";

/// What one page became.
#[derive(Debug, Default)]
pub struct Mapped {
    pub alerts: u64,
    pub assets: Vec<Asset>,
    pub vulnerabilities: Vec<Vulnerability>,
    pub definitions: Vec<VulnerabilityDefinition>,
    pub skipped: BTreeMap<&'static str, u64>,
}

/// Maps a page: a JSON array of alerts. Anything else is an error naming what came.
pub fn map_alerts_page(body: &[u8]) -> Result<Mapped, String> {
    let entries: Vec<serde_json::Value> = match serde_json::from_slice(body) {
        Ok(serde_json::Value::Array(entries)) => entries,
        Ok(other) => return Err(format!("expected a JSON array of alerts, got {}", kind_of(&other))),
        Err(e) => return Err(format!("unreadable JSON: {e}")),
    };
    let mut mapped = Mapped { alerts: entries.len() as u64, ..Mapped::default() };
    let mut repositories = BTreeMap::new();
    let mut definitions = BTreeMap::new();
    for entry in entries {
        let alert: Alert = match serde_json::from_value(entry) {
            Ok(alert) => alert,
            Err(_) => {
                *mapped.skipped.entry(SKIP_NOT_AN_ALERT).or_default() += 1;
                continue;
            }
        };
        match map_alert(&alert) {
            Ok((asset, vulnerability, definition)) => {
                repositories.entry(asset.key.clone()).or_insert(asset);
                definitions.entry(definition.identifier.clone()).or_insert(definition);
                mapped.vulnerabilities.push(vulnerability);
            }
            Err(reason) => *mapped.skipped.entry(reason).or_default() += 1,
        }
    }
    mapped.assets = repositories.into_values().collect();
    mapped.definitions = definitions.into_values().collect();
    Ok(mapped)
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Object(o) if o.contains_key("message") => "an error object (GitHub's `message`)",
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Null => "null",
        _ => "a scalar",
    }
}

/// Maps a page of the organization's repositories (a JSON array, as
/// `GET /orgs/{org}/repos` sends it) into assets: one per repository.
pub fn map_repositories_page(body: &[u8]) -> Result<Mapped, String> {
    let entries: Vec<serde_json::Value> = match serde_json::from_slice(body) {
        Ok(serde_json::Value::Array(entries)) => entries,
        Ok(other) => return Err(format!("expected a JSON array of repositories, got {}", kind_of(&other))),
        Err(e) => return Err(format!("unreadable JSON: {e}")),
    };
    let mut mapped = Mapped::default();
    for entry in entries {
        let asset = serde_json::from_value::<Repository>(entry).ok().as_ref().and_then(repository_asset);
        match asset {
            Some(asset) => mapped.assets.push(asset),
            None => *mapped.skipped.entry(SKIP_UNNAMED_REPOSITORY).or_default() += 1,
        }
    }
    Ok(mapped)
}

/// A repository as an asset; the same whether it came with an alert or from the
/// list of repositories, so the host's join sees one asset.
fn repository_asset(repository: &Repository) -> Option<Asset> {
    let full_name = nonblank(repository.full_name.as_deref())?;
    let owner = full_name.split('/').next().unwrap_or(full_name);
    let visibility = if repository.private.unwrap_or(true) { "private" } else { "public" };
    Some(Asset {
        key: full_name.to_owned(),
        locators: Locators {
            external_id: repository.id.map(|id| format!("github-repository:{id}")),
            url: repository.html_url.clone(),
            application: Some(full_name.to_owned()),
            ..Default::default()
        },
        tags: vec![SCANNER_TYPE.to_owned(), format!("github-org:{owner}"), visibility.to_owned()],
        ..Default::default()
    })
}

/// Open, or fixed when the alert was fixed, dismissed or auto-dismissed (at that
/// time, else when it was last updated).
fn status(alert: &Alert) -> Result<VulnerabilityStatus, &'static str> {
    let state = alert.state.as_deref().unwrap_or("open").trim().to_ascii_lowercase();
    let closed_at = match state.as_str() {
        "open" => return Ok(VulnerabilityStatus::Open),
        "fixed" => &alert.fixed_at,
        "dismissed" => &alert.dismissed_at,
        "auto_dismissed" => &alert.auto_dismissed_at,
        _ => return Err(SKIP_NOT_OPEN),
    };
    closed_at
        .as_deref()
        .or(alert.updated_at.as_deref())
        .and_then(datetime)
        .map(VulnerabilityStatus::Fixed)
        .ok_or(SKIP_NOT_OPEN)
}

fn map_alert(alert: &Alert) -> Result<(Asset, Vulnerability, VulnerabilityDefinition), &'static str> {
    let status = status(alert)?;
    let advisory = alert.security_advisory.as_ref().ok_or(SKIP_NO_ADVISORY)?;
    if advisory.withdrawn_at.is_some() {
        return Err(SKIP_WITHDRAWN);
    }
    let ghsa = nonblank(advisory.ghsa_id.as_deref()).ok_or(SKIP_NO_ADVISORY)?;
    let repository = alert.repository.as_ref().ok_or(SKIP_NO_REPOSITORY)?;
    let full_name = nonblank(repository.full_name.as_deref()).ok_or(SKIP_NO_REPOSITORY)?;

    let asset = repository_asset(repository).ok_or(SKIP_NO_REPOSITORY)?;

    let vulnerable = alert.security_vulnerability.as_ref();
    let package = vulnerable
        .and_then(|v| v.package.as_ref())
        .or_else(|| alert.dependency.as_ref().and_then(|d| d.package.as_ref()));
    let severity = vulnerable.and_then(|v| v.severity.as_deref()).or(advisory.severity.as_deref());
    let patched =
        vulnerable.and_then(|v| v.first_patched_version.as_ref()).and_then(|p| nonblank(p.identifier.as_deref()));
    let vulnerability = Vulnerability {
        asset_key: full_name.to_owned(),
        identifier: ghsa.to_owned(),
        score: score(advisory.cvss.as_ref().and_then(|c| c.score), severity),
        found: alert.created_at.as_deref().and_then(datetime),
        last_seen: None,
        details: Some(details(alert, package, patched)),
        status,
    };

    let mut cve_ids: Vec<String> = advisory
        .identifiers
        .iter()
        .filter(|i| i.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("CVE")))
        .filter_map(|i| nonblank(i.value.as_deref()).map(str::to_owned))
        .collect();
    if let Some(cve) = nonblank(advisory.cve_id.as_deref()) {
        cve_ids.push(cve.to_owned());
    }
    cve_ids.sort();
    cve_ids.dedup();
    let definition = VulnerabilityDefinition {
        identifier: ghsa.to_owned(),
        name: nonblank(advisory.summary.as_deref()).unwrap_or(ghsa).to_owned(),
        cve_ids,
        description: nonblank(advisory.description.as_deref()).map(str::to_owned),
        solution: match (package.and_then(|p| nonblank(p.name.as_deref())), patched) {
            (Some(name), Some(version)) => Some(format!("Upgrade {name} to {version} or later.")),
            (Some(name), None) => Some(format!("No patched version of {name} is known; remove or replace it.")),
            _ => None,
        },
    };
    Ok((asset, vulnerability, definition))
}

/// The CVSS base score rounded to a whole number, or else the severity: critical
/// 10, high 8, medium 5, low 2; 0 when neither is known.
pub fn score(cvss: Option<f64>, severity: Option<&str>) -> u8 {
    if let Some(score) = cvss.filter(|s| s.is_finite() && *s > 0.0) {
        return score.round().clamp(0.0, 10.0) as u8;
    }
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("critical") => 10,
        Some("high") => 8,
        Some("medium" | "moderate") => 5,
        Some("low") => 2,
        _ => 0,
    }
}

fn details(alert: &Alert, package: Option<&Package>, patched: Option<&str>) -> String {
    let mut lines = Vec::new();
    if let Some(p) = package {
        let ecosystem = p.ecosystem.as_deref().unwrap_or("?");
        lines.push(format!("Package: {} ({ecosystem})", p.name.as_deref().unwrap_or("?")));
    }
    if let Some(d) = &alert.dependency {
        if let Some(manifest) = nonblank(d.manifest_path.as_deref()) {
            let scope = d.scope.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
            lines.push(format!("Manifest: {manifest}{scope}"));
        }
    }
    if let Some(range) =
        alert.security_vulnerability.as_ref().and_then(|v| nonblank(v.vulnerable_version_range.as_deref()))
    {
        lines.push(format!("Vulnerable versions: {range}"));
    }
    lines.push(format!("First patched version: {}", patched.unwrap_or("none")));
    if let Some(url) = nonblank(alert.html_url.as_deref()) {
        lines.push(format!("Alert: {url}"));
    }
    lines.join("\n")
}

fn nonblank(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// GitHub's ISO 8601 timestamps (`2022-06-15T07:43:03Z`).
pub fn datetime(text: &str) -> Option<Datetime> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
    Some(Datetime { seconds: parsed.timestamp(), nanoseconds: parsed.timestamp_subsec_nanos() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_prefer_cvss_then_severity() {
        assert_eq!(score(Some(9.8), Some("low")), 10);
        assert_eq!(score(Some(7.4), None), 7);
        assert_eq!(score(Some(0.0), Some("HIGH")), 8);
        assert_eq!(score(None, Some("moderate")), 5);
        assert_eq!(score(None, Some("whatever")), 0);
    }

    #[test]
    fn pages_that_are_not_arrays_are_errors_naming_what_came() {
        let e = map_alerts_page(br#"{"message": "Bad credentials"}"#).unwrap_err();
        assert!(e.contains("error object"), "{e}");
        assert!(map_alerts_page(b"<html>").unwrap_err().contains("unreadable JSON"));
        assert_eq!(map_alerts_page(b"[]").unwrap().alerts, 0);
        assert!(map_repositories_page(br#"{"message": "Not Found"}"#).unwrap_err().contains("error object"));
    }

    #[test]
    fn a_repository_is_the_same_asset_from_the_list_and_from_an_alert() {
        let repository = r#"{"id": 7, "full_name": "octo-org/web", "html_url": "https://github.com/octo-org/web", "private": false}"#;
        let listed = map_repositories_page(format!("[{repository}, {{\"id\": 8}}]").as_bytes()).unwrap();
        assert_eq!(listed.skipped.get(SKIP_UNNAMED_REPOSITORY), Some(&1));
        let alert = format!(
            r#"[{{"state": "open", "security_advisory": {{"ghsa_id": "GHSA-aaaa-bbbb-cccc"}}, "repository": {repository}}}]"#
        );
        let from_alert = map_alerts_page(alert.as_bytes()).unwrap();
        assert_eq!(listed.assets, from_alert.assets);
        assert_eq!(listed.assets[0].locators.external_id.as_deref(), Some("github-repository:7"));
        assert_eq!(listed.assets[0].tags, ["GitHub Dependabot", "github-org:octo-org", "public"]);
    }
}
