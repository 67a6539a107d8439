//! Scoping a tenant end to end: device groups by name, a minimum severity with a
//! per-group override, device attributes as tags, against a simulated tenant with
//! more active devices than a page of `/api/machines`, so a scoped listing must
//! still read every page.

use connector_e2e::{artifacts, kdi, oracle};
use connector_host::config::ConnectorConfig;
use connector_host::engine::{PluginHost, SessionOptions};
use connector_host::run::{self, RunOptions};
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use std::collections::{BTreeMap, BTreeSet};

const MACHINES_PAGE_SIZE: usize = 20;

#[test]
fn only_the_groups_asked_for_from_the_severity_asked_for_with_their_attributes_as_tags() {
    let sim = DefenderSim::start(TenantSpec { seed: 71, devices: 90, rows: 1_500 }, SimOptions::default()).unwrap();
    let scoping = format!(
        "machines_page_size = {MACHINES_PAGE_SIZE}\npage_size = 400\n\
         device_groups = \"workstations, Servers EU\"\nexclude_device_groups = \"SERVERS EU\"\n\
         min_severity = \"medium\"\nmin_severity_by_group = \"Workstations=high; Kiosks=low\"\n\
         tag_exposure_level = true\ntag_agent_version = true\n"
    );
    let config = ConnectorConfig::parse(&format!("{}{scoping}", sim.config_toml()), &|_| None).unwrap();
    let host = PluginHost::new().unwrap();
    let plugin = host.load(&artifacts::plugin("plugin_defender")).unwrap();
    let out = kdi::temp_dir("scoping");
    let summary = run::run(
        &host,
        &plugin,
        &config,
        SessionOptions { allow_insecure_loopback: true, ..Default::default() },
        &RunOptions { out_dir: out.clone(), ..Default::default() },
    )
    .unwrap();

    let tenant = sim.tenant();
    let expected = oracle::expected(&tenant);
    let active: Vec<_> = tenant.active_machines().collect();
    assert!(active.len() > 3 * MACHINES_PAGE_SIZE, "more active devices than a page: {}", active.len());
    let workstations: BTreeMap<&str, _> =
        active.iter().filter(|m| m.rbac_group_name == Some("Workstations")).map(|m| (m.id.as_str(), *m)).collect();
    assert!(!workstations.is_empty() && workstations.len() < active.len());

    // Every page of the listing was read, though most devices are out of scope.
    assert_eq!(sim.calls()["machines"] as usize, active.len() / MACHINES_PAGE_SIZE + 1);
    assert_eq!(summary.counters["devices fetched"], active.len() as u64);
    assert_eq!(
        summary.skipped["device outside the connector's device groups"],
        (active.len() - workstations.len()) as u64
    );
    assert!(summary.skipped["vulnerability below the connector's minimum severity"] > 0);

    let mut written = BTreeMap::new();
    for (name, file) in kdi::read_dir(&out) {
        kdi::assert_valid(&name, &file);
        for a in file["assets"].as_array().unwrap() {
            written.insert(a["external_id"].as_str().unwrap().to_owned(), a.clone());
        }
    }
    assert_eq!(
        written.keys().map(String::as_str).collect::<Vec<_>>(),
        workstations.keys().copied().collect::<Vec<_>>()
    );
    for (id, asset) in &written {
        let machine = workstations[id.as_str()];
        let want = &expected.assets[id];
        // Workstations' own minimum (high) replaces the global one (medium).
        let want_vulns: BTreeMap<&str, u64> =
            want.vulns.iter().filter(|(_, v)| v.score >= 8).map(|(cve, v)| (cve.as_str(), v.score)).collect();
        let got: BTreeMap<&str, u64> = asset["vulns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["scanner_identifier"].as_str().unwrap(), v["scanner_score"].as_u64().unwrap()))
            .collect();
        assert_eq!(got, want_vulns, "{id}");
        let tags: BTreeSet<&str> = asset["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let exposure = format!("exposureLevel: {}", machine.exposure_level);
        let agent = format!("agentVersion: {}", machine.agent_version);
        assert!(tags.contains(exposure.as_str()) && tags.contains(agent.as_str()), "{id}: {tags:?}");
        assert!(!tags.iter().any(|t| t.starts_with("riskScore:")), "not asked for: {tags:?}");
        for tag in &want.tags {
            assert!(tags.contains(tag.as_str()), "{id} keeps {tag}");
        }
    }
}

#[test]
fn a_scoping_setting_that_cannot_be_read_is_refused_with_its_field() {
    let sim = DefenderSim::start(TenantSpec { seed: 72, devices: 5, rows: 10 }, SimOptions::default()).unwrap();
    let host = PluginHost::new().unwrap();
    let plugin = host.load(&artifacts::plugin("plugin_defender")).unwrap();
    for (line, field, words) in [
        ("min_severity = \"severe\"\n", "min_severity", "severe"),
        ("min_severity_by_group = \"Servers\"\n", "min_severity_by_group", "group=severity"),
        ("min_severity_by_group = \"Servers=urgent\"\n", "min_severity_by_group", "urgent"),
    ] {
        let config = ConnectorConfig::parse(&format!("{}{line}", sim.config_toml()), &|_| None).unwrap();
        let err = run::run(
            &host,
            &plugin,
            &config,
            SessionOptions { allow_insecure_loopback: true, ..Default::default() },
            &RunOptions { out_dir: kdi::temp_dir("scoping-refused"), ..Default::default() },
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(field) && text.contains(words), "{line}: {text}");
    }
}
