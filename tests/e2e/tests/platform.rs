//! `connector-host run-all`: several connector instances of different plugins in
//! one platform run. Each runs in its own sandbox and thread, so a failing instance
//! and a hanging one are reported while the others complete, unslowed.

use connector_e2e::artifacts::{self, run_cli};
use connector_e2e::kdi;
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use connector_simulators::github::{GithubSim, OrgSpec};
use std::time::{Duration, Instant};

/// A connector config inlined into an `[[instance]]`: `[connector]` becomes
/// `[instance.connector]`.
fn inline(config_toml: &str) -> String {
    config_toml.replace("[connector]", "[instance.connector]")
}

#[test]
fn run_all_runs_every_instance_and_one_failing_or_hanging_stops_nothing_else() {
    let defender = DefenderSim::start(TenantSpec { seed: 5, devices: 60, rows: 900 }, SimOptions::default()).unwrap();
    let github = GithubSim::start(OrgSpec { seed: 2, repositories: 9, alerts: 150 }).unwrap();
    let dir = kdi::temp_dir("platform");
    let wrong_token = github.config_toml().replace(&github.org().token, "ghp_revoked");
    let platform = format!(
        "[defaults]\nout = \"out\"\ntime_limit_seconds = 120\n\n\
         [[instance]]\nname = \"defender\"\nplugin = \"{defender_plugin}\"\nschedule = \"every 4 hours\"\n{defender_config}\n\
         [[instance]]\nname = \"github\"\nplugin = \"{github_plugin}\"\nschedule = \"daily\"\n{github_config}\n\
         [[instance]]\nname = \"github-revoked\"\nplugin = \"{github_plugin}\"\n{wrong_token}\n\
         [[instance]]\nname = \"stuck\"\nplugin = \"{hostile}\"\ntime_limit_seconds = 2\n[instance.connector]\nbehavior = \"sleep\"\n",
        defender_plugin = artifacts::plugin("plugin_defender").display(),
        github_plugin = artifacts::plugin("plugin_dependabot").display(),
        hostile = artifacts::plugin("test_plugin_hostile").display(),
        defender_config = inline(&defender.config_toml()),
        github_config = inline(&github.config_toml()),
        wrong_token = inline(&wrong_token),
    );
    let path = dir.join("platform.toml");
    std::fs::write(&path, platform).unwrap();

    let started = Instant::now();
    let out = run_cli(&["run-all", "--config", path.to_str().unwrap(), "--allow-insecure-loopback"], &[]);
    let took = started.elapsed();
    let stdout = out.stdout();
    assert!(!out.success(), "two instances failed, so the run fails");
    assert!(out.error_lines()[0].contains("2 of 4 instances failed; the others completed"), "{}", out.stderr());

    // The good instances wrote their files, each in its own directory.
    assert!(stdout.contains("== defender: ok in") && stdout.contains("schedule: every 4 hours"), "{stdout}");
    assert!(stdout.contains("== github: ok in"), "{stdout}");
    let defender_files = kdi::read_dir(&dir.join("out/defender"));
    let github_files = kdi::read_dir(&dir.join("out/github"));
    assert!(!defender_files.is_empty() && !github_files.is_empty());
    for (name, file) in defender_files.iter().chain(&github_files) {
        kdi::assert_valid(name, file);
    }
    assert!(
        github_files.iter().all(|(_, f)| f["assets"][0]["application"].is_string()),
        "github assets are repositories"
    );

    // The failing one says why; the hanging one was stopped at its limit.
    assert!(
        stdout.contains("== github-revoked: FAILED") && stdout.contains("GitHub refused the token (401)"),
        "{stdout}"
    );
    assert!(!stdout.contains("ghp_revoked"), "secrets stay out of the report");
    assert!(stdout.contains("== stuck: FAILED"), "{stdout}");
    assert!(
        stdout.contains("instance `stuck` did not stop within 5 s of its time limit of 2 s; abandoned"),
        "{stdout}"
    );
    let revoked_out = dir.join("out/github-revoked");
    assert!(!revoked_out.exists() || kdi::read_dir(&revoked_out).is_empty(), "a failed instance writes nothing");

    assert!(stdout.contains("== Total: 2 of 4 instances succeeded"), "{stdout}");
    assert!(stdout.contains("Failed instances                   github-revoked, stuck"), "{stdout}");
    // The stuck instance cost its limit plus the grace, not its hour of sleep.
    assert!(took < Duration::from_secs(60), "run-all took {took:?}");
}

#[test]
fn json_logs_carry_the_instance_plugin_and_stage_on_every_line() {
    let github = GithubSim::start(OrgSpec { seed: 3, repositories: 4, alerts: 20 }).unwrap();
    let dir = kdi::temp_dir("platform-json-logs");
    let platform = format!(
        "[defaults]\nout = \"out\"\n\n[[instance]]\nname = \"gh-one\"\nplugin = \"{plugin}\"\n{config}\n\
         [[instance]]\nname = \"gh-two\"\nplugin = \"{plugin}\"\n{config}\n",
        plugin = artifacts::plugin("plugin_dependabot").display(),
        config = inline(&github.config_toml()),
    );
    let path = dir.join("platform.toml");
    std::fs::write(&path, platform).unwrap();
    let args =
        ["run-all", "-v", "--log-format", "json", "--config", path.to_str().unwrap(), "--allow-insecure-loopback"];
    let out = run_cli(&args, &[]);
    assert!(out.success(), "{}", out.stderr());
    let lines: Vec<serde_json::Value> = out
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    // Every request a plugin makes is logged at debug level, within its instance's spans.
    let requests: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("GET "))).collect();
    assert!(requests.len() >= 4, "{lines:?}");
    for line in &requests {
        assert!(["gh-one", "gh-two"].contains(&line["instance"].as_str().unwrap_or("")), "{line}");
        assert_eq!(line["plugin"], "github-dependabot", "{line}");
        assert_eq!(line["stage"], "fetch", "{line}");
        assert_eq!(line["level"], "debug", "{line}");
    }
    assert!(requests.iter().any(|l| l["instance"] == "gh-one") && requests.iter().any(|l| l["instance"] == "gh-two"));
    assert!(!out.stderr().contains(&github.org().token), "secrets stay out of the logs");
}
