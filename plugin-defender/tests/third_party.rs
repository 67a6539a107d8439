//! The mapping against sample data written by other projects (see
//! `tests/fixtures/third-party/SOURCES.md`): real shapes and quirks nobody here wrote.

use plugin_defender::mapping::{self, Mapped};
use std::path::PathBuf;

fn fixture(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/third-party").join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

fn machines(path: &str) -> Mapped {
    mapping::map_machines_page(&fixture(path)).unwrap()
}

#[test]
fn defectdojo_machines_with_junk_timestamps_null_names_and_dash_macs() {
    let m = machines("defectdojo/defender/machines/machines.json");
    assert_eq!(m.rows, 2);
    assert_eq!(m.assets.len(), 2, "junk timestamps do not drop a device");
    let first = &m.assets[0];
    assert_eq!(first.key, "wjeriowerjoiewrjoweirjeowij");
    assert_eq!(first.locators.hostname, None, "computerDnsName is null");
    assert_eq!(first.locators.ip_address.as_deref(), Some("1.1.1.1"));
    assert_eq!(first.locators.mac_address, None, "the last IP's interface is not Up");
    assert!(first.last_seen.is_none(), "`1999-10-sdffew` is not a time");
    assert_eq!(first.os.as_deref(), Some("Other"));
    assert_eq!(first.os_version.as_deref(), Some("Other"));
    assert_eq!(first.tags, ["rbacGroup: UnassignedGroup"]);

    let second = &m.assets[1];
    assert_eq!(second.locators.fqdn.as_deref(), Some("afjweiofwejfio.com"));
    assert_eq!(second.locators.hostname.as_deref(), Some("afjweiofwejfio"));
    assert_eq!(second.locators.netbios.as_deref(), Some("afjweiofwejfio"));
    assert_eq!(second.locators.mac_address, None, "no interface carries the last IP 1.1.1.1");
    assert_eq!(second.os_version.as_deref(), Some("123123 (build 123)"), "osBuild arrives as a number");
    assert_eq!(second.tags, ["rbacGroup: NOOOOOOO"]);
    assert_eq!(m.notes.get(mapping::UNREADABLE_LAST_SEEN), Some(&2));
}

#[test]
fn powershell_stringified_interfaces_give_the_up_interface_mac() {
    let m = machines("defectdojo/defender_error_handling/machines/machines.json");
    let a = &m.assets[0];
    assert_eq!(a.locators.external_id.as_deref(), Some("e20d13ec6aff01641f3a6e23ea4053ce41f7c188"));
    assert_eq!(a.locators.ip_address.as_deref(), Some("192.168.1.3"));
    // 192.168.1.3 is on the Up wireless interface 703217149CAE, not on the down ones.
    assert_eq!(a.locators.mac_address.as_deref(), Some("70:32:17:14:9C:AE"));
    assert_eq!(a.locators.hostname.as_deref(), Some("dvs-cstancu"));
    assert_eq!(a.locators.fqdn, None, "a bare host name is no FQDN");
    assert_eq!(a.os_version.as_deref(), Some("23H2 (build 22631)"));
    assert!(a.tags.is_empty(), "no tags and a null rbacGroupName");
    assert!(a.last_seen.is_some());
}

#[test]
fn host_names_that_are_not_dns_names_are_kept_verbatim() {
    let m = machines("defectdojo/issue_11217/machines/machines.json");
    let a = &m.assets[0];
    assert_eq!(a.locators.hostname.as_deref(), Some("Max_Mustermann_iPad Air (17zoll) (2nd generation)"));
    assert_eq!(a.locators.fqdn, None);
}

#[test]
fn ibm_2019_machines_without_interfaces_and_with_stray_keys() {
    let m = machines("ibm-cp4s-car-atp/vm_details_log.json");
    assert!(!m.assets.is_empty());
    assert_eq!(m.assets.len() as u64, m.rows - m.skipped.values().sum::<u64>());
    for a in &m.assets {
        assert_eq!(a.locators.mac_address, None, "no ipAddresses key, so no MAC");
        assert!(a.tags.iter().all(|t| !t.starts_with("rbacGroup")), "rbacGroupName is null");
    }
}

#[test]
fn rows_of_another_endpoint_are_skipped_and_counted_not_crashed_on() {
    // machinesVulnerabilities rows carry `machineId`, not `deviceId`.
    let m = mapping::map_vulnerabilities_page(&fixture(
        "defectdojo/defender_error_handling/vulnerabilities/vulnerabilities.json",
    ))
    .unwrap();
    assert!(m.rows > 400);
    assert!(m.vulnerabilities.is_empty());
    assert_eq!(m.skipped.get("vulnerability row without deviceId"), Some(&m.rows));
}

#[test]
fn an_empty_page_with_a_next_link_maps_to_nothing() {
    let m = mapping::map_vulnerabilities_page(&fixture("defectdojo/report_no_vuln.json")).unwrap();
    assert_eq!((m.rows, m.vulnerabilities.len()), (0, 0));
}

#[test]
fn an_advanced_hunting_result_is_not_a_page() {
    let err = mapping::map_vulnerabilities_page(&fixture("ibm-cp4s-car-atp/machine_vuln_details.json")).unwrap_err();
    assert!(err.0.contains("`value`"), "{}", err.0);
}

/// Microsoft's own example records of the vulnerability catalogue, mapped to the
/// definitions a run writes.
#[test]
fn microsoft_docs_catalogue_records_become_described_definitions() {
    use plugin_defender::catalogue;
    let records = catalogue::parse_page(&fixture("microsoft-docs/get-all-vulnerabilities.json")).unwrap();
    assert_eq!(records.len(), 1);
    let entry = records[0].entry().unwrap();
    assert_eq!(entry.id, "CVE-2019-0608");
    let definition = entry.definition();
    assert_eq!(definition.name, "CVE-2019-0608");
    assert_eq!(definition.cve_ids, ["CVE-2019-0608"]);
    let text = definition.description.unwrap();
    assert!(text
        .starts_with("A spoofing vulnerability exists when Microsoft Browsers does not properly parse HTTP content."));
    assert!(text.ends_with(
        "parses HTTP responses.\n\nDefender TVM: CVSS v3 4.3 (CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C); EPSS unknown; public exploit no; verified exploit no; exploit kit no; exploit types none; published 2019-10-08."
    ));

    // The entity form has no `value` and no vector; its summary says so.
    let one: catalogue::Record =
        serde_json::from_slice(&fixture("microsoft-docs/get-vulnerability-by-id.json")).unwrap();
    let text = one.entry().unwrap().description;
    assert!(text.ends_with("Defender TVM: CVSS v3 4.3; EPSS unknown; public exploit no; verified exploit no; exploit kit no; exploit types none; published 2019-10-08."), "{text}");

    let listed = catalogue::parse_page(&fixture("microsoft-docs/get-discovered-vulnerabilities.json")).unwrap();
    let entry = listed[0].entry().unwrap();
    assert_eq!(entry.id, "CVE-2019-1348");
    assert!(entry.description.starts_with("Git could allow a remote attacker to bypass security restrictions"));
    assert!(entry.description.contains("published 2019-12-13."));
}
