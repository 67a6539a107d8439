//! The mapping, run natively through the SDK's test harness on a page shaped like
//! GitHub's documented example.

use connector_sdk::testing;
use connector_sdk::types::{Datetime, VulnerabilityStatus};
use plugin_dependabot::mapping::{SKIP_NOT_OPEN, SKIP_WITHDRAWN};
use plugin_dependabot::{DependabotConnector, ALERTS};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/org-alerts.json");

fn connector() -> DependabotConnector {
    testing::configure(&[("organization", "octo-org"), ("token", "t")]).expect("valid settings")
}

#[test]
fn repositories_become_assets_located_by_url_and_application() {
    let out = testing::map_file(&mut connector(), ALERTS, FIXTURE).unwrap();
    let keys: Vec<&str> = out.assets.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["octo-org/hello-world", "octo-org/octo-repo"]);
    let repo = &out.assets[1];
    assert_eq!(repo.locators.url.as_deref(), Some("https://github.com/octo-org/octo-repo"));
    assert_eq!(repo.locators.application.as_deref(), Some("octo-org/octo-repo"));
    assert_eq!(repo.locators.external_id.as_deref(), Some("github-repository:217723378"));
    assert_eq!(repo.tags, ["GitHub Dependabot", "github-org:octo-org", "private"]);
    assert_eq!(out.assets[0].tags[2], "public");
}

#[test]
fn open_alerts_become_vulnerabilities_and_the_rest_are_skipped_with_reasons() {
    let out = testing::map_file(&mut connector(), ALERTS, FIXTURE).unwrap();
    assert_eq!(out.counters["alerts fetched"], 6);
    assert_eq!(out.skipped.get(SKIP_NOT_OPEN), None);
    assert_eq!(out.skipped[SKIP_WITHDRAWN], 1);
    // The dismissed alert (contract 0.4): fixed, at its last update (it has no
    // `dismissed_at`), so that a run of changes closes it.
    let (open, closed): (Vec<_>, Vec<_>) =
        out.vulnerabilities.iter().partition(|v| v.status == VulnerabilityStatus::Open);
    assert_eq!(closed.len(), 1);
    let at = |seconds| VulnerabilityStatus::Fixed(Datetime { seconds, nanoseconds: 0 });
    assert_eq!(closed[0].status, at(1_661_264_987), "2022-08-23T14:29:47Z");
    let ids: Vec<(&str, &str, u8)> =
        open.iter().map(|v| (v.asset_key.as_str(), v.identifier.as_str(), v.score)).collect();
    assert_eq!(
        ids,
        [
            ("octo-org/octo-repo", "GHSA-rf4j-j272-fj86", 8),
            ("octo-org/octo-repo", "GHSA-rf4j-j272-fj86", 8),
            ("octo-org/octo-repo", "GHSA-jf85-cpcp-j695", 9),
            ("octo-org/hello-world", "GHSA-2qc6-mcvw-92cw", 5),
        ]
    );
    let first = &out.vulnerabilities[0];
    assert_eq!(first.found.as_ref().map(|d| d.seconds), Some(1_655_278_983), "2022-06-15T07:43:03Z");
    let details = first.details.as_deref().unwrap();
    assert!(
        details.contains("Package: django (pip)") && details.contains("Manifest: path/to/requirements.txt (runtime)"),
        "{details}"
    );
    assert!(
        details.contains("Vulnerable versions: >= 2.0.0, < 2.0.2") && details.contains("First patched version: 2.0.2")
    );
}

#[test]
fn advisories_become_definitions_with_their_fix() {
    let out = testing::map_file(&mut connector(), ALERTS, FIXTURE).unwrap();
    let django = out.definitions.iter().find(|d| d.identifier == "GHSA-rf4j-j272-fj86").unwrap();
    assert_eq!(django.cve_ids, ["CVE-2018-6188"]);
    assert_eq!(django.solution.as_deref(), Some("Upgrade django to 2.0.2 or later."));
    let nokogiri = out.definitions.iter().find(|d| d.identifier == "GHSA-2qc6-mcvw-92cw").unwrap();
    assert!(nokogiri.cve_ids.is_empty());
    assert!(nokogiri.solution.as_deref().unwrap().starts_with("No patched version of nokogiri"));
    assert_eq!(out.definitions.len(), 4, "one per advisory of an open or a dismissed alert");
}

#[test]
fn a_repository_is_emitted_once_per_run_across_pages() {
    let mut c = connector();
    let body = std::fs::read(FIXTURE).unwrap();
    let first = testing::map_page(&mut c, &testing::page(ALERTS, 0, body.clone())).unwrap();
    let second = testing::map_page(&mut c, &testing::page(ALERTS, 1, body)).unwrap();
    assert_eq!(first.assets.len(), 2);
    assert!(second.assets.is_empty());
    assert_eq!(second.vulnerabilities.len(), 5, "four open, one dismissed");
}
