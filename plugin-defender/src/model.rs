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

/// A machine of `GET /api/machines` (docs/defender-api.md, "Machines").
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
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "ExposureLevel")]
    pub exposure_level: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "RiskScore")]
    pub risk_score: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "OnboardingStatus")]
    pub onboarding_status: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "lenient::text", default, alias = "AgentVersion")]
    pub agent_version: Option<Cow<'a, str>>,
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
/// (docs/defender-api.md, "Vulnerabilities"). The file export's rows use PascalCase keys.
///
/// Deserialized by hand rather than derived: a key that appears twice keeps its
/// last value instead of failing (a derived struct rejects duplicates, which would
/// fail a whole page now that rows are read in the page's single pass), and every
/// field is read leniently, so an object always reads as a row.
#[derive(Default)]
pub struct VulnerabilityRow<'a> {
    pub device_id: Option<Cow<'a, str>>,
    pub cve_id: Option<Cow<'a, str>>,
    pub vulnerability_severity_level: Option<Cow<'a, str>>,
    pub cvss_score: Option<Cow<'a, str>>,
    pub first_seen_timestamp: Option<Cow<'a, str>>,
    pub last_seen_timestamp: Option<Cow<'a, str>>,
    pub software_vendor: Option<Cow<'a, str>>,
    pub software_name: Option<Cow<'a, str>>,
    pub software_version: Option<Cow<'a, str>>,
    pub exploitability_level: Option<Cow<'a, str>>,
    pub recommended_security_update: Option<Cow<'a, str>>,
    pub recommended_security_update_id: Option<Cow<'a, str>>,
    pub recommended_security_update_url: Option<Cow<'a, str>>,
    pub disk_paths: Vec<Cow<'a, str>>,
    pub registry_paths: Vec<Cow<'a, str>>,
    /// Delta export only: the row's `Id` (device, software, version, CVE).
    pub id: Option<Cow<'a, str>>,
    /// Delta export only: when the change happened.
    pub event_timestamp: Option<Cow<'a, str>>,
    /// Delta export only: `New`, `Fixed` or `Updated`.
    pub status: Option<Cow<'a, str>>,
    /// The device's group, for a minimum severity per group.
    pub rbac_group_name: Option<Cow<'a, str>>,
}

/// The row fields the mapping reads, by their camelCase (API) or PascalCase
/// (export) key; every other key is skipped without being built.
enum RowField {
    DeviceId,
    CveId,
    Severity,
    Cvss,
    FirstSeen,
    LastSeen,
    Vendor,
    Name,
    Version,
    Exploitability,
    Update,
    UpdateId,
    UpdateUrl,
    DiskPaths,
    RegistryPaths,
    Id,
    EventTimestamp,
    Status,
    Group,
    Other,
}

impl<'de> Deserialize<'de> for RowField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = RowField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<RowField, E> {
                Ok(match key {
                    "deviceId" | "DeviceId" => RowField::DeviceId,
                    "cveId" | "CveId" => RowField::CveId,
                    "vulnerabilitySeverityLevel" | "VulnerabilitySeverityLevel" => RowField::Severity,
                    "cvssScore" | "CvssScore" => RowField::Cvss,
                    "firstSeenTimestamp" | "FirstSeenTimestamp" => RowField::FirstSeen,
                    "lastSeenTimestamp" | "LastSeenTimestamp" => RowField::LastSeen,
                    "softwareVendor" | "SoftwareVendor" => RowField::Vendor,
                    "softwareName" | "SoftwareName" => RowField::Name,
                    "softwareVersion" | "SoftwareVersion" => RowField::Version,
                    "exploitabilityLevel" | "ExploitabilityLevel" => RowField::Exploitability,
                    "recommendedSecurityUpdate" | "RecommendedSecurityUpdate" => RowField::Update,
                    "recommendedSecurityUpdateId" | "RecommendedSecurityUpdateId" => RowField::UpdateId,
                    "recommendedSecurityUpdateUrl" | "RecommendedSecurityUpdateUrl" => RowField::UpdateUrl,
                    "diskPaths" | "DiskPaths" => RowField::DiskPaths,
                    "registryPaths" | "RegistryPaths" => RowField::RegistryPaths,
                    "id" | "Id" => RowField::Id,
                    "eventTimestamp" | "EventTimestamp" => RowField::EventTimestamp,
                    "status" | "Status" => RowField::Status,
                    "rbacGroupName" | "RbacGroupName" => RowField::Group,
                    _ => RowField::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> Deserialize<'de> for VulnerabilityRow<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = VulnerabilityRow<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a vulnerability row object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut row = VulnerabilityRow::default();
                while let Some(field) = map.next_key::<RowField>()? {
                    let text = match field {
                        RowField::DeviceId => &mut row.device_id,
                        RowField::CveId => &mut row.cve_id,
                        RowField::Severity => &mut row.vulnerability_severity_level,
                        RowField::Cvss => &mut row.cvss_score,
                        RowField::FirstSeen => &mut row.first_seen_timestamp,
                        RowField::LastSeen => &mut row.last_seen_timestamp,
                        RowField::Vendor => &mut row.software_vendor,
                        RowField::Name => &mut row.software_name,
                        RowField::Version => &mut row.software_version,
                        RowField::Exploitability => &mut row.exploitability_level,
                        RowField::Update => &mut row.recommended_security_update,
                        RowField::UpdateId => &mut row.recommended_security_update_id,
                        RowField::UpdateUrl => &mut row.recommended_security_update_url,
                        RowField::Id => &mut row.id,
                        RowField::EventTimestamp => &mut row.event_timestamp,
                        RowField::Status => &mut row.status,
                        RowField::Group => &mut row.rbac_group_name,
                        RowField::DiskPaths => {
                            row.disk_paths = map.next_value::<lenient::LenientList>()?.0;
                            continue;
                        }
                        RowField::RegistryPaths => {
                            row.registry_paths = map.next_value::<lenient::LenientList>()?.0;
                            continue;
                        }
                        RowField::Other => {
                            map.next_value::<de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *text = map.next_value::<lenient::Lenient>()?.0;
                }
                Ok(row)
            }
        }
        deserializer.deserialize_map(RowVisitor)
    }
}

/// Reads an OData page in one pass over its body, calling `each` with every element
/// of its `value` list as it is parsed: `Some` for an object, `None` for anything
/// else (which the mapping counts and skips). No list of rows is built, and no row
/// is scanned twice. Fails when the body is not JSON, or not an object with one
/// `value` list.
pub fn for_each_row<'de, T, F>(body: &'de [u8], each: F) -> Result<(), serde_json::Error>
where
    T: Deserialize<'de>,
    F: FnMut(Option<T>),
{
    // Checking the page's UTF-8 once is much cheaper than serde_json checking each
    // string it borrows from a byte slice (that was 14% of the mapping's time); a
    // page that is not UTF-8 takes the checking way, to fail or not exactly as before.
    match std::str::from_utf8(body) {
        Ok(text) => rows_of(serde_json::Deserializer::from_str(text), each),
        Err(_) => rows_of(serde_json::Deserializer::from_slice(body), each),
    }
}

fn rows_of<'de, R, T, F>(mut deserializer: serde_json::Deserializer<R>, each: F) -> Result<(), serde_json::Error>
where
    R: serde_json::de::Read<'de>,
    T: Deserialize<'de>,
    F: FnMut(Option<T>),
{
    use serde::de::DeserializeSeed;
    PageSeed { each, row: std::marker::PhantomData }.deserialize(&mut deserializer)?;
    deserializer.end()
}

struct PageSeed<T, F> {
    each: F,
    row: std::marker::PhantomData<fn() -> T>,
}

impl<'de, T: Deserialize<'de>, F: FnMut(Option<T>)> de::DeserializeSeed<'de> for PageSeed<T, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(Option<T>)> Visitor<'de> for PageSeed<T, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OData page object")
    }
    fn visit_map<A: de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen_value = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key != "value" {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            if seen_value {
                return Err(de::Error::duplicate_field("value"));
            }
            seen_value = true;
            map.next_value_seed(RowsSeed { each: &mut self.each, row: self.row })?;
        }
        if !seen_value {
            return Err(de::Error::missing_field("value"));
        }
        Ok(())
    }
}

struct RowsSeed<'f, T, F> {
    each: &'f mut F,
    row: std::marker::PhantomData<fn() -> T>,
}

impl<'de, T: Deserialize<'de>, F: FnMut(Option<T>)> de::DeserializeSeed<'de> for RowsSeed<'_, T, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(Option<T>)> Visitor<'de> for RowsSeed<'_, T, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a `value` list")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(row) = seq.next_element::<MaybeObject<T>>()? {
            (self.each)(row.0);
        }
        Ok(())
    }
}

/// A list element that should be an object; anything else reads as `None`.
struct MaybeObject<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MaybeObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ElementVisitor<T>(std::marker::PhantomData<fn() -> T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ElementVisitor<T> {
            type Value = MaybeObject<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|row| MaybeObject(Some(row)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(MaybeObject(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
        }
        deserializer.deserialize_any(ElementVisitor(std::marker::PhantomData))
    }
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
    fn a_repeated_row_key_keeps_its_last_value_and_unknown_keys_are_skipped() {
        let json = r#"{"deviceId":"d1","DeviceId":"d2","extra":{"a":[1,{"b":2}]},"diskPaths":"C:\\x.exe"}"#;
        let r: VulnerabilityRow = serde_json::from_str(json).unwrap();
        assert_eq!(r.device_id.as_deref(), Some("d2"));
        assert_eq!(r.disk_paths, ["C:\\x.exe"]);
        assert!(serde_json::from_str::<VulnerabilityRow>("[1]").is_err(), "a row is an object");
        let odd_lists = r#"{"deviceId":"d1","diskPaths":{"path":"C:\\x"},"registryPaths":5}"#;
        let r: VulnerabilityRow = serde_json::from_str(odd_lists).unwrap();
        assert!(r.disk_paths.is_empty(), "an object where a list belongs carries nothing");
        assert_eq!(r.registry_paths, ["5"], "a number where a list belongs is one item");
    }

    #[test]
    fn rows_are_streamed_from_the_value_list_in_one_pass() {
        let body = br#"{"@odata.context":"x","value":[{"deviceId":"a"},7,"s",null,[1],{"cveId":"CVE-2024-1"}],"@odata.nextLink":"n"}"#;
        let mut seen = Vec::new();
        for_each_row(body, |row: Option<VulnerabilityRow>| {
            seen.push(row.map(|r| (r.device_id.map(Cow::into_owned), r.cve_id.map(Cow::into_owned))))
        })
        .unwrap();
        assert_eq!(
            seen,
            [Some((Some("a".to_owned()), None)), None, None, None, None, Some((None, Some("CVE-2024-1".to_owned())))]
        );
        let count = |body: &[u8]| {
            let mut n = 0;
            for_each_row(body, |_: Option<VulnerabilityRow>| n += 1).map(|()| n)
        };
        assert!(count(br#"{"context":1}"#).unwrap_err().to_string().contains("missing field `value`"));
        assert!(count(br#"{"value":[],"value":[]}"#).unwrap_err().to_string().contains("duplicate field `value`"));
        assert!(count(br#"{"value":3}"#).is_err());
        assert!(count(br#"[{"deviceId":"a"}]"#).is_err());
        assert!(count(br#"{"value":[{"deviceId":"a"}]} trailing"#).is_err());
        assert!(count(br#"{"value":[{"deviceId":"a"},{"deviceId":"#).is_err(), "a cut page fails as a whole");
    }

    #[test]
    fn envelope_counts_rows_and_reads_next_link() {
        let json = r#"{"@odata.context":"x","value":[{"a":1},{"b":[2]},3],"@odata.nextLink":"https://h/next"}"#;
        let e: PageEnvelope = serde_json::from_str(json).unwrap();
        assert_eq!(e.value, 3);
        assert_eq!(e.next_link.as_deref(), Some("https://h/next"));
    }
}
