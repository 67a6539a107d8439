//! Definitions from Defender's vulnerability catalogue, end to end: the real CLI
//! against a simulated tenant that serves `/api/vulnerabilities` with Microsoft's
//! paging and filters. The catalogue is read whole once and kept in the plugin's
//! state; later runs read only what changed; a catalogue that cannot be read leaves
//! the definitions bare, says why, and never fails the run.

use connector_e2e::artifacts::{self, run_cli, CliOutput};
use connector_e2e::kdi;
use connector_simulators::defender::{catalogue, DefenderSim, Faults, SimOptions, TenantSpec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SPEC: TenantSpec = TenantSpec { seed: 61, devices: 40, rows: 600 };

fn config(dir: &Path, sim: &DefenderSim) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("defender.toml");
    std::fs::write(&path, format!("{}page_size = 400\nretry_delay_ms = 20\n", sim.config_toml())).unwrap();
    path
}

fn run(dir: &Path, sim: &DefenderSim, extra: &[&str]) -> (Value, CliOutput) {
    let plugin = artifacts::plugin("plugin_defender");
    let (config, out, state) = (config(dir, sim), dir.join("out"), dir.join("state"));
    let mut args = vec!["run", "--plugin", plugin.to_str().unwrap(), "--config", config.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
    args.extend(["--allow-insecure-loopback", "--json"]);
    args.extend(extra);
    let output = run_cli(&args, &[]);
    assert!(output.success(), "{}\n{}", output.stderr(), output.stdout());
    (serde_json::from_str(&output.stdout()).unwrap(), output)
}

/// Every definition of the run's files, by identifier.
fn definitions(dir: &Path) -> BTreeMap<String, Value> {
    kdi::read_dir(&dir.join("out"))
        .into_iter()
        .flat_map(|(_, file)| file["vuln_defs"].as_array().unwrap().clone())
        .map(|d| (d["scanner_identifier"].as_str().unwrap().to_owned(), d))
        .collect()
}

fn description(d: &Value) -> &str {
    d["description"].as_str().unwrap_or_else(|| panic!("no description: {d}"))
}

#[test]
fn the_catalogue_is_read_whole_once_then_only_what_changed() {
    let sim = DefenderSim::start(SPEC, SimOptions::default()).unwrap();
    let dir = kdi::temp_dir("catalogue-kept");
    let (first, _) = run(&dir, &sim, &[]);
    assert_eq!(first["counters"]["catalogue records read"], catalogue::len());
    let pages = catalogue::len().div_ceil(catalogue::MAX_TOP as u64);
    assert_eq!(sim.calls()["catalogue"], pages + 1, "every page of 8,000, then the empty one");
    let defined = definitions(&dir);
    assert!(defined.len() > 100, "{} definitions", defined.len());
    for (id, d) in &defined {
        let record = sim.tenant().catalogue_record(id).unwrap();
        assert_eq!(d["name"], record["name"], "{id}");
        let published = &record["publishedOn"].as_str().unwrap()[..10];
        assert!(description(d).starts_with(record["description"].as_str().unwrap()), "{id}: {d}");
        assert!(description(d).ends_with(&format!("; published {published}.")), "{id}: {d}");
    }
    // Defender's own identifiers get a name and text CVM's intelligence lacks.
    let tvm = &defined["TVM-2020-0002"];
    assert_eq!(tvm["name"], "Weak TLS configuration (Defender's own finding)");
    assert!(description(tvm).contains("CVSS v3 unknown"), "{tvm}");

    // Defender rescored one identifier since: the next run (full, to write every
    // definition) reads only the records updated since the last run, less a day.
    let changed = defined.keys().find(|id| id.starts_with("CVE-")).unwrap().clone();
    let mut found = 0;
    sim.update_tenant(|t| found = t.update_catalogue(&[&changed]));
    assert_eq!(found, 1);
    let before = sim.calls()["catalogue"];
    let (second, _) = run(&dir, &sim, &["--full"]);
    let read = second["counters"]["catalogue records read"].as_u64().unwrap();
    assert!((1..1_000).contains(&read), "only the records updated lately are read again, not {read}");
    assert_eq!(sim.calls()["catalogue"] - before, 2, "one page and the empty one");
    assert_eq!(sim.calls()["catalogue filtered by updatedOn"], 2);
    let again = definitions(&dir);
    assert_eq!(again.len(), defined.len());
    for (id, d) in &again {
        if *id == changed {
            let record = sim.tenant().catalogue_record(id).unwrap();
            let published = &record["publishedOn"].as_str().unwrap()[..10];
            assert!(description(d).ends_with(&format!("; published {published}.")), "the update: {d}");
            assert_ne!(d, &defined[id], "{id} changed in the catalogue");
        } else {
            assert_eq!(d, &defined[id], "{id} comes from the kept catalogue unchanged");
        }
    }
}

#[test]
fn an_unreadable_catalogue_leaves_definitions_bare_and_the_run_succeeds() {
    let options =
        SimOptions { faults: Faults { catalogue_forbidden: true, ..Faults::default() }, ..SimOptions::default() };
    let sim = DefenderSim::start(SPEC, options).unwrap();
    let dir = kdi::temp_dir("catalogue-forbidden");

    let plugin = artifacts::plugin("plugin_defender");
    let config = config(&dir, &sim);
    let verify = run_cli(
        &[
            "verify",
            "--plugin",
            plugin.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--allow-insecure-loopback",
        ],
        &[],
    );
    assert!(verify.success(), "the catalogue is not required: {}\n{}", verify.stderr(), verify.stdout());
    let said = verify.stdout();
    assert!(said.contains("vulnerability catalogue"), "{said}");
    assert!(said.contains("missing permission Vulnerability.Read.All"), "verify names the permission: {said}");

    let (summary, output) = run(&dir, &sim, &[]);
    assert_eq!(summary["counters"]["catalogue reads failed"], 1);
    assert_eq!(summary["warnings"].as_array().map(Vec::len), Some(1), "{summary}");
    let warning = summary["warnings"][0].as_str().unwrap();
    assert!(warning.contains("catalogue could not be read") && warning.contains("Vulnerability.Read.All"), "{warning}");
    assert!(output.stdout().contains("Vulnerability.Read.All"));
    let defined = definitions(&dir);
    assert!(!defined.is_empty());
    for (id, d) in &defined {
        assert!(d.get("description").is_none(), "{id} has no catalogue text: {d}");
        assert_eq!(d["name"], id.as_str());
    }
}
