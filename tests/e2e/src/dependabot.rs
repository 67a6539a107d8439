//! What a Dependabot connector must write for the simulated GitHub organization,
//! whatever language it is written in: the Rust plugin's tests and the Python and
//! JavaScript examples' check their KDI against the same oracle.

use crate::kdi;
use connector_simulators::github::{cvss, ghsa, severity, GithubSim};
use std::collections::BTreeMap;
use std::path::Path;

/// Restates the mapping: the score of an advisory.
pub fn expected_score(advisory: u64) -> u64 {
    match cvss(advisory) {
        Some(score) => score.round() as u64,
        None => match severity(advisory) {
            "critical" => 10,
            "high" => 8,
            "medium" => 5,
            _ => 2,
        },
    }
}

/// Repository -> (GHSA id -> score) for every open alert of an advisory not
/// withdrawn; every repository of the organization is there, also without alerts.
pub fn oracle(sim: &GithubSim) -> BTreeMap<String, BTreeMap<String, u64>> {
    let org = sim.org();
    let mut expected: BTreeMap<String, BTreeMap<String, u64>> =
        (0..org.repositories).map(|r| (org.repository_name(r), BTreeMap::new())).collect();
    for a in org.alerts.iter().filter(|a| a.state == "open" && !a.withdrawn) {
        expected
            .entry(org.repository_name(a.repository))
            .or_default()
            .insert(ghsa(a.advisory), expected_score(a.advisory));
    }
    expected
}

/// The written KDI as the same shape as the oracle, after checking every file
/// against the schema and every asset's locators.
pub fn written(out: &Path) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut found = BTreeMap::new();
    for (name, file) in kdi::read_dir(out) {
        kdi::assert_valid(&name, &file);
        for asset in file["assets"].as_array().unwrap() {
            let repo = asset["application"].as_str().expect("application").to_owned();
            assert_eq!(asset["url"], format!("https://github.com/{repo}"));
            assert!(asset["external_id"].as_str().unwrap().starts_with("github-repository:"));
            let vulns: BTreeMap<String, u64> = asset["vulns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    assert_eq!(v["scanner_type"], "GitHub Dependabot");
                    (v["scanner_identifier"].as_str().unwrap().to_owned(), v["scanner_score"].as_u64().unwrap())
                })
                .collect();
            found.insert(repo, vulns);
        }
    }
    found
}
