//! Delivery to CVM end to end: the real CLI, a changing simulated Defender tenant and
//! a simulated CVM that applies KDI semantics (auto-close) to its store.

use connector_cvm_simulator::{CvmOptions, CvmSim};
use connector_e2e::artifacts::{self, run_cli, CliOutput};
use connector_e2e::{kdi, oracle};
use connector_simulators::defender::{DefenderSim, Endpoint, Faults, ServerError, SimOptions, TenantSpec};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SPEC: TenantSpec = TenantSpec { seed: 31, devices: 80, rows: 2_000 };

struct Setup {
    defender: DefenderSim,
    cvm: CvmSim,
    dir: PathBuf,
}

impl Setup {
    fn new(name: &str, cvm: CvmOptions) -> Setup {
        Setup {
            defender: DefenderSim::start(SPEC, SimOptions::default()).unwrap(),
            cvm: CvmSim::start(cvm).unwrap(),
            dir: kdi::temp_dir(&format!("delivery-{name}")),
        }
    }

    /// A configuration for the given Defender simulator and this CVM.
    fn config_for(&self, defender: &DefenderSim, name: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.toml"));
        let text = format!(
            "{}page_size = 500\nretry_delay_ms = 20\nmax_retries = 2\n{}",
            defender.config_toml(),
            self.cvm.config_toml()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, config: &Path, extra: &[&str]) -> CliOutput {
        let plugin = artifacts::plugin("plugin_defender");
        let out = self.dir.join("out");
        let state = self.dir.join("state");
        let mut args = vec![
            "run",
            "--plugin",
            plugin.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--allow-insecure-loopback",
            "--upload",
            "--assets-per-file",
            "25",
            // These tests are about full runs (auto-close); incremental.rs has the others.
            "--full",
        ];
        args.extend_from_slice(extra);
        let output = run_cli(&args, &[]);
        let key = &self.cvm.options().api_key;
        assert!(!output.stdout().contains(key) && !output.stderr().contains(key), "the CVM API key was printed");
        output
    }

    fn upload(&self) -> CliOutput {
        let config = self.config_for(&self.defender, "connector");
        self.run(&config, &[])
    }

    /// Open vulnerabilities CVM should have for each active device, by the spec.
    fn expected_open(&self) -> Vec<(String, BTreeSet<String>)> {
        let expected = oracle::expected_live(&self.defender.tenant());
        expected.assets.iter().map(|(id, a)| (id.clone(), a.vulns.keys().cloned().collect())).collect()
    }

    fn assert_cvm_matches_tenant(&self) {
        for (id, open) in self.expected_open() {
            assert_eq!(self.cvm.open_vulns(&id), open, "open vulnerabilities of {id}");
        }
    }
}

fn succeeded(output: &CliOutput) -> String {
    assert!(output.success(), "stderr: {}\nstdout: {}", output.stderr(), output.stdout());
    output.stdout()
}

#[test]
fn a_second_run_closes_what_was_fixed_and_everything_of_a_clean_device() {
    let s = Setup::new("two-runs", CvmOptions::default());
    let first = succeeded(&s.upload());
    assert!(first.contains("Delivered to CVM (connector 4242)"), "{first}");
    assert!(first.contains("Last upload                        none recorded"), "{first}");
    assert!(first.contains("processed_assets_count"), "{first}");
    let active: BTreeSet<String> = s.defender.tenant().active_machines().map(|m| m.id.clone()).collect();
    assert_eq!(s.cvm.assets(), active);
    s.assert_cvm_matches_tenant();
    assert_eq!(s.cvm.runs().len(), 1, "exactly one run for all files");
    assert_eq!(s.cvm.runs()[0].data_files.len(), active.len().div_ceil(25));

    // Between the runs: one CVE fixed on one device, every vulnerability of another.
    let expected = s.expected_open();
    let (fixed_device, fixed_cves) = expected.iter().find(|(_, v)| v.len() >= 2).unwrap().clone();
    let fixed_cve = fixed_cves.iter().next().unwrap().clone();
    let (clean_device, clean_cves) =
        expected.iter().find(|(id, v)| !v.is_empty() && *id != fixed_device).unwrap().clone();
    s.defender.update_tenant(|t| {
        t.remove_rows(|r| {
            let cve = r.cve_id.as_deref().unwrap_or("").to_ascii_uppercase();
            (r.device_id == fixed_device && cve == fixed_cve.to_ascii_uppercase()) || r.device_id == clean_device
        })
    });

    let config = s.config_for(&s.defender, "connector");
    let dry = succeeded(&s.run(&config, &["--dry-run"]));
    let closing = 1 + clean_cves.len();
    assert!(dry.contains("Dry run: nothing was uploaded (connector 4242)"), "{dry}");
    assert!(dry.contains(&format!("0 appear, {closing} disappear (CVM closes them)")), "{dry}");
    assert!(dry.contains("0 appear, 0 disappear"), "no asset disappears: {dry}");
    assert_eq!(s.cvm.runs().len(), 1, "a dry run uploads nothing");

    let second = succeeded(&s.upload());
    assert_eq!(s.cvm.runs().len(), 2);
    assert!(s.cvm.closed_vulns(&fixed_device).contains(&fixed_cve), "the fixed CVE is closed");
    assert_eq!(s.cvm.open_vulns(&fixed_device).len(), fixed_cves.len() - 1);
    assert!(s.cvm.open_vulns(&clean_device).is_empty(), "a device with nothing left closes all of its own");
    assert_eq!(s.cvm.closed_vulns(&clean_device), clean_cves);
    assert!(s.cvm.assets().contains(&clean_device), "the clean device is still sent, with no vulnerabilities");
    s.assert_cvm_matches_tenant();
    assert_eq!(s.cvm.runs()[1].counts["autoclosed_scanner_vuln_count"], closing as u64);
    assert!(second.contains(&format!("{closing}  autoclosed_scanner_vuln_count")), "{second}");
}

#[test]
fn a_failed_fetch_uploads_nothing_and_starts_no_run() {
    let s = Setup::new("failed-fetch", CvmOptions::default());
    succeeded(&s.upload());
    let open_before = s.cvm.open_vuln_count();
    let requests_before = s.cvm.requests();

    // The same tenant, served by a Defender that fails from the third page on.
    let fault = ServerError { endpoint: Endpoint::Vulnerabilities, page: 2, always: true };
    let broken = DefenderSim::start(
        SPEC,
        SimOptions { faults: Faults { server_error: Some(fault), ..Default::default() }, ..Default::default() },
    )
    .unwrap();
    let output = s.run(&s.config_for(&broken, "broken"), &[]);
    assert!(!output.success());
    let errors = output.error_lines();
    assert_eq!(errors.len(), 1, "{}", output.stderr());
    assert!(errors[0].starts_with("error: run --upload failed: defender-tvm fetch:"), "{}", errors[0]);
    assert_eq!(s.cvm.requests(), requests_before, "no upload, no run, not even a status call");
    assert_eq!(s.cvm.open_vuln_count(), open_before);

    // The state still describes the first upload: a dry run sees no change.
    let dry = succeeded(&s.run(&s.config_for(&s.defender, "connector"), &["--dry-run"]));
    assert!(dry.contains("0 appear, 0 disappear (CVM closes them)"), "{dry}");
}

#[test]
fn the_mass_close_guard_stops_a_run_that_lost_most_devices() {
    let s = Setup::new("guard", CvmOptions::default());
    succeeded(&s.upload());
    let assets_before = s.cvm.assets().len();
    let open_before = s.cvm.open_vuln_count();

    // Most devices stop reporting (an outage, a filter gone wrong).
    s.defender.update_tenant(|t| t.retire_machines(|m| !m.id.starts_with(['0', '1', '2', '3'])));
    let remaining = s.defender.tenant().active_machines().count();
    assert!(remaining * 2 < assets_before, "the change must lose most devices");

    let refused = s.upload();
    assert!(!refused.success());
    let line = refused.error_lines().join("\n");
    assert!(line.contains(&format!("this run has {remaining} assets")), "{line}");
    assert!(line.contains(&format!("had {assets_before} assets and {open_before} open vulnerabilities")), "{line}");
    assert!(line.contains("--allow-mass-close"), "{line}");
    assert_eq!(s.cvm.runs().len(), 1, "nothing was uploaded");
    assert_eq!(s.cvm.open_vuln_count(), open_before);

    let config = s.config_for(&s.defender, "connector");
    let dry = succeeded(&s.run(&config, &["--dry-run"]));
    assert!(dry.contains("An upload would be refused"), "{dry}");

    let forced = s.run(&config, &["--allow-mass-close"]);
    succeeded(&forced);
    assert_eq!(s.cvm.runs().len(), 2);
    assert_eq!(s.cvm.runs()[1].counts["processed_assets_count"], remaining as u64);
    // CVM leaves absent assets alone (they age out as inactive): nothing was closed.
    assert_eq!(s.cvm.open_vuln_count(), open_before);
}

#[test]
fn the_guard_also_stops_a_run_that_lost_most_vulnerabilities() {
    // The dangerous case: every device still arrives, so CVM would auto-close
    // everything the run no longer reports.
    let s = Setup::new("guard-vulns", CvmOptions::default());
    succeeded(&s.upload());
    let open_before = s.cvm.open_vuln_count();
    s.defender.update_tenant(|t| t.remove_rows(|r| !r.device_id.starts_with(['0', '1', '2'])));
    let refused = s.upload();
    assert!(!refused.success());
    let line = refused.error_lines().join("\n");
    assert!(line.contains(&format!("and {open_before} open vulnerabilities")), "{line}");
    assert_eq!(s.cvm.runs().len(), 1);
    assert_eq!(s.cvm.open_vuln_count(), open_before, "nothing was closed");
}

#[test]
fn uploads_are_retried_on_422_429_and_5xx() {
    let cvm = CvmOptions { fail_uploads: 1, throttle_uploads: 1, bad_gateway_uploads: 1, ..Default::default() };
    let s = Setup::new("retries", cvm);
    succeeded(&s.upload());
    let files = s.cvm.runs()[0].data_files.len() as u64;
    assert_eq!(s.cvm.requests()["upload"], files + 3);
    s.assert_cvm_matches_tenant();
}

#[test]
fn verify_checks_the_cvm_connector_and_a_wrong_key_is_one_clear_error() {
    let s = Setup::new("verify", CvmOptions::default());
    let plugin = artifacts::plugin("plugin_defender");
    let config = s.config_for(&s.defender, "connector");
    let args = [
        "verify",
        "--plugin",
        plugin.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--allow-insecure-loopback",
    ];
    let ok = succeeded(&run_cli(&args, &[]));
    assert!(ok.contains("ok  CVM") && ok.contains("connector 4242") && ok.contains("file-based"), "{ok}");

    let text = std::fs::read_to_string(&config).unwrap().replace(&s.cvm.options().api_key, "not-the-key-0000");
    std::fs::write(&config, text).unwrap();
    let out = run_cli(&args, &[]);
    assert!(!out.success());
    let lines = out.error_lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("CVM rejected the API key (HTTP 401)"), "{}", lines[0]);
    assert!(!out.stderr().contains("not-the-key-0000"));
}

#[test]
fn upload_without_a_cvm_table_is_refused_before_fetching() {
    let s = Setup::new("no-cvm", CvmOptions::default());
    let path = s.dir.join("plain.toml");
    std::fs::write(&path, s.defender.config_toml()).unwrap();
    let out = s.run(&path, &[]);
    assert!(!out.success());
    assert!(out.error_lines()[0].contains("--upload needs a [cvm] table"), "{}", out.stderr());
    assert!(s.defender.calls().is_empty(), "nothing was fetched");
}

#[test]
fn a_scheduled_run_is_awaited_until_it_ends_then_judged() {
    // CVM queues the run for a while (the connector not yet running), then runs it.
    let cvm = CvmOptions {
        queue_delay: std::time::Duration::from_millis(900),
        run_duration: std::time::Duration::from_millis(600),
        ..Default::default()
    };
    let s = Setup::new("scheduled", cvm);
    let out = succeeded(&s.upload());
    let runs = s.cvm.runs();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].ended && runs[0].success, "the host returned only after the run ended: {:?}", runs[0]);
    s.assert_cvm_matches_tenant();
    let requests = s.cvm.requests();
    assert!(requests["run details"] >= 10, "the run itself was polled until its end_time: {requests:?}");
    assert!(!requests.contains_key("status"), "the connector's `running` flag proves nothing: {requests:?}");
    let waited: f64 = out
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("Connector run")?.trim().strip_prefix("1 (")?.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no connector run line: {out}"));
    assert!(waited >= 1.4, "waited {waited} s for a run that took 1.5 s: {out}");
    // The files were named the way known clients name them, and typed as JSON.
    assert_eq!(s.cvm.run_requests(), ["form"]);
    assert_eq!(runs[0].data_files.len(), s.cvm.uploaded_files());
    let types = s.cvm.part_content_types();
    assert!(!types.is_empty() && types.iter().all(|t| t == "application/json"), "{types:?}");
    assert!(out.contains(&format!("{}  total_payload_count", runs[0].data_files.len())), "{out}");
}

#[test]
fn a_run_that_ends_unsuccessfully_fails_and_saves_no_baseline() {
    let s = Setup::new("run-failed", CvmOptions { fail_runs: 1, ..Default::default() });
    let failed = s.upload();
    assert!(!failed.success());
    let line = failed.error_lines().join("\n");
    assert!(line.contains("CVM connector run 1 ended unsuccessfully"), "{line}");
    let files = s.cvm.uploaded_files();
    assert!(files >= 2, "several files in one run");
    let counts = format!("failed_payload_count {files}");
    assert!(line.contains(&counts) && line.contains(&format!("total_payload_count {files}")), "{line}");
    assert!(line.contains("the mass-close baseline was not updated"), "{line}");
    // No baseline: the next dry run compares with nothing.
    let config = s.config_for(&s.defender, "connector");
    let dry = succeeded(&s.run(&config, &["--dry-run"]));
    assert!(dry.contains("Last upload                        none recorded"), "{dry}");
    // The next run succeeds and becomes the baseline.
    succeeded(&s.upload());
    s.assert_cvm_matches_tenant();
    let dry = succeeded(&s.run(&config, &["--dry-run"]));
    assert!(dry.contains("0 appear, 0 disappear (CVM closes them)"), "{dry}");
}

#[test]
fn a_run_that_processed_fewer_files_than_were_uploaded_fails_loudly() {
    let s = Setup::new("files-dropped", CvmOptions { process_at_most: Some(1), ..Default::default() });
    let failed = s.upload();
    assert!(!failed.success());
    let line = failed.error_lines().join("\n");
    let files = s.cvm.uploaded_files();
    assert!(files >= 2, "several files in one run");
    let expected = format!("CVM connector run 1 processed 1 data file(s), but {files} were uploaded");
    assert!(line.contains(&expected), "{line}");
    let dry = succeeded(&s.run(&s.config_for(&s.defender, "connector"), &["--dry-run"]));
    assert!(dry.contains("Last upload                        none recorded"), "{dry}");
}

/// Runs twice; between the runs one device loses its tags and moves to another RBAC
/// group. Returns that device's tags in CVM after each run, and the files' `reset_tags`.
fn tags_across_a_change(name: &str, reset_tags: bool) -> (BTreeSet<String>, BTreeSet<String>, Vec<serde_json::Value>) {
    let s = Setup::new(name, CvmOptions::default());
    let config = s.config_for(&s.defender, "connector");
    if reset_tags {
        let text = std::fs::read_to_string(&config).unwrap() + "reset_tags = true\n";
        std::fs::write(&config, text).unwrap();
    }
    succeeded(&s.run(&config, &[]));
    let device = s
        .defender
        .tenant()
        .active_machines()
        .find(|m| !m.machine_tags.is_empty() && m.rbac_group_name.is_some())
        .unwrap()
        .id
        .clone();
    let before = s.cvm.tags(&device);
    s.defender.update_tenant(|t| {
        t.update_machines(|m| {
            if m.id == device {
                m.machine_tags.clear();
                m.rbac_group_name = Some("Quarantine");
            }
        })
    });
    succeeded(&s.run(&config, &[]));
    let flags = kdi::read_dir(&s.dir.join("out")).into_iter().map(|(_, f)| f["reset_tags"].clone()).collect();
    (before, s.cvm.tags(&device), flags)
}

#[test]
fn tags_only_add_by_default_and_reset_tags_replaces_them() {
    let (before, after, flags) = tags_across_a_change("tags-additive", false);
    assert!(before.len() >= 2, "the device had tags: {before:?}");
    assert!(after.is_superset(&before), "without reset_tags CVM keeps tags the device lost: {after:?}");
    assert!(after.contains("rbacGroup: Quarantine"));
    assert!(flags.iter().all(|f| f.is_null()), "files do not set reset_tags by default: {flags:?}");

    let (before, after, flags) = tags_across_a_change("tags-reset", true);
    assert!(before.len() >= 2);
    assert_eq!(after, BTreeSet::from(["rbacGroup: Quarantine".to_owned()]), "only the device's current tags remain");
    assert!(flags.iter().all(|f| *f == serde_json::Value::Bool(true)), "{flags:?}");
}
