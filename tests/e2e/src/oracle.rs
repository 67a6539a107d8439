//! What the KDI output must contain for a generated tenant: the product
//! specification's mapping (§5, §6) restated independently of the plugin's code,
//! computed from the generator's data.

use chrono::{DateTime, NaiveDateTime, Utc};
use connector_simulators::defender::{Machine, Tenant};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedAsset {
    pub external_id: String,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub netbios: Option<String>,
    pub ip_address: Option<String>,
    pub mac_address: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub tags: Vec<String>,
    pub last_seen: Option<DateTime<Utc>>,
    /// By identifier.
    pub vulns: BTreeMap<String, ExpectedVuln>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedVuln {
    pub score: u64,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// `Software: vendor name version` of every row merged into this one.
    pub software: Vec<String>,
}

/// Everything expected of a run.
#[derive(Debug, Default)]
pub struct Expected {
    /// By external id.
    pub assets: BTreeMap<String, ExpectedAsset>,
    pub rows: u64,
    pub rows_without_cve: u64,
    pub rows_of_unknown_devices: u64,
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map(|n| n.and_utc()))
        .unwrap_or_else(|_| panic!("generator wrote an unreadable time {text}"))
}

fn score(severity: Option<&str>) -> u64 {
    match severity {
        Some("Critical") => 10,
        Some("High") => 8,
        Some("Medium") => 6,
        Some("Low") => 3,
        _ => 0,
    }
}

fn asset(m: &Machine) -> ExpectedAsset {
    let name = m.computer_dns_name.clone();
    let first_label = name.as_ref().map(|n| n.split('.').next().unwrap().to_owned());
    let mac = m
        .ip_addresses
        .iter()
        .find(|i| i["ipAddress"] == m.last_ip_address.as_str() && i["operationalStatus"] == "Up")
        .and_then(|i| i["macAddress"].as_str())
        .map(|raw| raw.replace(['-', ':'], "").to_uppercase())
        .filter(|hex| hex.len() == 12 && hex != "000000000000")
        .map(|hex| (0..6).map(|i| hex[i * 2..i * 2 + 2].to_owned()).collect::<Vec<_>>().join(":"));
    let build = match &m.os_build {
        serde_json::Value::Number(n) if n.as_u64() != Some(0) => Some(n.to_string()),
        _ => None,
    };
    let os_version = match (&m.version, build) {
        (Some(v), Some(b)) => Some(format!("{v} (build {b})")),
        (Some(v), None) => Some(v.clone()),
        (None, Some(b)) => Some(format!("build {b}")),
        (None, None) => None,
    };
    let mut tags: Vec<String> = m.machine_tags.iter().map(|t| t.to_string()).collect();
    if let Some(group) = m.rbac_group_name {
        tags.push(format!("rbacGroup: {group}"));
    }
    ExpectedAsset {
        external_id: m.id.clone(),
        fqdn: name.clone().filter(|n| n.contains('.')),
        hostname: first_label.clone(),
        netbios: first_label,
        ip_address: Some(m.last_ip_address.clone()),
        mac_address: mac,
        os: Some(m.os_platform.clone()),
        os_version,
        tags,
        last_seen: Some(time(&m.last_seen)),
        vulns: BTreeMap::new(),
    }
}

/// The expected output for a tenant as first generated.
pub fn expected(tenant: &Tenant) -> Expected {
    expected_from(tenant, tenant.rows())
}

/// The expected output for a tenant as it is now (after rows were removed).
pub fn expected_live(tenant: &Tenant) -> Expected {
    expected_from(tenant, tenant.live_rows())
}

fn expected_from(
    tenant: &Tenant,
    rows: impl Iterator<Item = connector_simulators::defender::VulnerabilityRow>,
) -> Expected {
    let mut out = Expected::default();
    for m in tenant.active_machines() {
        out.assets.insert(m.id.clone(), asset(m));
    }
    for row in rows {
        out.rows += 1;
        let Some(cve) = row.cve_id.as_deref().filter(|c| !c.trim().is_empty()) else {
            out.rows_without_cve += 1;
            continue;
        };
        let Some(asset) = out.assets.get_mut(&row.device_id) else {
            out.rows_of_unknown_devices += 1;
            continue;
        };
        let identifier =
            if cve.to_ascii_uppercase().starts_with("CVE-") { cve.to_ascii_uppercase() } else { cve.to_owned() };
        let found = time(&row.first_seen_timestamp);
        let seen = time(&row.last_seen_timestamp);
        let software = format!("Software: {} {} {}", row.software_vendor, row.software_name, row.software_version);
        let s = score(row.vulnerability_severity_level);
        asset
            .vulns
            .entry(identifier)
            .and_modify(|v| {
                v.score = v.score.max(s);
                v.created_at = v.created_at.min(found);
                v.last_seen_at = v.last_seen_at.max(seen);
                v.software.push(software.clone());
            })
            .or_insert(ExpectedVuln { score: s, created_at: found, last_seen_at: seen, software: vec![software] });
    }
    for v in out.assets.values_mut().flat_map(|a| a.vulns.values_mut()) {
        v.software.sort();
    }
    out
}

/// Reads a written KDI asset into the same shape, for comparison.
pub fn actual_asset(a: &serde_json::Value) -> ExpectedAsset {
    let text = |key: &str| a.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let vulns = a["vulns"]
        .as_array()
        .expect("vulns is a list")
        .iter()
        .map(|v| {
            let details = v["details"].as_str().unwrap_or("");
            let mut software: Vec<String> =
                details.lines().filter(|l| l.starts_with("Software: ")).map(str::to_owned).collect();
            software.sort();
            (
                v["scanner_identifier"].as_str().unwrap().to_owned(),
                ExpectedVuln {
                    score: v["scanner_score"].as_u64().unwrap(),
                    created_at: time(v["created_at"].as_str().unwrap()),
                    last_seen_at: time(v["last_seen_at"].as_str().unwrap()),
                    software,
                },
            )
        })
        .collect();
    ExpectedAsset {
        external_id: text("external_id").expect("external_id"),
        hostname: text("hostname"),
        fqdn: text("fqdn"),
        netbios: text("netbios"),
        ip_address: text("ip_address"),
        mac_address: text("mac_address"),
        os: text("os"),
        os_version: text("os_version"),
        tags: a["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect(),
        last_seen: text("last_seen").map(|t| time(&t)),
        vulns,
    }
}
