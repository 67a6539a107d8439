//! Incremental runs (contract 0.4) end to end: the real CLI, a simulated Defender
//! tenant that changes between runs and serves its delta export (and a GitHub
//! organization whose alerts change), and two simulated CVMs. One is fed a baseline and then runs of changes only; the other a full run
//! each time. Their stores must agree: the same assets, the same open and the same
//! closed vulnerabilities on each.

use connector_cvm_simulator::{CvmOptions, CvmSim};
use connector_e2e::artifacts::{self, run_cli, CliOutput};
use connector_e2e::{kdi, oracle};
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec, VulnerabilityRow};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SPEC: TenantSpec = TenantSpec { seed: 57, devices: 60, rows: 1_500 };
/// The simulated tenant computes its changes this often (Defender: every 6 hours).
const WINDOW: Duration = Duration::from_millis(400);

/// One world: a CVM, where the runs keep their state, and how they run.
struct World {
    cvm: CvmSim,
    dir: PathBuf,
    incremental: bool,
}

impl World {
    fn new(name: &str, incremental: bool) -> World {
        World::with(name, incremental, CvmOptions::default())
    }

    fn with(name: &str, incremental: bool, cvm: CvmOptions) -> World {
        World { cvm: CvmSim::start(cvm).unwrap(), dir: kdi::temp_dir(name), incremental }
    }

    fn run(&self, defender: &DefenderSim) -> CliOutput {
        let text = format!("{}page_size = 400\nretry_delay_ms = 20\n", defender.config_toml());
        self.run_plugin("plugin_defender", "defender", &text)
    }

    /// Runs `plugin` with its `[connector]` text and this world's `[cvm]`.
    fn run_plugin(&self, plugin: &str, name: &str, connector: &str) -> CliOutput {
        let args = self.args(plugin, name, connector);
        let output = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
        assert!(output.success(), "{}\n{}", output.stderr(), output.stdout());
        output
    }

    /// The arguments of `run --upload` for `plugin`, its configuration written.
    fn args(&self, plugin: &str, name: &str, connector: &str) -> Vec<String> {
        let config = self.dir.join(format!("{name}.toml"));
        std::fs::write(&config, format!("{connector}{}", self.cvm.config_toml())).unwrap();
        let path = |p: PathBuf| p.to_str().unwrap().to_owned();
        let mut args: Vec<String> = ["run", "--plugin"].map(String::from).to_vec();
        args.push(path(artifacts::plugin(plugin)));
        args.extend(["--config".into(), path(config), "--out".into(), path(self.dir.join("out"))]);
        args.extend(["--state-dir".into(), path(self.dir.join("state"))]);
        args.extend(["--allow-insecure-loopback", "--upload", "--json"].map(String::from));
        if !self.incremental {
            args.push("--full".into());
        }
        args
    }

    /// Each asset CVM holds, with its open and its closed vulnerabilities.
    fn store(&self) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
        self.cvm
            .assets()
            .into_iter()
            .map(|a| (a.clone(), (self.cvm.open_vulns(&a), self.cvm.closed_vulns(&a))))
            .collect()
    }

    fn files(&self) -> Vec<serde_json::Value> {
        kdi::read_dir(&self.dir.join("out")).into_iter().map(|(_, file)| file).collect()
    }
}

/// The Defender plugin's skip reason for a fix in one product of several.
fn delta_still_present() -> &'static str {
    "fixed in one product, still on the device through another"
}

fn summary(output: &CliOutput) -> serde_json::Value {
    serde_json::from_str(&output.stdout()).unwrap()
}

/// A live row whose device and CVE exactly `others` other live rows share (other products
/// with the same CVE); `skip` picks another such row.
fn a_row_with_others_on_its_device(defender: &DefenderSim, others: usize, skip: usize) -> VulnerabilityRow {
    let tenant = defender.tenant();
    let active: BTreeSet<String> = tenant.active_machines().map(|m| m.id.clone()).collect();
    let rows: Vec<VulnerabilityRow> = tenant.live_rows().collect();
    let key = |r: &VulnerabilityRow| (r.device_id.clone(), r.cve_id.clone().unwrap_or_default().to_ascii_uppercase());
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    rows.iter().for_each(|r| *count.entry(key(r)).or_default() += 1);
    rows.into_iter()
        .filter(|r| active.contains(&r.device_id) && r.cve_id.as_deref().is_some_and(|c| c.starts_with("CVE-")))
        .filter(|r| count[&key(r)] == others + 1)
        .nth(skip)
        .expect("such a row")
}

/// A live row whose device and CVE no other live row shares: fixing it removes the
/// vulnerability from the device.
fn a_row_alone_on_its_device(defender: &DefenderSim, skip: usize) -> VulnerabilityRow {
    a_row_with_others_on_its_device(defender, 0, skip)
}

fn assert_same_stores(incremental: &World, full: &World, defender: &DefenderSim) {
    assert_eq!(incremental.store(), full.store(), "the stores after incremental and after full runs differ");
    let expected = oracle::expected_live(&defender.tenant());
    for (id, asset) in &expected.assets {
        let open: BTreeSet<String> = asset.vulns.keys().cloned().collect();
        assert_eq!(incremental.cvm.open_vulns(id), open, "open vulnerabilities of {id}");
    }
}

#[test]
fn a_baseline_and_runs_of_changes_leave_cvm_as_full_runs_do() {
    let options = SimOptions { snapshot_window: WINDOW, ..SimOptions::default() };
    let defender = DefenderSim::start(SPEC, options).unwrap();
    let (a, b) = (World::new("incremental-a", true), World::new("incremental-b", false));

    let first = summary(&a.run(&defender));
    assert_eq!(first["mode"], "full", "a first run is a baseline");
    b.run(&defender);
    assert!(a.files().iter().all(|f| f["skip_autoclose"] == false));
    assert_same_stores(&a, &b, &defender);

    // Between the runs: a vulnerability fixed, one found, a version upgraded (still
    // vulnerable), a device moved to another RBAC group, a device retired, and one
    // product of two with the same CVE on a device updated (the CVE stays there).
    let fixed = a_row_alone_on_its_device(&defender, 0);
    let one_of_two = a_row_with_others_on_its_device(&defender, 1, 0);
    let upgraded = a_row_alone_on_its_device(&defender, 1);
    let (moved, retired) = {
        let t = defender.tenant();
        let active: Vec<String> = t.active_machines().map(|m| m.id.clone()).collect();
        (active[3].clone(), active[5].clone())
    };
    let found = VulnerabilityRow {
        id: format!("{}_acme_tool_1.0_CVE-2026-55555", fixed.device_id),
        cve_id: Some("CVE-2026-55555".into()),
        software_vendor: "acme",
        software_name: "tool",
        software_version: "1.0".into(),
        ..fixed.clone()
    };
    defender.update_tenant(|t| {
        t.remove_rows(|r| r.id == fixed.id || r.id == one_of_two.id);
        t.add_row(found.clone());
        let offset = (0..t.row_count()).find(|o| t.row_at(*o).id == upgraded.id).unwrap();
        t.upgrade_row(offset);
        t.move_machine(&moved, 7, "Servers");
        t.retire_machines(|m| m.id == retired);
    });
    std::thread::sleep(WINDOW * 3);

    let second = a.run(&defender);
    let second = summary(&second);
    assert_eq!(second["mode"], "incremental", "{second}");
    b.run(&defender);
    assert!(a.files().iter().all(|f| f["skip_autoclose"] == true), "a run of changes never auto-closes");
    assert_eq!(second["vulnerabilities_closed"], 1, "only the fixed one is written closed: {second}");
    let changes: u64 = second["counters"]["vulnerability rows fetched"].as_u64().unwrap();
    assert!(changes < 100, "an incremental run reads the changes, not the {} rows: {changes}", SPEC.rows);
    assert!(a.cvm.closed_vulns(&fixed.device_id).contains(&fixed.cve_id.clone().unwrap()));
    assert!(a.cvm.open_vulns(&fixed.device_id).contains("CVE-2026-55555"));
    assert!(a.cvm.tags(&moved).contains("rbacGroup: Servers"), "every active device is sent, fresh tags and all");
    let still = one_of_two.cve_id.clone().unwrap().to_ascii_uppercase();
    assert!(a.cvm.open_vulns(&one_of_two.device_id).contains(&still), "another product still carries {still}");
    assert_eq!(second["skipped"][delta_still_present()], 1, "{second}");
    assert_same_stores(&a, &b, &defender);

    // A run with nothing new reads the same window again and changes nothing.
    std::thread::sleep(WINDOW * 2);
    let before = a.store();
    let third = summary(&a.run(&defender));
    assert_eq!(third["mode"], "incremental");
    assert_eq!(a.store(), before, "re-reading events changes nothing");
}

#[test]
fn run_full_forces_a_baseline_and_a_failed_run_keeps_the_old_state() {
    let options = SimOptions { snapshot_window: WINDOW, ..SimOptions::default() };
    let defender = DefenderSim::start(SPEC, options).unwrap();
    let a = World::new("incremental-state", true);
    assert_eq!(summary(&a.run(&defender))["mode"], "full");
    let checkpoint = a.dir.join("state/checkpoints/defender-tvm--defender.state");
    let saved = std::fs::read(&checkpoint).expect("the delivered run kept its state");
    // The CVM refuses the next upload: nothing is delivered, so nothing is committed.
    let broken = World { cvm: CvmSim::start(CvmOptions { fail_runs: 1, ..CvmOptions::default() }).unwrap(), ..a };
    let config_dir = broken.dir.clone();
    let failed = {
        let config = config_dir.join("defender.toml");
        let text =
            format!("{}page_size = 400\nretry_delay_ms = 20\n{}", defender.config_toml(), broken.cvm.config_toml());
        std::fs::write(&config, text).unwrap();
        run_in(&config_dir, &config)
    };
    assert!(!failed.success(), "the CVM run failed: {}", failed.stdout());
    assert_eq!(std::fs::read(&checkpoint).unwrap(), saved, "a run that was not delivered leaves the state");
    let forced = World { incremental: false, ..broken };
    assert_eq!(summary(&forced.run(&defender))["mode"], "full");
}

fn run_in(dir: &Path, config: &Path) -> CliOutput {
    let plugin = artifacts::plugin("plugin_defender");
    let (out, state) = (dir.join("out"), dir.join("state"));
    run_cli(
        &[
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
        ],
        &[],
    )
}

#[test]
fn dependabot_runs_of_changes_leave_cvm_as_full_runs_do() {
    use connector_simulators::github::{GithubSim, OrgSpec};
    let spec = OrgSpec { seed: 21, repositories: 40, alerts: 300 };
    let github = GithubSim::start(spec).unwrap();
    let (a, b) = (World::new("dependabot-incremental-a", true), World::new("dependabot-incremental-b", false));
    let connector = format!("{}page_size = \"20\"\n", github.config_toml());
    let run = |w: &World| summary(&w.run_plugin("plugin_dependabot", "dependabot", &connector));
    assert_eq!(run(&a)["mode"], "full");
    run(&b);
    assert_eq!(a.store(), b.store());

    // Between the runs: an alert fixed, one dismissed, a new one, each the only
    // alert of its advisory on its repository; and one of two alerts of an advisory
    // on a repository (two manifests) fixed: the advisory stays open there.
    let org = github.org();
    let open_pair = |x: &connector_simulators::github::SimAlert| {
        org.alerts
            .iter()
            .filter(|y| y.repository == x.repository && y.advisory == x.advisory && y.state == "open")
            .count()
    };
    let shared = org
        .alerts
        .iter()
        .find(|x| x.state == "open" && !x.withdrawn && open_pair(x) == 2)
        .expect("an advisory open in two manifests of one repository")
        .clone();
    let alone: Vec<u64> = org
        .alerts
        .iter()
        .filter(|x| x.state == "open" && !x.withdrawn)
        .filter(|x| org.alerts.iter().filter(|y| y.repository == x.repository && y.advisory == x.advisory).count() == 1)
        .map(|x| x.number)
        .take(2)
        .collect();
    let taken: BTreeSet<(u64, u64)> = org.alerts.iter().map(|x| (x.repository, x.advisory)).collect();
    let fresh = (0..spec.repositories).find(|r| !taken.contains(&(*r, 7))).expect("a repository without advisory 7");
    github.update_org(|o| {
        o.fix_alert(alone[0]);
        o.dismiss_alert(alone[1]);
        o.open_alert(spec.seed, fresh, 7);
        o.fix_alert(shared.number);
    });
    let second = run(&a);
    assert_eq!(second["mode"], "incremental", "{second}");
    assert_eq!(second["vulnerabilities_closed"], 2, "{second}");
    let read = second["counters"]["alerts fetched"].as_u64().unwrap();
    assert!(read < 80, "a page of the newest alerts and the rechecked repositories', not all {}: {read}", spec.alerts);
    assert_eq!(second["skipped"]["alert not updated since the last run"], 16, "{second}");
    let repository = format!("github-repository:{}", 500_000 + shared.repository);
    let advisory = connector_simulators::github::ghsa(shared.advisory);
    assert!(a.cvm.open_vulns(&repository).contains(&advisory), "the other manifest still has {advisory}");
    run(&b);
    assert_eq!(a.store(), b.store(), "the stores after incremental and after full runs differ");
    assert!(a.files().iter().all(|f| f["skip_autoclose"] == true));
}

#[test]
fn a_run_killed_between_its_upload_and_the_end_of_the_cvm_run_loses_and_double_counts_nothing() {
    let options = SimOptions { snapshot_window: WINDOW, ..SimOptions::default() };
    let defender = DefenderSim::start(SPEC, options).unwrap();
    // CVM takes its time over each run: long enough to kill the CLI while it waits.
    let slow = CvmOptions { run_duration: Duration::from_secs(3), ..CvmOptions::default() };
    let (a, b) = (World::with("incremental-killed-a", true, slow), World::new("incremental-killed-b", false));
    a.run(&defender);
    b.run(&defender);
    let checkpoint = a.dir.join("state/checkpoints/defender-tvm--defender.state");
    let before = std::fs::read(&checkpoint).unwrap();

    let fixed = a_row_alone_on_its_device(&defender, 2);
    defender.update_tenant(|t| t.remove_rows(|r| r.id == fixed.id));
    std::thread::sleep(WINDOW * 3);
    let connector = format!("{}page_size = 400\nretry_delay_ms = 20\n", defender.config_toml());
    let args = a.args("plugin_defender", "defender", &connector);
    let mut child = std::process::Command::new(artifacts::host_binary())
        .args(&args)
        .env("XDG_STATE_HOME", a.dir.join("xdg"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while a.cvm.runs().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the second run never reached CVM");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read(&checkpoint).unwrap(), before, "a run that was not seen through keeps the old state");

    // CVM finishes the orphaned run on its own; the next run reads the same changes
    // again and applies them once more, to the same effect.
    std::thread::sleep(Duration::from_secs(4));
    let again = summary(&a.run(&defender));
    assert_eq!(again["mode"], "incremental", "{again}");
    assert_eq!(again["vulnerabilities_closed"], 1, "{again}");
    b.run(&defender);
    assert_same_stores(&a, &b, &defender);
    assert!(a.cvm.closed_vulns(&fixed.device_id).contains(&fixed.cve_id.clone().unwrap()));
}
