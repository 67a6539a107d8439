//! The Defender-to-platform mapping of the product specification, §5 and §6.
//!
//! Pure functions from page bodies to records, so every rule is unit-tested natively.
//! Joining vulnerabilities to assets, and merging several rows of one CVE on one
//! device, is the host's job (it is the same for every connector); this module maps
//! each row on its own.

use crate::lenient::strip_bom;
use crate::model::{for_each_row, IpAddressEntry, Machine, Page, VulnerabilityRow};
use crate::scoping::Scoping;
use crate::timestamp;
use connector_sdk::types::{Asset, Datetime, Locators, Vulnerability, VulnerabilityDefinition, VulnerabilityStatus};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

/// The identifiers whose definitions a run has sent, looked up once a row. Hashed
/// with foldhash rather than SipHash (about 7% of the mapping): the identifiers
/// come from the source, and a source that crafted colliding ones would only slow
/// its own run, which the sandbox's CPU limit bounds.
pub type Defined = HashSet<String, foldhash::fast::RandomState>;

/// Counter names shown in the run summary.
pub const DEVICES_FETCHED: &str = "devices fetched";
pub const ROWS_FETCHED: &str = "vulnerability rows fetched";
/// Kept, because dropping a device would close all of its vulnerabilities.
pub const UNREADABLE_LAST_SEEN: &str = "devices kept without their unreadable lastSeen";

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
    /// Rows kept with a value dropped, by what was dropped.
    pub notes: BTreeMap<&'static str, u64>,
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

/// Maps a page of `GET /api/machines` to assets (the README's "Mapping" table).
pub fn map_machines_page(body: &[u8]) -> Result<Mapped, PageError> {
    map_machines_page_scoped(body, &Scoping::default())
}

/// [`map_machines_page`] within a connector's scoping: devices outside its groups
/// skipped and counted, the attributes it asks for as tags.
pub fn map_machines_page_scoped(body: &[u8], scoping: &Scoping) -> Result<Mapped, PageError> {
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
        match map_machine(&machine).and_then(|asset| scoped(asset, &machine, scoping)) {
            Ok(asset) => {
                if asset.last_seen.is_none() && machine.last_seen.is_some() {
                    *out.notes.entry(UNREADABLE_LAST_SEEN).or_default() += 1;
                }
                out.assets.push(asset)
            }
            Err(reason) => out.skip(reason),
        }
    }
    Ok(out)
}

/// Maps one machine to an asset, or says why it is skipped.
pub fn map_machine(m: &Machine) -> Result<Asset, &'static str> {
    let id = m.id.as_deref().map(str::trim).ok_or("machine without id")?;
    // A machine merged into another is reported under the other's id.
    if m.merged_into_machine_id.is_some() {
        return Err("machine merged into another (mergedIntoMachineId)");
    }
    // The request filters on `healthStatus eq 'Active'`; a machine that still comes
    // back otherwise must not be reported as active.
    if let Some(status) = m.health_status.as_deref() {
        if !status.eq_ignore_ascii_case("Active") {
            return Err("machine not Active");
        }
    }
    let dns_name = m.computer_dns_name.as_deref().map(|n| n.trim().trim_end_matches('.')).filter(|n| !n.is_empty());
    let short_name = dns_name.map(|n| n.split('.').next().unwrap_or(n).to_owned());
    let ip = m.last_ip_address.as_deref().map(|ip| ip.trim().to_owned());
    Ok(Asset {
        key: id.to_owned(),
        locators: Locators {
            external_id: Some(id.to_owned()),
            hostname: short_name.clone(),
            fqdn: dns_name.filter(|n| n.split('.').filter(|p| !p.is_empty()).count() > 1).map(str::to_owned),
            netbios: short_name,
            mac_address: ip.as_deref().and_then(|ip| mac_for(ip, &m.ip_addresses)),
            ip_address: ip,
            ..Default::default()
        },
        os: m.os_platform.as_deref().map(|s| s.trim().to_owned()),
        os_version: os_version(m.version.as_deref(), m.os_build.as_deref()),
        tags: tags(&m.machine_tags, m.rbac_group_name.as_deref()),
        last_seen: m.last_seen.as_deref().and_then(datetime),
    })
}

/// The asset of a device within the scoping: `None` outside its groups; its
/// attributes as tags when asked.
fn scoped(mut asset: Asset, m: &Machine, scoping: &Scoping) -> Result<Asset, &'static str> {
    if !scoping.includes_group(m.rbac_group_name.as_deref()) {
        return Err(crate::scoping::OUTSIDE_GROUPS);
    }
    let wanted = scoping.attribute_tags;
    let attributes = [
        (wanted.exposure_level, "exposureLevel", &m.exposure_level),
        (wanted.risk_score, "riskScore", &m.risk_score),
        (wanted.health_status, "healthStatus", &m.health_status),
        (wanted.onboarding_status, "onboardingStatus", &m.onboarding_status),
        (wanted.agent_version, "agentVersion", &m.agent_version),
    ];
    for (name, value) in
        attributes.iter().filter(|(on, _, _)| *on).filter_map(|(_, name, v)| Some((name, v.as_deref()?.trim())))
    {
        if !value.is_empty() {
            asset.tags.push(format!("{name}: {value}"));
        }
    }
    Ok(asset)
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
    let hex: String = raw.chars().filter(|c| !matches!(c, ':' | '-' | '.' | ' ')).collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || hex.chars().all(|c| c == '0') {
        return None;
    }
    let upper = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..6).map(|i| &upper[i * 2..i * 2 + 2]).collect();
    Some(pairs.join(":"))
}

/// Every machine tag, then `rbacGroup: <name>` when the machine has a group name.
pub fn tags(machine_tags: &[Cow<str>], rbac_group_name: Option<&str>) -> Vec<String> {
    let mut tags: Vec<String> = machine_tags.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
    if let Some(group) = rbac_group_name.map(str::trim).filter(|g| !g.is_empty()) {
        tags.push(format!("rbacGroup: {group}"));
    }
    tags
}

/// Maps a page of `SoftwareVulnerabilitiesByMachine` to vulnerabilities and the
/// definitions of their identifiers (the README's "Mapping" table).
pub fn map_vulnerabilities_page(body: &[u8]) -> Result<Mapped, PageError> {
    map_vulnerabilities_page_defining(body, &mut Defined::default(), &Scoping::default())
}

/// [`map_vulnerabilities_page`], defining only identifiers not in `defined` (which
/// it extends): a run's pages share the set, so each definition is sent once.
pub fn map_vulnerabilities_page_defining(
    body: &[u8],
    defined: &mut Defined,
    scoping: &Scoping,
) -> Result<Mapped, PageError> {
    let mut out = Mapped::default();
    // One pass: each row is mapped as soon as it is parsed, borrowing from the body.
    for_each_row(strip_bom(body), |row: Option<VulnerabilityRow>| {
        out.rows += 1;
        match row {
            Some(row) => out.add_row(&row, defined, scoping),
            None => out.skip("vulnerability row is not a JSON object"),
        }
    })
    .map_err(|e| PageError(format!("not an OData page with a `value` list: {e}")))?;
    Ok(out)
}

/// Maps a page of `SoftwareVulnerabilityChangesByMachine` (the delta export), as
/// the plugin hands it out after keeping the latest event of each row `Id`: each row
/// maps as a full-export row, open when its `status` is `New` or `Updated`, fixed at
/// its `eventTimestamp` when `Fixed`.
pub fn map_changes_page_defining(body: &[u8], defined: &mut Defined, scoping: &Scoping) -> Result<Mapped, PageError> {
    let mut out = Mapped::default();
    for_each_row(strip_bom(body), |row: Option<VulnerabilityRow>| {
        out.rows += 1;
        match row {
            Some(row) => match change_status(&row) {
                Ok(status) => out.add(scoped_row(&row, scoping).map(|v| Vulnerability { status, ..v }), defined),
                Err(reason) => out.skip(reason),
            },
            None => out.skip("change row is not a JSON object"),
        }
    })
    .map_err(|e| PageError(format!("not an OData page with a `value` list: {e}")))?;
    Ok(out)
}

/// What a delta row's `status` says: `New` and `Updated` are open, `Fixed` is
/// fixed at the row's `eventTimestamp`.
pub fn change_status(row: &VulnerabilityRow) -> Result<VulnerabilityStatus, &'static str> {
    let status = row.status.as_deref().map(str::trim).ok_or("change row without status")?;
    if status.eq_ignore_ascii_case("new") || status.eq_ignore_ascii_case("updated") {
        return Ok(VulnerabilityStatus::Open);
    }
    if !status.eq_ignore_ascii_case("fixed") {
        return Err("change row with a status other than New, Updated or Fixed");
    }
    let at = row.event_timestamp.as_deref().ok_or("fixed change row without eventTimestamp")?;
    datetime(at).map(VulnerabilityStatus::Fixed).ok_or("change row with unreadable eventTimestamp")
}

/// Maps one file of `SoftwareVulnerabilitiesExport`: gzip, one JSON object per line,
/// PascalCase keys (read by the row's aliases).
pub fn map_export_file(body: &[u8]) -> Result<Mapped, PageError> {
    use std::io::Read;
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .read_to_end(&mut text)
        .map_err(|e| PageError(format!("not a readable gzip file: {e}")))?;
    map_export_lines(&text)
}

/// Maps decompressed lines of a `SoftwareVulnerabilitiesExport` file: one JSON
/// object per line, PascalCase keys (read by the row's aliases).
pub fn map_export_lines(text: &[u8]) -> Result<Mapped, PageError> {
    map_export_lines_defining(text, &mut Defined::default(), &Scoping::default())
}

/// [`map_export_lines`], defining only identifiers not in `defined` (which it extends).
pub fn map_export_lines_defining(text: &[u8], defined: &mut Defined, scoping: &Scoping) -> Result<Mapped, PageError> {
    let mut out = Mapped::default();
    for line in strip_bom(text).split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.rows += 1;
        // One UTF-8 check a line rather than one a string (as in `for_each_row`).
        let parsed = match std::str::from_utf8(line) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(line),
        };
        let row: VulnerabilityRow = match parsed {
            Ok(r) => r,
            Err(_) => {
                out.skip("export line is not a JSON object");
                continue;
            }
        };
        out.add_row(&row, defined, scoping);
    }
    Ok(out)
}

impl Mapped {
    fn add_row(&mut self, row: &VulnerabilityRow, defined: &mut Defined, scoping: &Scoping) {
        self.add(scoped_row(row, scoping), defined)
    }

    fn add(&mut self, mapped: Result<Vulnerability, &'static str>, defined: &mut Defined) {
        match mapped {
            Ok(vulnerability) => {
                if !defined.contains(&vulnerability.identifier) {
                    defined.insert(vulnerability.identifier.clone());
                    self.definitions.push(definition(&vulnerability.identifier));
                }
                self.vulnerabilities.push(vulnerability);
            }
            Err(reason) => self.skip(reason),
        }
    }
}

/// [`map_row`], skipping a row below the scoping's minimum severity (for the row's
/// device group).
fn scoped_row(row: &VulnerabilityRow, scoping: &Scoping) -> Result<Vulnerability, &'static str> {
    let vulnerability = map_row(row)?;
    match scoping.reports_score(row.rbac_group_name.as_deref(), vulnerability.score) {
        true => Ok(vulnerability),
        false => Err(crate::scoping::BELOW_SEVERITY),
    }
}

/// Maps one vulnerability row, or says why it is skipped.
pub fn map_row(row: &VulnerabilityRow) -> Result<Vulnerability, &'static str> {
    let device = row.device_id.as_deref().map(str::trim).ok_or("vulnerability row without deviceId")?;
    let identifier = row.cve_id.as_deref().map(identifier).ok_or("vulnerability row without cveId")?;
    let found = match row.first_seen_timestamp.as_deref() {
        Some(text) => Some(datetime(text).ok_or("vulnerability row with unreadable firstSeenTimestamp")?),
        None => None,
    };
    let last_seen = match row.last_seen_timestamp.as_deref() {
        Some(text) => Some(datetime(text).ok_or("vulnerability row with unreadable lastSeenTimestamp")?),
        None => None,
    };
    Ok(Vulnerability {
        asset_key: device.to_owned(),
        identifier,
        score: score(row.vulnerability_severity_level.as_deref()),
        found,
        last_seen,
        details: Some(details(row)),
        status: VulnerabilityStatus::Open,
    })
}

/// Scanner score: Critical 10, High 8, Medium 6, Low 3, anything else 0.
pub fn score(severity: Option<&str>) -> u8 {
    let Some(severity) = severity.map(str::trim) else { return 0 };
    [("critical", 10), ("high", 8), ("medium", 6), ("low", 3)]
        .into_iter()
        .find(|(name, _)| severity.eq_ignore_ascii_case(name))
        .map_or(0, |(_, score)| score)
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
    if id.len() < 4 || !id.is_char_boundary(4) || !id[..4].eq_ignore_ascii_case("CVE-") {
        return false;
    }
    let rest = &id[4..];
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
        cve_ids: if is_cve(identifier) { vec![identifier.to_owned()] } else { Vec::new() },
        description: None,
        solution: None,
    }
}

/// Readable details of one row: the affected software and what Defender says about
/// the fix and exploitability, one line each.
pub fn details(row: &VulnerabilityRow) -> String {
    let mut out = String::with_capacity(192);
    let mut line = |label: &str, parts: &[Option<&str>], separator: &str| {
        let mut first = true;
        for part in parts.iter().flatten() {
            if first {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(label);
                first = false;
            } else {
                out.push_str(separator);
            }
            out.push_str(part);
        }
    };
    line(
        "Software: ",
        &[trimmed(&row.software_vendor), trimmed(&row.software_name), trimmed(&row.software_version)],
        " ",
    );
    match (row.vulnerability_severity_level.as_deref(), row.cvss_score.as_deref()) {
        (Some(sev), Some(cvss)) => line("Severity: ", &[Some(sev), Some(" (CVSS "), Some(cvss), Some(")")], ""),
        (Some(sev), None) => line("Severity: ", &[Some(sev)], ""),
        (None, Some(cvss)) => line("CVSS: ", &[Some(cvss)], ""),
        (None, None) => {}
    }
    line("Exploitability: ", &[row.exploitability_level.as_deref()], "");
    let id = row.recommended_security_update_id.as_deref().map(|id| format!("({id})"));
    line(
        "Recommended update: ",
        &[row.recommended_security_update.as_deref(), id.as_deref(), row.recommended_security_update_url.as_deref()],
        " ",
    );
    let joined = |paths: &[Cow<str>]| (!paths.is_empty()).then(|| paths.join("; "));
    let disk = joined(&row.disk_paths);
    line("Disk paths: ", &[disk.as_deref()], "");
    let registry = joined(&row.registry_paths);
    line("Registry paths: ", &[registry.as_deref()], "");
    out
}

fn trimmed<'a>(value: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    value.as_deref().map(str::trim)
}

pub(crate) fn datetime(text: &str) -> Option<Datetime> {
    let t = timestamp::parse(text)?;
    Some(Datetime { seconds: t.timestamp(), nanoseconds: t.timestamp_subsec_nanos() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(json: &str) -> Result<Asset, &'static str> {
        let m: Machine = serde_json::from_str(json).unwrap();
        map_machine(&m)
    }

    fn row(json: &str) -> Result<Vulnerability, &'static str> {
        let r: VulnerabilityRow = serde_json::from_str(json).unwrap();
        map_row(&r)
    }

    fn iface(ip: &str, mac: Option<&str>, status: &str) -> IpAddressEntry<'static> {
        IpAddressEntry {
            ip_address: Some(Cow::Owned(ip.into())),
            mac_address: mac.map(|m| Cow::Owned(m.into())),
            operational_status: Some(Cow::Owned(status.into())),
        }
    }

    // §5 Scanner score.
    #[test]
    fn severity_maps_to_score() {
        assert_eq!(score(Some("Critical")), 10);
        assert_eq!(score(Some("High")), 8);
        assert_eq!(score(Some("Medium")), 6);
        assert_eq!(score(Some("Low")), 3);
        assert_eq!(score(Some("Other")), 0);
        assert_eq!(score(Some("Severe")), 0);
        assert_eq!(score(None), 0);
    }

    // §5 CVE: null or empty skipped; non-CVE ids kept without a CVE reference.
    #[test]
    fn cve_ids_and_other_identifiers() {
        assert_eq!(row(r#"{"deviceId":"d","cveId":null}"#).unwrap_err(), "vulnerability row without cveId");
        assert_eq!(row(r#"{"deviceId":"d","cveId":"  "}"#).unwrap_err(), "vulnerability row without cveId");
        assert_eq!(row(r#"{"deviceId":"d"}"#).unwrap_err(), "vulnerability row without cveId");
        let tvm = row(r#"{"deviceId":"d","cveId":"TVM-2020-0002"}"#).unwrap();
        assert_eq!(tvm.identifier, "TVM-2020-0002");
        assert!(definition(&tvm.identifier).cve_ids.is_empty());
        let cve = row(r#"{"deviceId":"d","cveId":"cve-2024-12345"}"#).unwrap();
        assert_eq!(cve.identifier, "CVE-2024-12345");
        assert_eq!(definition(&cve.identifier).cve_ids, ["CVE-2024-12345"]);
        assert!(!is_cve("CVE-24-1"));
        assert!(!is_cve("c-id-123"));
    }

    // §5 Found and Last Seen; zoneless times are UTC.
    #[test]
    fn found_and_last_seen_come_from_the_row() {
        let v = row(r#"{"deviceId":"d","cveId":"CVE-2024-1000","firstSeenTimestamp":"2020-12-30 14:17:26","lastSeenTimestamp":"2021-01-02 03:04:05.1234567"}"#).unwrap();
        assert_eq!(v.found.unwrap().seconds, 1_609_337_846);
        let seen = v.last_seen.unwrap();
        assert_eq!((seen.seconds, seen.nanoseconds), (1_609_556_645, 123_456_700));
        assert_eq!(
            row(r#"{"deviceId":"d","cveId":"CVE-2024-1000","firstSeenTimestamp":"yesterday"}"#).unwrap_err(),
            "vulnerability row with unreadable firstSeenTimestamp"
        );
    }

    #[test]
    fn rows_without_a_device_are_skipped() {
        assert_eq!(row(r#"{"cveId":"CVE-2024-1000"}"#).unwrap_err(), "vulnerability row without deviceId");
    }

    #[test]
    fn details_name_the_software_fix_and_exploitability() {
        let v = row(r#"{"deviceId":"d","cveId":"CVE-2024-1000","softwareVendor":"google","softwareName":"chrome",
            "softwareVersion":"124.0","vulnerabilitySeverityLevel":"High","cvssScore":8.8,"exploitabilityLevel":"ExploitIsPublic",
            "recommendedSecurityUpdate":"April 2020 Security Updates","recommendedSecurityUpdateId":4550961,
            "diskPaths":["C:\\a.exe"],"registryPaths":[]}"#)
        .unwrap();
        assert_eq!(
            v.details.unwrap(),
            "Software: google chrome 124.0\nSeverity: High (CVSS 8.8)\nExploitability: ExploitIsPublic\nRecommended update: April 2020 Security Updates (4550961)\nDisk paths: C:\\a.exe"
        );
        let v = row(r#"{"deviceId":"d","cveId":"CVE-2024-1000","softwareName":" openssl ","cvssScore":"7.5",
            "recommendedSecurityUpdateId":"KB1","recommendedSecurityUpdateUrl":"https://u.example/kb1",
            "diskPaths":["/a","/b"],"registryPaths":["HKLM\\x","HKLM\\y","HKLM\\z"]}"#)
        .unwrap();
        assert_eq!(
            v.details.unwrap(),
            "Software: openssl\nCVSS: 7.5\nRecommended update: (KB1) https://u.example/kb1\nDisk paths: /a; /b\nRegistry paths: HKLM\\x; HKLM\\y; HKLM\\z"
        );
    }

    #[test]
    fn a_page_maps_rows_and_defines_each_identifier_once() {
        let body = br#"{"value":[{"deviceId":"a","cveId":"CVE-2024-1000"},{"deviceId":"b","cveId":"CVE-2024-1000"},
            {"deviceId":"a","cveId":null},7,{"deviceId":"a","cveId":"TVM-2020-0002"}]}"#;
        let m = map_vulnerabilities_page(body).unwrap();
        assert_eq!(m.rows, 5);
        assert_eq!(m.vulnerabilities.len(), 3);
        let ids: Vec<&str> = m.definitions.iter().map(|d| d.identifier.as_str()).collect();
        assert_eq!(ids, ["CVE-2024-1000", "TVM-2020-0002"]);
        assert_eq!(m.skipped.get("vulnerability row without cveId"), Some(&1));
        assert_eq!(m.skipped.get("vulnerability row is not a JSON object"), Some(&1));
        assert!(map_vulnerabilities_page(b"[1,2]").is_err());
        let with_bom = b"\xEF\xBB\xBF{\"value\":[{\"DeviceId\":\"a\",\"CveId\":\"CVE-2024-1000\"}]}";
        assert_eq!(map_vulnerabilities_page(with_bom).unwrap().vulnerabilities.len(), 1, "a UTF-8 BOM is tolerated");
        assert!(map_vulnerabilities_page(b"{\"value\": 3}").is_err());
    }

    #[test]
    fn pages_sharing_a_set_define_each_identifier_once_per_run() {
        let mut defined = Defined::default();
        let first = br#"{"value":[{"deviceId":"a","cveId":"CVE-2024-1000"}]}"#;
        let second =
            br#"{"value":[{"deviceId":"b","cveId":"cve-2024-1000"},{"deviceId":"b","cveId":"CVE-2024-2000"}]}"#;
        let m = map_vulnerabilities_page_defining(first, &mut defined, &Scoping::default()).unwrap();
        assert_eq!(m.definitions.len(), 1);
        let m = map_vulnerabilities_page_defining(second, &mut defined, &Scoping::default()).unwrap();
        assert_eq!(m.vulnerabilities.len(), 2, "vulnerabilities are all kept");
        let ids: Vec<&str> = m.definitions.iter().map(|d| d.identifier.as_str()).collect();
        assert_eq!(ids, ["CVE-2024-2000"], "CVE-2024-1000 was defined by the first page");
        let lines = b"{\"DeviceId\":\"c\",\"CveId\":\"CVE-2024-2000\"}\n{\"DeviceId\":\"c\",\"CveId\":\"TVM-1\"}";
        let m = map_export_lines_defining(lines, &mut defined, &Scoping::default()).unwrap();
        assert_eq!(m.definitions.iter().map(|d| d.identifier.as_str()).collect::<Vec<_>>(), ["TVM-1"]);
    }

    // §6 External ID, status.
    #[test]
    fn export_files_are_gzip_json_lines_with_pascal_case_keys() {
        use std::io::Write;
        let lines = "\u{feff}{\"DeviceId\":\"a\",\"CveId\":\"CVE-2024-1000\",\"VulnerabilitySeverityLevel\":\"Critical\"}\r\n\nnot json\n{\"DeviceId\":\"b\",\"CveId\":null}\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(lines.as_bytes()).unwrap();
        let m = map_export_file(&gz.finish().unwrap()).unwrap();
        assert_eq!(m.rows, 3);
        assert_eq!(m.vulnerabilities.len(), 1);
        assert_eq!(m.vulnerabilities[0].score, 10);
        assert_eq!(m.skipped.get("export line is not a JSON object"), Some(&1));
        assert_eq!(m.skipped.get("vulnerability row without cveId"), Some(&1));
        assert!(map_export_file(b"<Error><Code>AuthenticationFailed</Code></Error>").is_err());
    }

    #[test]
    fn merged_machines_are_skipped() {
        assert_eq!(
            machine(r#"{"id":"m1","mergedIntoMachineId":"m2"}"#).unwrap_err(),
            "machine merged into another (mergedIntoMachineId)"
        );
    }

    #[test]
    fn machines_need_an_id_and_must_be_active() {
        assert_eq!(machine(r#"{"computerDnsName":"x"}"#).unwrap_err(), "machine without id");
        assert_eq!(machine(r#"{"id":"m1","healthStatus":"Inactive"}"#).unwrap_err(), "machine not Active");
        let a = machine(r#"{"id":"m1","healthStatus":"Active"}"#).unwrap();
        assert_eq!(a.key, "m1");
        assert_eq!(a.locators.external_id.as_deref(), Some("m1"));
    }

    // §6 Operating System.
    #[test]
    fn os_version_combines_version_and_build() {
        assert_eq!(os_version(Some("22H2"), Some("19045")).as_deref(), Some("22H2 (build 19045)"));
        assert_eq!(os_version(Some("22H2"), None).as_deref(), Some("22H2"));
        assert_eq!(os_version(Some("22H2"), Some("0")).as_deref(), Some("22H2"));
        assert_eq!(os_version(Some("22H2"), Some("  ")).as_deref(), Some("22H2"));
        assert_eq!(os_version(None, Some("19045")).as_deref(), Some("build 19045"));
        assert_eq!(os_version(None, None), None);
        let a = machine(r#"{"id":"m","osPlatform":"Windows10","version":"22H2","osBuild":19045}"#).unwrap();
        assert_eq!((a.os.as_deref(), a.os_version.as_deref()), (Some("Windows10"), Some("22H2 (build 19045)")));
    }

    // §6 FQDN, Hostname, NetBIOS.
    #[test]
    fn dns_name_gives_fqdn_hostname_and_netbios() {
        let a = machine(r#"{"id":"m","computerDnsName":"ws-042.corp.example.com"}"#).unwrap();
        assert_eq!(a.locators.fqdn.as_deref(), Some("ws-042.corp.example.com"));
        assert_eq!(a.locators.hostname.as_deref(), Some("ws-042"));
        assert_eq!(a.locators.netbios.as_deref(), Some("ws-042"));
        let bare = machine(r#"{"id":"m","computerDnsName":"WS-042"}"#).unwrap();
        assert_eq!(bare.locators.fqdn, None);
        assert_eq!(bare.locators.hostname.as_deref(), Some("WS-042"));
        assert_eq!(bare.locators.netbios.as_deref(), Some("WS-042"));
        let trailing = machine(r#"{"id":"m","computerDnsName":"ws-042."}"#).unwrap();
        assert_eq!(trailing.locators.fqdn, None);
        assert_eq!(trailing.locators.hostname.as_deref(), Some("ws-042"));
        let none = machine(r#"{"id":"m","computerDnsName":null}"#).unwrap();
        assert_eq!((none.locators.hostname, none.locators.fqdn), (None, None));
    }

    // §6 IP and MAC Address.
    #[test]
    fn mac_comes_from_the_up_interface_with_the_last_ip() {
        let ifaces = [
            iface("10.0.0.5", Some("0A0B0C0D0E0F"), "Down"),
            iface("10.0.0.5", Some("00-0c-29-92-a6-43"), "Up"),
            iface("10.0.0.6", Some("111111111111"), "Up"),
        ];
        assert_eq!(mac_for("10.0.0.5", &ifaces).as_deref(), Some("00:0C:29:92:A6:43"));
        assert_eq!(mac_for("10.0.0.7", &ifaces), None, "no interface with that address");
        assert_eq!(mac_for("10.0.0.5", &[iface("10.0.0.5", Some("000C2992A643"), "Down")]), None);
        assert_eq!(mac_for("10.0.0.5", &[iface("10.0.0.5", None, "Up")]), None);
    }

    #[test]
    fn mac_normalization() {
        assert_eq!(normalize_mac("000C2992A643").as_deref(), Some("00:0C:29:92:A6:43"));
        assert_eq!(normalize_mac("00:0c:29:92:a6:43").as_deref(), Some("00:0C:29:92:A6:43"));
        assert_eq!(normalize_mac("000c.2992.a643").as_deref(), Some("00:0C:29:92:A6:43"));
        assert_eq!(normalize_mac("000000000000"), None, "all zeros");
        assert_eq!(normalize_mac("00-00-00-00-00-00"), None, "all zeros with separators");
        assert_eq!(normalize_mac("00000000000000E0"), None, "16 hex digits (tunnel adapter)");
        assert_eq!(normalize_mac("00:0C:29:92:A6"), None, "too short");
        assert_eq!(normalize_mac("GG0C2992A643"), None, "not hex");
    }

    #[test]
    fn ip_address_is_the_last_ip() {
        let a = machine(r#"{"id":"m","lastIpAddress":"10.1.2.3","ipAddresses":[{"ipAddress":"10.1.2.3","macAddress":"8CEC4B897E73","operationalStatus":"Up"}]}"#).unwrap();
        assert_eq!(a.locators.ip_address.as_deref(), Some("10.1.2.3"));
        assert_eq!(a.locators.mac_address.as_deref(), Some("8C:EC:4B:89:7E:73"));
    }

    // §6 Tags.
    #[test]
    fn tags_are_machine_tags_then_the_rbac_group() {
        let a = machine(r#"{"id":"m","machineTags":["Finance","VIP"],"rbacGroupName":"Workstations"}"#).unwrap();
        assert_eq!(a.tags, ["Finance", "VIP", "rbacGroup: Workstations"]);
        let b = machine(r#"{"id":"m","machineTags":[],"rbacGroupName":null}"#).unwrap();
        assert!(b.tags.is_empty());
    }

    // §6 Last Seen.
    #[test]
    fn last_seen_is_the_machine_last_seen() {
        let a = machine(r#"{"id":"m","lastSeen":"2021-01-25T07:27:36.052313Z"}"#).unwrap();
        let t = a.last_seen.unwrap();
        assert_eq!((t.seconds, t.nanoseconds), (1_611_559_656, 52_313_000));
    }
}
