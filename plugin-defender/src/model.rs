//! Defender's JSON shapes, as received. Every field is optional and lenient: the
//! mapping decides what a missing value means, never the parser.

use crate::lenient;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// An OData page: the rows stay raw so that one malformed row is skipped, not fatal.
#[derive(Deserialize)]
pub struct Page<'a> {
    #[serde(borrow)]
    pub value: Vec<&'a RawValue>,
    #[serde(rename = "@odata.nextLink", alias = "@odata.nextlink", default)]
    pub next_link: Option<String>,
}

/// The parts of a page `fetch` needs to page on: the next link and the row count.
#[derive(Deserialize)]
pub struct PageEnvelope {
    #[serde(deserialize_with = "lenient::count_items")]
    pub value: usize,
    #[serde(rename = "@odata.nextLink", alias = "@odata.nextlink", default)]
    pub next_link: Option<String>,
}

/// The parts of a machines page `fetch` needs: each machine's id and the next link.
#[derive(Deserialize)]
pub struct MachinesEnvelope<'a> {
    #[serde(borrow)]
    pub value: Vec<MachineId<'a>>,
    #[serde(rename = "@odata.nextLink", alias = "@odata.nextlink", default)]
    pub next_link: Option<String>,
}

/// Only the id of a machine.
#[derive(Deserialize)]
pub struct MachineId<'a> {
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "Id")]
    pub id: Option<Cow<'a, str>>,
}

/// A machine of `GET /api/machines` (docs/defender-api.md §5.3).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Machine<'a> {
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "Id")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "ComputerDnsName")]
    pub computer_dns_name: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "LastSeen")]
    pub last_seen: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "OsPlatform")]
    pub os_platform: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "Version")]
    pub version: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "OsBuild")]
    pub os_build: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "LastIpAddress")]
    pub last_ip_address: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "HealthStatus")]
    pub health_status: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "RbacGroupName")]
    pub rbac_group_name: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text_list", default, alias = "MachineTags")]
    pub machine_tags: Vec<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "ip_addresses", default, alias = "IpAddresses")]
    pub ip_addresses: Vec<IpAddressEntry<'a>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "MergedIntoMachineId")]
    pub merged_into_machine_id: Option<Cow<'a, str>>,
}

/// One network interface of a machine (`ipAddresses[]`, undocumented sub-fields).
#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IpAddressEntry<'a> {
    #[serde(borrow, deserialize_with = "lenient::text", default)]
    pub ip_address: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default)]
    pub mac_address: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default)]
    pub operational_status: Option<Cow<'a, str>>,
}

/// `ipAddresses` as objects, or as PowerShell-stringified hashtables
/// (`"@{ipAddress=10.0.0.1; macAddress=00FFA141158D; operationalStatus=Up; type=53}"`),
/// which some tools that relay Defender data produce; `null` reads as empty.
fn ip_addresses<'de, D>(deserializer: D) -> Result<Vec<IpAddressEntry<'de>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry<'a> {
        #[serde(borrow)]
        Object(IpAddressEntry<'a>),
        Text(String),
        Other(serde::de::IgnoredAny),
    }

    struct ListVisitor;
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<IpAddressEntry<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of network interfaces or null")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = seq.next_element::<Entry>()? {
                match entry {
                    Entry::Object(e) => out.push(e),
                    Entry::Text(text) => out.extend(parse_powershell_entry(&text)),
                    Entry::Other(_) => {}
                }
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(ListVisitor)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    deserializer.deserialize_any(ListVisitor)
}

/// Reads `@{ipAddress=…; macAddress=…; operationalStatus=…; type=…}`.
fn parse_powershell_entry(text: &str) -> Option<IpAddressEntry<'static>> {
    let inner = text.trim().strip_prefix("@{")?.strip_suffix('}')?;
    let mut entry = IpAddressEntry::default();
    for pair in inner.split(';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = (!value.is_empty()).then(|| Cow::Owned(value.to_owned()));
        match key.trim() {
            "ipAddress" => entry.ip_address = value,
            "macAddress" => entry.mac_address = value,
            "operationalStatus" => entry.operational_status = value,
            _ => {}
        }
    }
    Some(entry)
}

/// A row of `SoftwareVulnerabilitiesByMachine`: one device x software x CVE
/// (docs/defender-api.md §6.1). PascalCase aliases read the file export's rows.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityRow<'a> {
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "DeviceId")]
    pub device_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "CveId")]
    pub cve_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "VulnerabilitySeverityLevel")]
    pub vulnerability_severity_level: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "CvssScore")]
    pub cvss_score: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "FirstSeenTimestamp")]
    pub first_seen_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "LastSeenTimestamp")]
    pub last_seen_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "SoftwareVendor")]
    pub software_vendor: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "SoftwareName")]
    pub software_name: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "SoftwareVersion")]
    pub software_version: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "ExploitabilityLevel")]
    pub exploitability_level: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "RecommendedSecurityUpdate")]
    pub recommended_security_update: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "RecommendedSecurityUpdateId")]
    pub recommended_security_update_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "RecommendedSecurityUpdateUrl")]
    pub recommended_security_update_url: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text_list", default, alias = "DiskPaths")]
    pub disk_paths: Vec<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text_list", default, alias = "RegistryPaths")]
    pub registry_paths: Vec<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_fields_tolerate_numbers_nulls_and_extra_keys() {
        let json = r#"{"id":"abc","osBuild":19045,"rbacGroupId":140,"rbacGroupName":null,
            "machineTags":null,"ipAddresses":null,"extraKey":{"nested":[1,2]}}"#;
        let m: Machine = serde_json::from_str(json).unwrap();
        assert_eq!(m.id.as_deref(), Some("abc"));
        assert_eq!(m.os_build.as_deref(), Some("19045"));
        assert_eq!(m.rbac_group_name, None);
        assert!(m.machine_tags.is_empty());
        assert!(m.ip_addresses.is_empty());
    }

    #[test]
    fn powershell_stringified_interfaces_are_read() {
        let json = r#"{"ipAddresses":["@{ipAddress=10.0.0.5; macAddress=00FFA141158D; operationalStatus=Up; type=53}",
            "@{ipAddress=fe80::1; macAddress=; operationalStatus=Down; type=24}"]}"#;
        let m: Machine = serde_json::from_str(json).unwrap();
        assert_eq!(m.ip_addresses.len(), 2);
        assert_eq!(m.ip_addresses[0].ip_address.as_deref(), Some("10.0.0.5"));
        assert_eq!(m.ip_addresses[0].mac_address.as_deref(), Some("00FFA141158D"));
        assert_eq!(m.ip_addresses[0].operational_status.as_deref(), Some("Up"));
        assert_eq!(m.ip_addresses[1].mac_address, None);
    }

    #[test]
    fn pascal_case_rows_read_like_camel_case() {
        let json = r#"{"DeviceId":"d1","CveId":"CVE-2024-1","VulnerabilitySeverityLevel":"High",
            "CvssScore":"7.5","DiskPaths":null}"#;
        let r: VulnerabilityRow = serde_json::from_str(json).unwrap();
        assert_eq!(r.device_id.as_deref(), Some("d1"));
        assert_eq!(r.cve_id.as_deref(), Some("CVE-2024-1"));
        assert_eq!(r.vulnerability_severity_level.as_deref(), Some("High"));
        assert_eq!(r.cvss_score.as_deref(), Some("7.5"));
        assert!(r.disk_paths.is_empty());
    }

    #[test]
    fn envelope_counts_rows_and_reads_next_link() {
        let json = r#"{"@odata.context":"x","value":[{"a":1},{"b":[2]},3],"@odata.nextLink":"https://h/next"}"#;
        let e: PageEnvelope = serde_json::from_str(json).unwrap();
        assert_eq!(e.value, 3);
        assert_eq!(e.next_link.as_deref(), Some("https://h/next"));
    }
}
