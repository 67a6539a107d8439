//! The Defender-to-platform mapping of the product specification, §5 and §6.
//!
//! Pure functions from page bodies to records, so every rule is unit-tested natively.
//! Joining vulnerabilities to assets, and merging several rows of one CVE on one
//! device, is the host's job (it is the same for every connector); this module maps
//! each row on its own.

use crate::lenient::strip_bom;
use crate::model::{IpAddressEntry, Machine, Page, VulnerabilityRow};
use crate::timestamp;
use crate::vulnbridge::connector::types::{
    Asset, Datetime, Locators, Vulnerability, VulnerabilityDefinition,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

/// Counter names shown in the run summary.
pub const DEVICES_FETCHED: &str = "devices fetched";
pub const ROWS_FETCHED: &str = "vulnerability rows fetched";

/// Records mapped from one page, with what was skipped and why.
#[derive(Default, Debug)]
pub struct Mapped {
    pub assets: Vec<Asset>,
    pub vulnerabilities: Vec<Vulnerability>,
    pub definitions: Vec<VulnerabilityDefinition>,
    /// Rows read from the page (skipped ones included).
    pub rows: u64,
    /// Skipped rows by reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

impl Mapped {
    fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }
}

/// Why a page as a whole could not be read.
#[derive(Debug, PartialEq)]
pub struct PageError(pub String);

fn parse_page(body: &[u8]) -> Result<Page<'_>, PageError> {
    serde_json::from_slice(strip_bom(body))
        .map_err(|e| PageError(format!("not an OData page with a `value` list: {e}")))
}

/// Maps a page of `GET /api/machines` to assets (spec §6).
pub fn map_machines_page(body: &[u8]) -> Result<Mapped, PageError> {
    let page = parse_page(body)?;
    let mut out = Mapped::default();
    for raw in page.value {
        out.rows += 1;
        let machine: Machine = match serde_json::from_str(raw.get()) {
            Ok(m) => m,
            Err(_) => {
                out.skip("machine is not a JSON object");
                continue;
            }
        };
        match map_machine(&machine) {
            Ok(asset) => out.assets.push(asset),
            Err(reason) => out.skip(reason),
        }
    }
    Ok(out)
}

/// Maps one machine to an asset, or says why it is skipped.
pub fn map_machine(m: &Machine) -> Result<Asset, &'static str> {
    let id = m.id.as_deref().map(str::trim).ok_or("machine without id")?;
    // The request filters on `healthStatus eq 'Active'`; a machine that still comes
    // back otherwise must not be reported as active.
    if let Some(status) = m.health_status.as_deref() {
        if !status.eq_ignore_ascii_case("Active") {
            return Err("machine not Active");
        }
    }
    let dns_name = m
        .computer_dns_name
        .as_deref()
        .map(|n| n.trim().trim_end_matches('.'))
        .filter(|n| !n.is_empty());
    let short_name = dns_name.map(|n| n.split('.').next().unwrap_or(n).to_owned());
    let ip = m.last_ip_address.as_deref().map(|ip| ip.trim().to_owned());
    Ok(Asset {
        key: id.to_owned(),
        locators: Locators {
            external_id: Some(id.to_owned()),
            hostname: short_name.clone(),
            fqdn: dns_name
                .filter(|n| n.split('.').filter(|p| !p.is_empty()).count() > 1)
                .map(str::to_owned),
            netbios: short_name,
            mac_address: ip.as_deref().and_then(|ip| mac_for(ip, &m.ip_addresses)),
            ip_address: ip,
        },
        os: m.os_platform.as_deref().map(|s| s.trim().to_owned()),
        os_version: os_version(m.version.as_deref(), m.os_build.as_deref()),
        tags: tags(&m.machine_tags, m.rbac_group_name.as_deref()),
        last_seen: m.last_seen.as_deref().and_then(datetime),
    })
}

/// OS version: `version` alone when `osBuild` is empty (null, missing, 0 or blank),
/// else `<version> (build <osBuild>)`; `build <osBuild>` when only the build is known.
pub fn os_version(version: Option<&str>, build: Option<&str>) -> Option<String> {
    let version = version.map(str::trim).filter(|v| !v.is_empty());
    let build = build.map(str::trim).filter(|b| !b.is_empty() && *b != "0");
    match (version, build) {
        (v, None) => v.map(str::to_owned),
        (Some(v), Some(b)) => Some(format!("{v} (build {b})")),
        (None, Some(b)) => Some(format!("build {b}")),
    }
}

/// The MAC of the interface whose address is the machine's last IP and which is up:
/// six upper-case hex pairs joined by `:`. None when there is no such interface, or
/// its MAC is not 12 hex digits, or is all zeros.
pub fn mac_for(last_ip: &str, interfaces: &[IpAddressEntry]) -> Option<String> {
    let entry = interfaces.iter().find(|e| {
        e.ip_address.as_deref().map(str::trim) == Some(last_ip)
            && e.operational_status.as_deref().map(str::trim) == Some("Up")
    })?;
    normalize_mac(entry.mac_address.as_deref()?)
}

/// Normalizes `000C2992A643`, `00-0C-29-92-A6-43`, `00:0c:29:92:a6:43` or
/// `000c.2992.a643` to `00:0C:29:92:A6:43`.
pub fn normalize_mac(raw: &str) -> Option<String> {
    let hex: String = raw
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.' | ' '))
        .collect();
    if hex.len() != 12
        || !hex.chars().all(|c| c.is_ascii_hexdigit())
        || hex.chars().all(|c| c == '0')
    {
        return None;
    }
    let upper = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..6).map(|i| &upper[i * 2..i * 2 + 2]).collect();
    Some(pairs.join(":"))
}

/// Every machine tag, then `rbacGroup: <name>` when the machine has a group name.
pub fn tags(machine_tags: &[Cow<str>], rbac_group_name: Option<&str>) -> Vec<String> {
    let mut tags: Vec<String> = machine_tags
        .iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if let Some(group) = rbac_group_name.map(str::trim).filter(|g| !g.is_empty()) {
        tags.push(format!("rbacGroup: {group}"));
    }
    tags
}

/// Maps a page of `SoftwareVulnerabilitiesByMachine` to vulnerabilities and the
/// definitions of their identifiers (spec §5).
pub fn map_vulnerabilities_page(body: &[u8]) -> Result<Mapped, PageError> {
    let page = parse_page(body)?;
    let mut out = Mapped::default();
    let mut defined: HashSet<String> = HashSet::new();
    for raw in page.value {
        out.rows += 1;
        let row: VulnerabilityRow = match serde_json::from_str(raw.get()) {
            Ok(r) => r,
            Err(_) => {
                out.skip("vulnerability row is not a JSON object");
                continue;
            }
        };
        match map_row(&row) {
            Ok(vulnerability) => {
                if !defined.contains(&vulnerability.identifier) {
                    defined.insert(vulnerability.identifier.clone());
                    out.definitions.push(definition(&vulnerability.identifier));
                }
                out.vulnerabilities.push(vulnerability);
            }
            Err(reason) => out.skip(reason),
        }
    }
    Ok(out)
}

/// Maps one vulnerability row, or says why it is skipped.
pub fn map_row(row: &VulnerabilityRow) -> Result<Vulnerability, &'static str> {
    let device = row
        .device_id
        .as_deref()
        .map(str::trim)
        .ok_or("vulnerability row without deviceId")?;
    let identifier = row
        .cve_id
        .as_deref()
        .map(identifier)
        .ok_or("vulnerability row without cveId")?;
    let found = match row.first_seen_timestamp.as_deref() {
        Some(text) => {
            Some(datetime(text).ok_or("vulnerability row with unreadable firstSeenTimestamp")?)
        }
        None => None,
    };
    let last_seen = match row.last_seen_timestamp.as_deref() {
        Some(text) => {
            Some(datetime(text).ok_or("vulnerability row with unreadable lastSeenTimestamp")?)
        }
        None => None,
    };
    Ok(Vulnerability {
        asset_key: device.to_owned(),
        identifier,
        score: score(row.vulnerability_severity_level.as_deref()),
        found,
        last_seen,
        details: Some(details(row)),
    })
}

/// Scanner score: Critical 10, High 8, Medium 6, Low 3, anything else 0.
pub fn score(severity: Option<&str>) -> u8 {
    match severity.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("critical") => 10,
        Some("high") => 8,
        Some("medium") => 6,
        Some("low") => 3,
        _ => 0,
    }
}

/// The identifier as sent, with CVE ids in their canonical upper case.
pub fn identifier(cve_id: &str) -> String {
    let id = cve_id.trim();
    if is_cve(id) {
        id.to_ascii_uppercase()
    } else {
        id.to_owned()
    }
}

/// `CVE-YYYY-NNNN…` (four or more digits), in any case.
pub fn is_cve(id: &str) -> bool {
    let upper = id.to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix("CVE-") else {
        return false;
    };
    let Some((year, number)) = rest.split_once('-') else {
        return false;
    };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && number.len() >= 4
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// The definition of an identifier: CVE ids carry their CVE reference; others
/// (such as `TVM-2020-0002`) are kept as identifiers without one.
pub fn definition(identifier: &str) -> VulnerabilityDefinition {
    VulnerabilityDefinition {
        identifier: identifier.to_owned(),
        name: identifier.to_owned(),
        cve_ids: if is_cve(identifier) {
            vec![identifier.to_owned()]
        } else {
            Vec::new()
        },
        description: None,
        solution: None,
    }
}

/// Readable details of one row: the affected software and what Defender says about
/// the fix and exploitability.
pub fn details(row: &VulnerabilityRow) -> String {
    let mut lines = Vec::new();
    let software: Vec<&str> = [
        &row.software_vendor,
        &row.software_name,
        &row.software_version,
    ]
    .into_iter()
    .filter_map(|p| p.as_deref().map(str::trim))
    .collect();
    if !software.is_empty() {
        lines.push(format!("Software: {}", software.join(" ")));
    }
    match (
        row.vulnerability_severity_level.as_deref(),
        row.cvss_score.as_deref(),
    ) {
        (Some(sev), Some(cvss)) => lines.push(format!("Severity: {sev} (CVSS {cvss})")),
        (Some(sev), None) => lines.push(format!("Severity: {sev}")),
        (None, Some(cvss)) => lines.push(format!("CVSS: {cvss}")),
        (None, None) => {}
    }
    if let Some(level) = row.exploitability_level.as_deref() {
        lines.push(format!("Exploitability: {level}"));
    }
    let update: Vec<String> = [
        row.recommended_security_update
            .as_deref()
            .map(str::to_owned),
        row.recommended_security_update_id
            .as_deref()
            .map(|id| format!("({id})")),
        row.recommended_security_update_url
            .as_deref()
            .map(str::to_owned),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !update.is_empty() {
        lines.push(format!("Recommended update: {}", update.join(" ")));
    }
    if !row.disk_paths.is_empty() {
        lines.push(format!("Disk paths: {}", row.disk_paths.join("; ")));
    }
    if !row.registry_paths.is_empty() {
        lines.push(format!("Registry paths: {}", row.registry_paths.join("; ")));
    }
    lines.join("\n")
}

fn datetime(text: &str) -> Option<Datetime> {
    let t = timestamp::parse(text)?;
    Some(Datetime {
        seconds: t.timestamp(),
        nanoseconds: t.timestamp_subsec_nanos(),
    })
}
