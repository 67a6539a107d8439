//! The Defender plugin in the host library against a simulated tenant: the KDI
//! output checked record by record against the specification's mapping.

use connector_e2e::{artifacts, kdi, oracle};
use connector_host::config::ConnectorConfig;
use connector_host::engine::{PluginHost, SessionOptions};
use connector_host::run::UNKNOWN_ASSET;
use connector_host::run::{self, RunOptions};
use connector_simulators::defender::{catalogue, DefenderSim, SimOptions, TenantSpec};
use std::collections::{BTreeMap, BTreeSet};

const DEVICES: usize = 250;
const ROWS: u64 = 6_000;
const PAGE_SIZE: u64 = 1_000;
const MACHINES_PAGE_SIZE: usize = 100;
const ASSETS_PER_FILE: usize = 40;

#[test]
fn run_writes_every_record_as_the_spec_maps_it() {
    let sim = DefenderSim::start(TenantSpec { seed: 7, devices: DEVICES, rows: ROWS }, SimOptions::default()).unwrap();
    let config = ConnectorConfig::parse(
        &format!("{}page_size = {PAGE_SIZE}\nmachines_page_size = {MACHINES_PAGE_SIZE}\n", sim.config_toml()),
        &|_| None,
    )
    .unwrap();
    let host = PluginHost::new().unwrap();
    let plugin = host.load(&artifacts::plugin("plugin_defender")).unwrap();
    let out = kdi::temp_dir("record-by-record");
    let summary = run::run(
        &host,
        &plugin,
        &config,
        SessionOptions { allow_insecure_loopback: true, ..Default::default() },
        &RunOptions { out_dir: out.clone(), assets_per_file: ASSETS_PER_FILE, ..Default::default() },
    )
    .unwrap();

    let expected = oracle::expected(&sim.tenant());
    let files = kdi::read_dir(&out);

    // Each active asset exactly once, in files of at most ASSETS_PER_FILE assets.
    let mut actual = BTreeMap::new();
    for (name, file) in &files {
        kdi::assert_valid(name, file);
        assert_eq!(file["version"], 2, "{name}");
        assert_eq!(file["skip_autoclose"], false, "{name}");
        let assets = file["assets"].as_array().unwrap();
        assert!(!assets.is_empty() && assets.len() <= ASSETS_PER_FILE, "{name} has {} assets", assets.len());
        let def_names: BTreeSet<&str> =
            file["vuln_defs"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
        for a in assets {
            for v in a["vulns"].as_array().unwrap() {
                assert_eq!(v["status"], "open");
                assert_eq!(v["scanner_type"], "MS Defender TVM");
                let def_name = v["vuln_def_name"].as_str().unwrap();
                assert!(
                    def_names.contains(def_name),
                    "{name}: vuln_def_name {def_name} has no vuln_def in the same file"
                );
            }
            let parsed = oracle::actual_asset(a);
            assert!(actual.insert(parsed.external_id.clone(), parsed).is_none(), "an asset appears twice");
        }
        for d in file["vuln_defs"].as_array().unwrap() {
            let id = d["scanner_identifier"].as_str().unwrap();
            // Named and described from Defender's catalogue.
            let record = sim.tenant().catalogue_record(id).unwrap_or_else(|| panic!("{id} is in the catalogue"));
            assert_eq!(d["name"], record["name"]);
            let description = d["description"].as_str().unwrap_or_else(|| panic!("{id} has a description"));
            assert!(description.starts_with(record["description"].as_str().unwrap()), "{description}");
            assert!(description.contains("\n\nDefender TVM: CVSS v3 "), "{description}");
            match id.starts_with("CVE-") {
                true => assert_eq!(d["cve_identifiers"], id),
                false => assert!(d.get("cve_identifiers").is_none(), "{id} is not a CVE"),
            }
        }
    }
    assert_eq!(files.len(), expected.assets.len().div_ceil(ASSETS_PER_FILE));
    assert_eq!(actual.keys().collect::<Vec<_>>(), expected.assets.keys().collect::<Vec<_>>());
    for (id, want) in &expected.assets {
        assert_eq!(&actual[id], want, "asset {id}");
    }
    assert!(expected.assets.values().any(|a| a.vulns.is_empty()), "the tenant has clean devices, sent with no vulns");
    assert!(
        expected.assets.values().any(|a| a.vulns.values().any(|v| v.software.len() > 1)),
        "merged rows are exercised"
    );

    // The summary agrees with the tenant.
    assert_eq!(summary.counters["devices fetched"], expected.assets.len() as u64);
    assert_eq!(summary.counters["vulnerability rows fetched"], ROWS);
    assert_eq!(summary.skipped["vulnerability row without cveId"], expected.rows_without_cve);
    assert_eq!(summary.skipped[UNKNOWN_ASSET], expected.rows_of_unknown_devices);
    assert_eq!(summary.assets_written, expected.assets.len());
    assert_eq!(summary.vulnerabilities_written, expected.assets.values().map(|a| a.vulns.len()).sum::<usize>());
    assert_eq!(summary.files_written.len(), files.len());

    // The minimum calls: one token, full machine pages plus the short one, and
    // one call per vulnerability page.
    let active = expected.assets.len();
    let calls = sim.calls();
    assert_eq!(calls["token"], 1);
    assert_eq!(calls["machines"] as usize, active / MACHINES_PAGE_SIZE + 1);
    assert_eq!(calls["vulnerabilities"], ROWS.div_ceil(PAGE_SIZE));
    // The whole catalogue in pages of 8,000, ended by an empty page.
    assert_eq!(calls["catalogue"], catalogue::len().div_ceil(catalogue::MAX_TOP as u64) + 1);
    assert_eq!(summary.counters["catalogue records read"], catalogue::len());
    assert_eq!(summary.api_calls, calls.values().sum::<u64>());
}

#[test]
fn a_second_run_replaces_the_files_of_the_first() {
    let sim = DefenderSim::start(TenantSpec { seed: 11, devices: 60, rows: 500 }, SimOptions::default()).unwrap();
    let config = ConnectorConfig::parse(&sim.config_toml(), &|_| None).unwrap();
    let host = PluginHost::new().unwrap();
    let plugin = host.load(&artifacts::plugin("plugin_defender")).unwrap();
    let out = kdi::temp_dir("rerun");
    let session = || SessionOptions { allow_insecure_loopback: true, ..Default::default() };
    run::run(
        &host,
        &plugin,
        &config,
        session(),
        &RunOptions { out_dir: out.clone(), assets_per_file: 5, ..Default::default() },
    )
    .unwrap();
    assert!(kdi::read_dir(&out).len() > 2);
    std::fs::write(out.join("notes.txt"), "kept").unwrap();
    let summary = run::run(
        &host,
        &plugin,
        &config,
        session(),
        &RunOptions { out_dir: out.clone(), assets_per_file: 1000, ..Default::default() },
    )
    .unwrap();
    let files = kdi::read_dir(&out);
    assert_eq!(files.len(), 1, "files of the earlier run are removed");
    assert_eq!(files[0].1["assets"].as_array().unwrap().len(), summary.assets_written);
    assert!(out.join("notes.txt").exists(), "files the host does not own are left alone");
}

#[test]
fn mapping_on_several_instances_writes_the_same_files_as_on_one() {
    let sim = DefenderSim::start(TenantSpec { seed: 12, devices: 150, rows: 6_000 }, SimOptions::default()).unwrap();
    let text = format!("{}page_size = 400\nrate_limits = \"off\"\n", sim.config_toml());
    let config = ConnectorConfig::parse(&text, &|_| None).unwrap();
    let host = PluginHost::new().unwrap();
    let plugin = host.load(&artifacts::plugin("plugin_defender")).unwrap();
    assert!(plugin.info.independent_pages, "the Defender plugin declares independent pages");
    let session = || SessionOptions { allow_insecure_loopback: true, ..Default::default() };
    let run_on = |instances: usize| {
        let out = kdi::temp_dir(&format!("mapping-instances-{instances}"));
        let options = RunOptions {
            out_dir: out.clone(),
            assets_per_file: 40,
            mapping_instances: Some(instances),
            ..Default::default()
        };
        let summary = run::run(&host, &plugin, &config, session(), &options).unwrap();
        (kdi::read_dir(&out), summary)
    };
    let (one, one_summary) = run_on(1);
    let (three, three_summary) = run_on(3);
    assert!(one.len() > 2);
    assert!(one == three, "the files are the same byte for byte whatever the number of mapping instances");
    assert_eq!(one_summary.counters, three_summary.counters);
    assert_eq!(one_summary.skipped, three_summary.skipped);
}
