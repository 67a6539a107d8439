//! The GitHub Dependabot plugin (built only on the SDK) through the real CLI,
//! against the simulated GitHub organization: the KDI it writes, record by record
//! against an oracle computed from the generated alerts; GitHub's rate-limit and
//! error signals; and what verify reports.

use connector_e2e::artifacts::{self, run_cli, CliOutput};
use connector_e2e::dependabot::{oracle, written};
use connector_e2e::kdi;
use connector_simulators::github::{ghsa, GithubSim, OrgSpec};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

const SPEC: OrgSpec = OrgSpec { seed: 11, repositories: 300, alerts: 230 };

fn plugin() -> String {
    artifacts::plugin("plugin_dependabot").display().to_string()
}

fn config(name: &str, text: &str) -> PathBuf {
    let path = kdi::temp_dir(&format!("dependabot-config-{name}")).join("connector.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(config: &Path, out: &Path) -> CliOutput {
    let (plugin, config, out) = (plugin(), config.to_str().unwrap(), out.to_str().unwrap());
    run_cli(&["run", "--plugin", &plugin, "--config", config, "--out", out, "--allow-insecure-loopback"], &[])
}

/// A counter of the run summary (`  Alerts fetched     230`), by its name.
fn counter(summary: &str, name: &str) -> Option<u64> {
    summary.lines().find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
}

fn definitions(out: &Path) -> BTreeMap<String, Value> {
    kdi::read_dir(out)
        .into_iter()
        .flat_map(|(_, f)| f["vuln_defs"].as_array().unwrap().clone())
        .map(|d| (d["scanner_identifier"].as_str().unwrap().to_owned(), d))
        .collect()
}

#[test]
fn a_run_writes_every_open_alert_under_its_repository_with_minimal_calls() {
    let sim = GithubSim::start(SPEC).unwrap();
    let out = kdi::temp_dir("dependabot-run");
    let text = format!("{}page_size = \"25\"\n", sim.config_toml());
    let result = run(&config("run", &text), &out);
    assert!(result.success(), "{}", result.stderr());
    let expected = oracle(&sim);
    assert!(expected.len() > 5 && expected.values().map(|v| v.len()).sum::<usize>() > 50, "a meaningful org");
    assert!(expected.values().any(|v| v.is_empty()), "some repositories have no open alert");
    assert_eq!(written(&out), expected);

    let open = sim.org().alerts.iter().filter(|a| a.state == "open").count() as u64;
    let repositories = SPEC.repositories.div_ceil(100);
    assert_eq!(sim.total_calls(), repositories + open.div_ceil(25), "one call per 100 repositories and per 25 alerts");
    let defs = definitions(&out);
    let used: BTreeSet<&String> = expected.values().flat_map(|v| v.keys()).collect();
    assert_eq!(defs.keys().collect::<BTreeSet<_>>(), used);
    let summary = result.stdout();
    assert_eq!(counter(&summary, "Alerts fetched"), Some(open), "{summary}");
    assert!(summary.contains("advisory withdrawn by GitHub"), "withdrawn advisories are skipped visibly: {summary}");
    assert!(!summary.contains(&sim.org().token) && !result.stderr().contains(&sim.org().token));
}

#[test]
fn github_rate_limits_and_a_bad_gateway_are_waited_out_without_changing_the_result() {
    let sim = GithubSim::start(SPEC).unwrap();
    sim.faults().primary_rate_limit_once.store(true, Ordering::Relaxed);
    let out = kdi::temp_dir("dependabot-throttled");
    let result = run(&config("throttled", &sim.config_toml()), &out);
    assert!(result.success(), "{}", result.stderr());
    sim.faults().secondary_rate_limit_once.store(true, Ordering::Relaxed);
    sim.faults().bad_gateway_once.store(true, Ordering::Relaxed);
    let again = kdi::temp_dir("dependabot-throttled-again");
    let result = run(&config("throttled-again", &sim.config_toml()), &again);
    assert!(result.success(), "{}", result.stderr());
    assert_eq!(written(&out), oracle(&sim));
    assert_eq!(written(&again), oracle(&sim));
    let calls = sim.calls();
    assert_eq!((calls["403 rate limit"], calls["429"], calls["502"]), (1, 1, 1), "{calls:?}");
    assert_eq!(counter(&result.stdout(), "Requests retried"), Some(2), "{}", result.stdout());
}

#[test]
fn credential_and_permission_failures_say_what_to_fix_and_write_nothing() {
    let sim = GithubSim::start(SPEC).unwrap();
    let out = kdi::temp_dir("dependabot-denied");
    let wrong = sim.config_toml().replace(&sim.org().token, "ghp_not_the_token");
    let result = run(&config("wrong-token", &wrong), &out);
    assert!(!result.success());
    let line = result.error_lines().join("\n");
    assert!(line.contains("GitHub refused the token (401): Bad credentials"), "{line}");
    assert!(!line.contains("ghp_not_the_token"), "a wrong token is still a secret: {line}");

    sim.faults().forbidden.store(true, Ordering::Relaxed);
    let result = run(&config("forbidden", &sim.config_toml()), &out);
    let line = result.error_lines().join("\n");
    assert!(
        line.contains("may not read Dependabot alerts of `octo-org`") && line.contains("security_events"),
        "{line}"
    );
    assert!(kdi::read_dir(&out).is_empty(), "a failed run writes nothing");

    let other_org = sim.config_toml().replace("organization = \"octo-org\"", "organization = \"other-org\"");
    sim.faults().forbidden.store(false, Ordering::Relaxed);
    let line = run(&config("other-org", &other_org), &out).error_lines().join("\n");
    assert!(line.contains("organization `other-org` not found"), "{line}");
}

#[test]
fn verify_checks_the_token_with_one_small_call() {
    let sim = GithubSim::start(SPEC).unwrap();
    let path = config("verify", &sim.config_toml());
    let result = run_cli(
        &["verify", "--plugin", &plugin(), "--config", path.to_str().unwrap(), "--allow-insecure-loopback"],
        &[],
    );
    assert!(result.success(), "{}", result.stderr());
    assert!(result.stdout().contains("the token reads `octo-org`'s alerts (at least one open)"), "{}", result.stdout());
    assert!(
        result.stdout().contains("the token lists `octo-org`'s repositories (at least one)"),
        "{}",
        result.stdout()
    );
    assert_eq!(sim.total_calls(), 2, "one small call each");
}

#[test]
fn a_repository_whose_last_alert_was_fixed_is_sent_empty_so_cvm_closes_it() {
    use connector_cvm_simulator::{CvmOptions, CvmSim};
    let sim = GithubSim::start(OrgSpec { seed: 5, repositories: 230, alerts: 400 }).unwrap();
    let cvm = CvmSim::start(CvmOptions::default()).unwrap();
    let dir = kdi::temp_dir("dependabot-close");
    let path = config("close", &format!("{}{}", sim.config_toml(), cvm.config_toml()));
    let upload = |name: &str| {
        let (plugin, config) = (plugin(), path.to_str().unwrap().to_owned());
        let (out, state) = (dir.join(name), dir.join("state"));
        let args = [
            "run",
            "--plugin",
            &plugin,
            "--config",
            &config,
            "--out",
            out.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--allow-insecure-loopback",
            "--upload",
            // About auto-close, which full runs do (incremental.rs has the others).
            "--full",
        ];
        let result = run_cli(&args, &[]);
        assert!(result.success(), "{}", result.stderr());
        result
    };
    upload("first");
    // A repository with exactly one open alert: the upgrade fixes it.
    let org = sim.org();
    let open = |r: u64| org.alerts.iter().filter(move |a| a.repository == r && a.state == "open" && !a.withdrawn);
    let repository = (0..org.repositories).find(|r| open(*r).count() == 1).expect("a repository with one open alert");
    let alert = open(repository).next().unwrap().clone();
    let external_id = format!("github-repository:{}", 500_000 + repository);
    assert_eq!(cvm.open_vulns(&external_id), BTreeSet::from([ghsa(alert.advisory)]));
    let quiet = (0..org.repositories).filter(|r| open(*r).count() == 0).count();
    assert!(quiet > 0, "some repositories never had an open alert");
    assert_eq!(cvm.assets().len() as u64, org.repositories, "every repository is an asset in CVM");

    sim.update_org(|o| o.fix_alert(alert.number));
    let second = upload("second").stdout();
    assert!(cvm.open_vulns(&external_id).is_empty(), "the fixed alert is closed in CVM");
    assert_eq!(cvm.closed_vulns(&external_id), BTreeSet::from([ghsa(alert.advisory)]));
    assert!(second.contains("1  autoclosed_scanner_vuln_count"), "{second}");
    // Three pages of repositories (230 at 100 a page) in each run.
    assert_eq!(sim.calls()["repos 200"], 6);
}
