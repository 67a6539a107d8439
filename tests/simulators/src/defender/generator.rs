//! A deterministic Defender tenant: machines and vulnerability rows from a seed, a
//! device count and a row count, with the quirks real tenants have.
//!
//! Quirks: every severity including `Other` and none; CVE ids, `TVM-` ids, null and
//! empty `cveId`; the same CVE on one device through several products; inactive
//! devices; rows of devices missing from the machine list; host names with and
//! without dots and none at all; several network interfaces, interfaces that are down
//! (also one carrying the last IP), MACs with and without separators, in lower case,
//! all zeros or null; machine tags and RBAC groups; `osBuild` as a number, null or 0;
//! numbers sent as strings; both zoneless timestamp shapes.
//!
//! Rows are generated on demand from their index, so a tenant of any size costs no
//! memory beyond its machine list.

use crate::rng::{derive, guid, hex};
use serde::Serialize;
use serde_json::{json, Value};

/// What to generate.
#[derive(Clone, Debug)]
pub struct TenantSpec {
    pub seed: u64,
    /// Machines in the machine list (active and inactive).
    pub devices: usize,
    /// Vulnerability rows.
    pub rows: u64,
}

/// One machine of `/api/machines`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub id: String,
    pub computer_dns_name: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub os_platform: String,
    pub os_version: Option<String>,
    pub version: Option<String>,
    pub os_build: Value,
    pub os_processor: &'static str,
    pub last_ip_address: String,
    pub last_external_ip_address: String,
    pub agent_version: &'static str,
    pub health_status: &'static str,
    pub onboarding_status: &'static str,
    pub rbac_group_id: u32,
    pub rbac_group_name: Option<&'static str>,
    pub risk_score: &'static str,
    pub exposure_level: &'static str,
    pub is_aad_joined: bool,
    pub aad_device_id: Option<String>,
    pub machine_tags: Vec<&'static str>,
    pub defender_av_status: &'static str,
    pub merged_into_machine_id: Option<String>,
    pub is_potential_duplication: bool,
    pub ip_addresses: Vec<Value>,
}

/// One row of `SoftwareVulnerabilitiesByMachine`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityRow {
    pub id: String,
    pub device_id: String,
    pub device_name: Option<String>,
    pub os_platform: &'static str,
    pub os_version: &'static str,
    pub os_architecture: &'static str,
    pub software_vendor: &'static str,
    pub software_name: &'static str,
    pub software_version: String,
    pub cve_id: Option<String>,
    pub cvss_score: Value,
    pub vulnerability_severity_level: Option<&'static str>,
    pub recommended_security_update: Option<&'static str>,
    pub recommended_security_update_id: Value,
    pub exploitability_level: &'static str,
    pub first_seen_timestamp: String,
    pub last_seen_timestamp: String,
    pub disk_paths: Vec<String>,
    pub registry_paths: Vec<String>,
    pub rbac_group_name: &'static str,
    pub rbac_group_id: u32,
    pub security_update_available: bool,
}

const SEVERITIES: [Option<&str>; 6] =
    [Some("Critical"), Some("High"), Some("Medium"), Some("Low"), Some("Other"), None];
const PLATFORMS: [&str; 5] = ["Windows10", "Windows11", "WindowsServer2019", "Linux", "macOS"];
const VERSIONS: [Option<&str>; 4] = [Some("22H2"), Some("21H2"), Some("1809"), None];
const SOFTWARE: [(&str, &str); 8] = [
    ("google", "chrome"),
    ("microsoft", "edge_chromium-based"),
    ("microsoft", "windows_10"),
    ("mozilla", "firefox"),
    ("oracle", "jre"),
    ("red_hat", "kernel"),
    ("adobe", "acrobat_reader_dc"),
    ("openssl", "openssl"),
];
const EXPLOITABILITY: [&str; 4] = ["NoExploit", "ExploitIsPublic", "ExploitIsVerified", "ExploitIsInKit"];
const UNHEALTHY: [&str; 3] = ["Inactive", "ImpairedCommunication", "NoSensorData"];

/// A generated tenant.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub spec: TenantSpec,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    machines: Vec<Machine>,
    /// Indices of the rows still served, once the tenant has changed (`None`: all).
    live_rows: Option<Vec<u64>>,
    /// Rows added since generation (new findings, upgraded versions), indexed from
    /// `spec.rows` on.
    added: Vec<VulnerabilityRow>,
    /// Every change since generation, as the delta export reports it.
    pub changes: Vec<Change>,
    /// Catalogue records updated since generation: their index and when (seconds).
    catalogue_updates: std::collections::HashMap<u64, i64>,
}

/// One event of the delta export: a row as it is (or was), what happened to it and
/// when.
#[derive(Clone, Debug)]
pub struct Change {
    pub at: std::time::SystemTime,
    /// `New`, `Fixed` or `Updated`.
    pub status: &'static str,
    pub row: VulnerabilityRow,
}

impl Change {
    /// The row as the delta export sends it: the full-export fields, plus `status`,
    /// `eventTimestamp` (zoneless, seven fraction digits, as the exports write
    /// times) and `isOnboarded`.
    pub fn to_json(&self) -> Value {
        let mut row = serde_json::to_value(&self.row).expect("a row serializes");
        let at = chrono::DateTime::<chrono::Utc>::from(self.at);
        row["status"] = json!(self.status);
        row["eventTimestamp"] =
            json!(format!("{}{:07}", at.format("%Y-%m-%d %H:%M:%S."), at.timestamp_subsec_nanos() / 100));
        row["isOnboarded"] = json!(true);
        row
    }
}

impl Tenant {
    pub fn generate(spec: TenantSpec) -> Tenant {
        let seed = spec.seed;
        let machines = (0..spec.devices as u64).map(|i| machine(seed, i)).collect();
        Tenant {
            tenant_id: guid(seed, "tenant"),
            client_id: guid(seed, "client"),
            client_secret: format!("sim~{}.secret", hex(seed, "secret", 0, 24)),
            machines,
            live_rows: None,
            added: Vec::new(),
            changes: Vec::new(),
            catalogue_updates: Default::default(),
            spec,
        }
    }

    /// When catalogue record `index` was last updated (seconds since the epoch).
    pub fn catalogue_updated(&self, index: u64) -> i64 {
        self.catalogue_updates
            .get(&index)
            .copied()
            .unwrap_or_else(|| super::catalogue::base_updated(self.spec.seed, index))
    }

    /// The catalogue's record of an identifier as it is served now.
    pub fn catalogue_record(&self, id: &str) -> Option<serde_json::Value> {
        let index = super::catalogue::index_of(id)?;
        Some(super::catalogue::record(self.spec.seed, index, self.catalogue_updated(index)))
    }

    /// Updates the catalogue records of these identifiers now, as Defender does when
    /// a score or an exploit changes; returns how many it found.
    pub fn update_catalogue(&mut self, ids: &[&str]) -> usize {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs() as i64;
        let indices: Vec<u64> = ids.iter().filter_map(|id| super::catalogue::index_of(id)).collect();
        for index in &indices {
            self.catalogue_updates.insert(*index, now);
        }
        indices.len()
    }

    /// Rows served now.
    pub fn row_count(&self) -> u64 {
        self.live_rows.as_ref().map_or(self.spec.rows, |live| live.len() as u64)
    }

    /// The row served at `offset` (0-based) now.
    pub fn row_at(&self, offset: u64) -> VulnerabilityRow {
        let index = self.live_rows.as_ref().map_or(offset, |live| live[offset as usize]);
        self.row(index)
    }

    /// The rows served now.
    pub fn live_rows(&self) -> impl Iterator<Item = VulnerabilityRow> + '_ {
        (0..self.row_count()).map(|i| self.row_at(i))
    }

    /// Stops serving the rows `remove` picks: the vulnerabilities they report were
    /// fixed (or the software removed).
    pub fn remove_rows(&mut self, remove: impl Fn(&VulnerabilityRow) -> bool) {
        let now = std::time::SystemTime::now();
        let mut live = Vec::new();
        for offset in 0..self.row_count() {
            let index = self.live_rows.as_ref().map_or(offset, |live| live[offset as usize]);
            let row = self.row(index);
            if remove(&row) {
                self.changes.push(Change { at: now, status: "Fixed", row });
            } else {
                live.push(index);
            }
        }
        self.live_rows = Some(live);
    }

    /// Serves a new row: a vulnerability found since (`New` in the delta).
    pub fn add_row(&mut self, row: VulnerabilityRow) {
        let mut live: Vec<u64> = (0..self.row_count()).map(|o| self.index_at(o)).collect();
        live.push(self.spec.rows + self.added.len() as u64);
        self.live_rows = Some(live);
        self.changes.push(Change { at: std::time::SystemTime::now(), status: "New", row: row.clone() });
        self.added.push(row);
    }

    /// Upgrades the software of the row at `offset` to a version that still has the
    /// vulnerability: `Fixed` on the old version, `New` on the new one, as Defender
    /// reports an upgrade.
    pub fn upgrade_row(&mut self, offset: u64) {
        let old = self.row_at(offset);
        self.remove_rows(|r| r.id == old.id);
        let mut new = old.clone();
        new.software_version = format!("{}-upgraded", old.software_version);
        new.id = format!(
            "{}_{}_{}_{}_{}",
            new.device_id,
            new.software_vendor,
            new.software_name,
            new.software_version,
            new.cve_id.clone().unwrap_or_default()
        );
        self.add_row(new);
    }

    /// Moves a machine to another RBAC group: its rows show in the delta as `Fixed`
    /// under the old group and `New` under the new one, at the same time.
    pub fn move_machine(&mut self, machine_id: &str, group_id: u32, group: &'static str) {
        let now = std::time::SystemTime::now();
        // Its rows as they were (a row carries its device's group), then the move.
        let rows: Vec<VulnerabilityRow> = self.live_rows().filter(|r| r.device_id == machine_id).collect();
        for m in self.machines.iter_mut().filter(|m| m.id == machine_id) {
            m.rbac_group_id = group_id;
            m.rbac_group_name = Some(group);
        }
        for row in rows {
            self.changes.push(Change { at: now, status: "Fixed", row: row.clone() });
            let moved = VulnerabilityRow { rbac_group_id: group_id, rbac_group_name: group, ..row };
            self.changes.push(Change { at: now, status: "New", row: moved });
        }
    }

    fn index_at(&self, offset: u64) -> u64 {
        self.live_rows.as_ref().map_or(offset, |live| live[offset as usize])
    }

    /// Marks machines inactive (decommissioned, or no longer reporting).
    pub fn retire_machines(&mut self, retire: impl Fn(&Machine) -> bool) {
        for m in self.machines.iter_mut().filter(|m| retire(m)) {
            m.health_status = "Inactive";
        }
    }

    /// Changes machines in place (tags added or removed, a move to another RBAC
    /// group), as administrators do between runs.
    pub fn update_machines(&mut self, mut change: impl FnMut(&mut Machine)) {
        self.machines.iter_mut().for_each(&mut change);
    }

    /// Every machine, active or not, in list order.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }

    /// Machines whose `healthStatus` is `Active`.
    pub fn active_machines(&self) -> impl Iterator<Item = &Machine> {
        self.machines.iter().filter(|m| m.health_status == "Active")
    }

    /// Row `index` (0-based) of the vulnerability export (rows added later follow
    /// the generated ones).
    pub fn row(&self, index: u64) -> VulnerabilityRow {
        match index.checked_sub(self.spec.rows) {
            Some(added) => self.added[added as usize].clone(),
            None => row(self, index),
        }
    }

    /// Every generated row, also those removed since.
    pub fn rows(&self) -> impl Iterator<Item = VulnerabilityRow> + '_ {
        (0..self.spec.rows).map(|i| self.row(i))
    }
}

fn machine(seed: u64, i: u64) -> Machine {
    let r = |stream: &str| derive(seed, stream, i);
    let id = hex(seed, "machine", i, 40);
    let health_status = if r("health") % 20 == 7 { UNHEALTHY[(r("health-kind") % 3) as usize] } else { "Active" };
    let computer_dns_name = match r("dns") % 20 {
        0 => None,
        1..=5 => Some(format!("WS-{i:05}")),
        6 => Some(format!("srv-{i:05}.eu.corp.contoso.com")),
        _ => Some(format!("ws-{i:05}.corp.contoso.com")),
    };
    let last_ip = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, (i & 0xff).max(1));
    let mac_hex = format!("000C29{}", &hex(seed, "mac", i, 6).to_ascii_uppercase());
    let main_mac = match r("mac-format") % 6 {
        0 => Value::String(mac_hex.clone()),
        1 => Value::String(pairs(&mac_hex, "-")),
        2 => Value::String(pairs(&mac_hex, ":").to_ascii_lowercase()),
        3 => Value::String("000000000000".into()),
        4 => Value::Null,
        _ => Value::String(mac_hex.clone()),
    };
    let main_up = r("link") % 13 != 0;
    let mut ip_addresses = Vec::new();
    if r("stale-iface") % 7 == 0 {
        // The same address on an interface that is down, listed first.
        ip_addresses.push(json!({"ipAddress": last_ip, "macAddress": "0A0B0C0D0E0F", "type": "Ethernet", "operationalStatus": "Down"}));
    }
    ip_addresses.push(json!({"ipAddress": last_ip, "macAddress": main_mac, "type": "Ethernet",
        "operationalStatus": if main_up { "Up" } else { "Down" }}));
    if r("wifi") % 3 == 0 {
        ip_addresses.push(json!({"ipAddress": format!("192.168.{}.{}", i & 0xff, (i >> 8) & 0xff), "macAddress": format!("F0{}", &hex(seed, "wifi-mac", i, 10).to_ascii_uppercase()), "type": "Wireless80211", "operationalStatus": "Up"}));
    }
    ip_addresses.push(json!({"ipAddress": "fe80::1c2d:3e4f:5a6b:7c8d", "macAddress": mac_hex, "type": "Ethernet", "operationalStatus": "Up"}));
    ip_addresses.push(
        json!({"ipAddress": "127.0.0.1", "macAddress": null, "type": "SoftwareLoopback", "operationalStatus": "Up"}),
    );
    let platform = PLATFORMS[(r("os") % 5) as usize];
    let os_build = match r("build") % 5 {
        0 => Value::Null,
        1 => json!(0),
        2 => json!(22631),
        _ => json!(19045),
    };
    let machine_tags = match r("tags") % 4 {
        0 => vec!["Finance", "VIP"],
        1 => vec!["Servers"],
        _ => vec![],
    };
    let (rbac_group_id, rbac_group_name) = match r("rbac") % 3 {
        0 => (0, None),
        1 => (140, Some("Workstations")),
        _ => (141, Some("Servers EU")),
    };
    Machine {
        id,
        computer_dns_name,
        first_seen: format!("2024-0{}-1{}T08:00:00Z", 1 + r("first") % 9, r("first") % 10),
        last_seen: format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}.{:07}Z",
            20 + r("seen") % 8,
            r("seen-h") % 24,
            r("seen-m") % 60,
            r("seen-s") % 60,
            r("seen-f") % 10_000_000
        ),
        os_platform: platform.into(),
        os_version: None,
        version: VERSIONS[(r("version") % 4) as usize].map(Into::into),
        os_build,
        os_processor: "x64",
        last_ip_address: last_ip,
        last_external_ip_address: "203.0.113.10".into(),
        agent_version: "10.8760.19041.1",
        health_status,
        onboarding_status: "Onboarded",
        rbac_group_id,
        rbac_group_name,
        risk_score: ["None", "Low", "Medium", "High"][(r("risk") % 4) as usize],
        exposure_level: ["Low", "Medium", "High"][(r("exposure") % 3) as usize],
        is_aad_joined: r("aad") % 2 == 0,
        aad_device_id: None,
        machine_tags,
        defender_av_status: "Updated",
        merged_into_machine_id: None,
        is_potential_duplication: false,
        ip_addresses,
    }
}

fn pairs(hex: &str, sep: &str) -> String {
    (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect::<Vec<_>>().join(sep)
}

/// About 1 row in 100 belongs to a device the machine list does not have.
fn ghost_device(seed: u64, index: u64) -> String {
    hex(seed, "ghost", index % 50, 40)
}

fn row(tenant: &Tenant, index: u64) -> VulnerabilityRow {
    let seed = tenant.spec.seed;
    // Every tenth row repeats the previous row's device and CVE through another
    // product: one CVE on one device through several products.
    let anchor = if index % 10 == 1 { index - 1 } else { index };
    let a = |stream: &str| derive(seed, stream, anchor);
    let r = |stream: &str| derive(seed, stream, index);
    let devices = tenant.machines.len().max(1) as u64;
    // A row carries its device's group; a device without one is `UnassignedGroup`.
    let (device_id, device_name, rbac_group_id, rbac_group_name) =
        if a("ghost") % 100 == 0 || tenant.machines.is_empty() {
            (ghost_device(seed, anchor), Some("ghost.corp.contoso.com".to_owned()), 0, None)
        } else {
            // Every 25th device gets no rows at all: a clean device must still be sent.
            let mut index = a("device") % devices;
            if index % 25 == 3 {
                index = (index + 1) % devices;
            }
            let m = &tenant.machines[index as usize];
            (m.id.clone(), m.computer_dns_name.clone(), m.rbac_group_id, m.rbac_group_name)
        };
    let cve_id = match a("cve") % 100 {
        0 => None,
        1 => Some("TVM-2020-0002".to_owned()),
        2 => Some(String::new()),
        3 => Some(format!("cve-{}-{}", 2019 + a("cve-y") % 6, 20_000 + a("cve-n") % 300)),
        _ => Some(format!("CVE-{}-{}", 2018 + a("cve-y") % 8, 10_000 + a("cve-n") % 5_000)),
    };
    let (vendor, name) = SOFTWARE[(r("software") % SOFTWARE.len() as u64) as usize];
    let severity = SEVERITIES[(r("severity") % 6) as usize];
    let fraction = |stream: &str| {
        if r(stream) % 2 == 0 {
            String::new()
        } else {
            format!(".{:07}", r(stream) % 10_000_000)
        }
    };
    let first = format!(
        "2025-{:02}-{:02} {:02}:{:02}:{:02}{}",
        1 + r("f-mo") % 12,
        1 + r("f-d") % 28,
        r("f-h") % 24,
        r("f-mi") % 60,
        r("f-s") % 60,
        fraction("f-frac")
    );
    let last = format!(
        "2026-11-{:02} {:02}:{:02}:{:02}{}",
        1 + r("l-d") % 27,
        r("l-h") % 24,
        r("l-mi") % 60,
        r("l-s") % 60,
        fraction("l-frac")
    );
    let software_version = format!("{}.{}.{}", 1 + r("major") % 120, index, r("patch") % 100);
    let cvss = (r("cvss") % 100) as f64 / 10.0;
    VulnerabilityRow {
        id: format!("{device_id}_{vendor}_{name}_{software_version}_{}", cve_id.clone().unwrap_or_default()),
        device_id,
        device_name,
        os_platform: "Windows10",
        os_version: "10.0.19045.6093",
        os_architecture: "x64",
        software_vendor: vendor,
        software_name: name,
        software_version,
        cve_id,
        cvss_score: if r("cvss-type") % 4 == 0 { Value::String(format!("{cvss}")) } else { json!(cvss) },
        vulnerability_severity_level: severity,
        recommended_security_update: (r("update") % 3 != 0).then_some("November 2026 Security Updates"),
        recommended_security_update_id: match r("update-id") % 3 {
            0 => Value::Null,
            1 => json!(5_046_613),
            _ => json!("RHSA-2024:9315"),
        },
        exploitability_level: EXPLOITABILITY[(r("exploit") % 4) as usize],
        first_seen_timestamp: first,
        last_seen_timestamp: last,
        disk_paths: if r("paths") % 2 == 0 { vec![format!("C:\\Program Files\\{name}\\{name}.exe")] } else { vec![] },
        registry_paths: if r("reg") % 3 == 0 {
            vec![format!("HKEY_LOCAL_MACHINE\\SOFTWARE\\{vendor}\\{name}")]
        } else {
            vec![]
        },
        rbac_group_name: rbac_group_name.unwrap_or("UnassignedGroup"),
        rbac_group_id,
        security_update_available: r("upd-avail") % 2 == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn tenant() -> Tenant {
        Tenant::generate(TenantSpec { seed: 42, devices: 400, rows: 5_000 })
    }

    #[test]
    fn generation_is_deterministic() {
        let (a, b) = (tenant(), tenant());
        assert_eq!(a.tenant_id, b.tenant_id);
        assert_eq!(
            serde_json::to_string(&a.machines()[17]).unwrap(),
            serde_json::to_string(&b.machines()[17]).unwrap()
        );
        assert_eq!(serde_json::to_string(&a.row(4321)).unwrap(), serde_json::to_string(&b.row(4321)).unwrap());
    }

    #[test]
    fn the_quirks_are_present() {
        let t = tenant();
        let rows: Vec<VulnerabilityRow> = t.rows().collect();
        let severities: HashSet<Option<&str>> = rows.iter().map(|r| r.vulnerability_severity_level).collect();
        assert_eq!(severities.len(), 6, "every severity, including Other and none");
        assert!(rows.iter().any(|r| r.cve_id.is_none()));
        assert!(rows.iter().any(|r| r.cve_id.as_deref() == Some("")));
        assert!(rows.iter().any(|r| r.cve_id.as_deref().is_some_and(|c| c.starts_with("TVM-"))));
        let known: HashSet<&str> = t.machines().iter().map(|m| m.id.as_str()).collect();
        assert!(rows.iter().any(|r| !known.contains(r.device_id.as_str())), "rows of devices not in the list");
        assert!(rows.windows(2).any(|w| w[0].device_id == w[1].device_id
            && w[0].cve_id == w[1].cve_id
            && w[0].software_name != w[1].software_name));
        assert!(t.machines().iter().any(|m| m.health_status != "Active"));
        let with_rows: HashSet<&str> = rows.iter().map(|r| r.device_id.as_str()).collect();
        assert!(t.active_machines().any(|m| !with_rows.contains(m.id.as_str())), "clean devices");
        assert!(t.machines().iter().any(|m| m.computer_dns_name.as_deref().is_some_and(|n| !n.contains('.'))));
        assert!(t.machines().iter().any(|m| m.computer_dns_name.is_none()));
        assert!(t.machines().iter().any(|m| m.ip_addresses.iter().any(|i| i["operationalStatus"] == "Down")));
        assert!(t.machines().iter().any(|m| m.ip_addresses.iter().any(|i| i["macAddress"] == "000000000000")));
        assert!(t.machines().iter().any(|m| !m.machine_tags.is_empty() && m.rbac_group_name.is_some()));
        let ids: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), rows.len(), "rows are unique per device, software and CVE");
    }
}
