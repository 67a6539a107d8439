//! Hostile input: random and mutated pages never panic, and every row of a readable
//! page is accounted for: mapped, or skipped with a reason.

use plugin_defender::mapping::{self, Mapped};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value, biased towards the shapes Defender sends and gets wrong.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        prop_oneof![
            Just("".to_string()),
            Just("CVE-2024-12345".to_string()),
            Just("TVM-2020-0002".to_string()),
            Just("2020-11-03 10:13:34.8476880".to_string()),
            Just("2021-01-25T07:27:36.052313Z".to_string()),
            Just("00-0C-29-92-A6-43".to_string()),
            Just("@{ipAddress=10.0.0.1; macAddress=00FFA141158D; operationalStatus=Up}".to_string()),
            Just("\u{feff}".to_string()),
            ".{0,24}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

const ROW_KEYS: &[&str] = &[
    "deviceId",
    "DeviceId",
    "cveId",
    "CveId",
    "vulnerabilitySeverityLevel",
    "cvssScore",
    "firstSeenTimestamp",
    "lastSeenTimestamp",
    "softwareVendor",
    "softwareName",
    "softwareVersion",
    "exploitabilityLevel",
    "recommendedSecurityUpdate",
    "recommendedSecurityUpdateId",
    "diskPaths",
    "registryPaths",
];
const MACHINE_KEYS: &[&str] = &[
    "id",
    "computerDnsName",
    "lastSeen",
    "osPlatform",
    "version",
    "osBuild",
    "lastIpAddress",
    "healthStatus",
    "rbacGroupName",
    "machineTags",
    "ipAddresses",
    "mergedIntoMachineId",
];

/// An object with a random subset of the known keys, each with any value, plus noise.
fn object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((prop::sample::select(keys), any_json()), 0..12),
        prop::collection::vec((".{1,6}", any_json()), 0..3),
    )
        .prop_map(|(known, extra)| {
            let mut m = Map::new();
            for (k, v) in known {
                m.insert(k.to_string(), v);
            }
            for (k, v) in extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

/// A page of rows, some of which are not even objects.
fn page(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![4 => object(keys), 1 => any_json()], 0..20)
        .prop_map(|rows| serde_json::to_vec(&json!({"@odata.context": "x", "value": rows})).unwrap())
}

fn accounted(m: &Mapped, mapped: usize) -> bool {
    m.rows == mapped as u64 + m.skipped.values().sum::<u64>()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = mapping::map_machines_page(&bytes);
        let _ = mapping::map_vulnerabilities_page(&bytes);
        let _ = mapping::map_export_file(&bytes);
    }

    #[test]
    fn every_vulnerability_row_maps_or_is_skipped_with_a_reason(body in page(ROW_KEYS)) {
        let m = mapping::map_vulnerabilities_page(&body).expect("a page with a value list is readable");
        prop_assert!(accounted(&m, m.vulnerabilities.len()), "rows {} mapped {} skipped {:?}", m.rows, m.vulnerabilities.len(), m.skipped);
        for v in &m.vulnerabilities {
            prop_assert!(!v.asset_key.trim().is_empty() && !v.identifier.trim().is_empty());
            prop_assert!(v.score <= 10);
        }
    }

    #[test]
    fn every_machine_maps_or_is_skipped_with_a_reason(body in page(MACHINE_KEYS)) {
        let m = mapping::map_machines_page(&body).expect("a page with a value list is readable");
        prop_assert!(accounted(&m, m.assets.len()), "rows {} mapped {} skipped {:?}", m.rows, m.assets.len(), m.skipped);
        for a in &m.assets {
            if let Some(mac) = &a.locators.mac_address {
                prop_assert_eq!(mac.len(), 17);
                prop_assert!(mac != "00:00:00:00:00:00");
            }
        }
    }

    #[test]
    fn mutated_pages_never_panic(body in page(ROW_KEYS), cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = body;
        for (at, byte) in cuts {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match byte % 3 {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        if let Ok(m) = mapping::map_vulnerabilities_page(&bytes) {
            prop_assert!(accounted(&m, m.vulnerabilities.len()));
        }
        let _ = mapping::map_machines_page(&bytes);
    }
}
