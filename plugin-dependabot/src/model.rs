//! The parts of GitHub's Dependabot alert objects the mapping reads. Everything is
//! optional: an alert missing a part is skipped with a reason, not a failed run.

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Alert {
    pub number: Option<u64>,
    pub state: Option<String>,
    pub dependency: Option<Dependency>,
    pub security_advisory: Option<Advisory>,
    pub security_vulnerability: Option<SecurityVulnerability>,
    pub html_url: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub fixed_at: Option<String>,
    pub dismissed_at: Option<String>,
    pub auto_dismissed_at: Option<String>,
    pub repository: Option<Repository>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Dependency {
    pub package: Option<Package>,
    pub manifest_path: Option<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Package {
    pub ecosystem: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Advisory {
    pub ghsa_id: Option<String>,
    pub cve_id: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub severity: Option<String>,
    pub cvss: Option<Cvss>,
    pub identifiers: Vec<Identifier>,
    pub withdrawn_at: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Cvss {
    pub score: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct SecurityVulnerability {
    pub package: Option<Package>,
    pub severity: Option<String>,
    pub vulnerable_version_range: Option<String>,
    pub first_patched_version: Option<PatchedVersion>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct PatchedVersion {
    pub identifier: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Repository {
    pub id: Option<u64>,
    pub full_name: Option<String>,
    pub html_url: Option<String>,
    pub private: Option<bool>,
}
