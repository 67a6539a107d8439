//! The `connector-host` CLI against the simulated tenant: what a user sees.

use connector_e2e::artifacts::{self, run_cli};
use connector_e2e::kdi;
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use std::path::{Path, PathBuf};

fn sim() -> DefenderSim {
    DefenderSim::start(TenantSpec { seed: 3, devices: 40, rows: 400 }, SimOptions::default()).unwrap()
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = kdi::temp_dir(&format!("config-{name}"));
    let path = dir.join("connector.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn plugin() -> String {
    artifacts::plugin("plugin_defender").display().to_string()
}

/// `connector-host run` of the Defender plugin, over loopback.
fn run_defender(config: &Path, out_dir: &Path) -> artifacts::CliOutput {
    let (plugin, config, out) = (plugin(), config.to_str().unwrap(), out_dir.to_str().unwrap());
    run_cli(&["run", "--plugin", &plugin, "--config", config, "--out", out, "--allow-insecure-loopback"], &[])
}

fn verify(config: &Path) -> artifacts::CliOutput {
    run_cli(&["verify", "--plugin", &plugin(), "--config", config.to_str().unwrap(), "--allow-insecure-loopback"], &[])
}

/// The configuration with one `key = value` line replaced.
fn with(sim: &DefenderSim, key: &str, value: &str) -> String {
    sim.config_toml()
        .lines()
        .map(|l| if l.starts_with(&format!("{key} =")) { format!("{key} = \"{value}\"") } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exactly one error line, and no secret in anything printed.
fn one_error(out: &artifacts::CliOutput, secret: &str) -> String {
    assert!(!out.success(), "expected failure; stdout: {}", out.stdout());
    let lines = out.error_lines();
    assert_eq!(lines.len(), 1, "stderr: {}", out.stderr());
    assert!(!out.stderr().contains(secret) && !out.stdout().contains(secret), "a secret was printed");
    lines[0].clone()
}

#[test]
fn info_describes_the_plugin_and_its_fields() {
    let out = run_cli(&["info", "--plugin", &plugin(), "--json"], &[]);
    assert!(out.success(), "{}", out.stderr());
    let info: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(info["id"], "defender-tvm");
    assert_eq!(info["scanner_type"], "MS Defender TVM");
    let keys: Vec<&str> = info["fields"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(&keys[..5], ["name", "client_id", "client_secret", "host", "tenant_id"]);
    let secret = info["fields"].as_array().unwrap().iter().find(|f| f["key"] == "client_secret").unwrap();
    assert_eq!(secret["kind"], "secret");
    let text = run_cli(&["info", "--plugin", &plugin()], &[]);
    assert!(text.stdout().contains("client_secret") && text.stdout().contains("Contract: vulnbridge:connector@0.4.0"));
    // The operator sees where the plugin may connect, and where its secret may go.
    assert_eq!(secret["sent_to"][1], "https://login.microsoftonline.com");
    assert!(info["egress"].as_array().unwrap().iter().any(|e| e["origin"] == "https://*.blob.core.usgovcloudapi.net"));
    assert_eq!(info["independent_pages"], true);
    // Contract 0.4: its section, that it runs incrementally, its counters and choices.
    assert_eq!(info["section"], "Vulnerability Management");
    assert_eq!(info["incremental"], true);
    let rows = info["counters"].as_array().unwrap().iter().find(|c| c["role"] == "source_rows").unwrap();
    assert_eq!(rows["label"], "Vulnerability rows fetched");
    let cloud = info["fields"].as_array().unwrap().iter().find(|f| f["key"] == "cloud").unwrap();
    assert_eq!(cloud["choices"][3]["value"], "gcc-high");
    assert!(text.stdout().contains("one of: auto, commercial, gcc, gcc-high, dod"), "{}", text.stdout());
    assert!(
        text.stdout().contains("secret `client_secret` is sent only to: {login_host}, https://login.microsoftonline.com, https://login.microsoftonline.us"),
        "{}",
        text.stdout()
    );
}

#[test]
fn verify_reports_each_check() {
    let sim = sim();
    let out = verify(&write_config("verify-ok", &sim.config_toml()));
    assert!(out.success(), "{}", out.stderr());
    let stdout = out.stdout();
    for check in ["token", "Machine.Read.All", "Vulnerability.Read.All"] {
        assert!(stdout.contains(&format!("ok  {check}")), "{stdout}");
    }
    assert!(!stdout.contains(&sim.tenant().client_secret));
    assert!(
        stdout.contains("(v2 endpoint)") && stdout.contains("commercial cloud"),
        "verify says which cloud: {stdout}"
    );
    assert!(
        stdout.contains(&format!("{} answered /api/machines", sim.base_url().trim_start_matches("http://"))),
        "{stdout}"
    );
}

#[test]
fn verify_tells_credential_failures_apart() {
    let sim = sim();
    let secret = sim.tenant().client_secret.clone();
    let wrong_secret =
        one_error(&verify(&write_config("secret", &with(&sim, "client_secret", "not-the-secret"))), &secret);
    assert!(wrong_secret.contains("authentication failed: wrong client secret"), "{wrong_secret}");
    assert!(!wrong_secret.contains("not-the-secret"), "the wrong secret is a secret too");

    let tenant = one_error(
        &verify(&write_config("tenant", &with(&sim, "tenant_id", "00000000-0000-0000-0000-000000000001"))),
        &secret,
    );
    assert!(tenant.contains("unknown tenant"), "{tenant}");

    let client = one_error(
        &verify(&write_config("client", &with(&sim, "client_id", "00000000-0000-0000-0000-000000000002"))),
        &secret,
    );
    assert!(client.contains("unknown client id"), "{client}");
}

#[test]
fn verify_names_a_missing_permission() {
    let sim = DefenderSim::start(
        TenantSpec { seed: 3, devices: 5, rows: 5 },
        SimOptions { roles: vec!["Machine.Read.All".into()], ..Default::default() },
    )
    .unwrap();
    let line = one_error(&verify(&write_config("permission", &sim.config_toml())), &sim.tenant().client_secret);
    assert!(line.contains("permission missing: missing permission Vulnerability.Read.All"), "{line}");
}

#[test]
fn verify_reports_an_unreachable_host() {
    let sim = sim();
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = with(&sim, "login_host", &format!("http://127.0.0.1:{port}"));
    let line = one_error(&verify(&write_config("unreachable", &config)), &sim.tenant().client_secret);
    assert!(line.contains("host unreachable") && line.contains(&format!("127.0.0.1:{port}")), "{line}");
}

#[test]
fn bad_configurations_name_the_field() {
    let sim = sim();
    let secret = sim.tenant().client_secret.clone();
    let guid = one_error(&verify(&write_config("guid", &with(&sim, "client_id", "my-app"))), &secret);
    assert!(guid.contains("`client_id`: expected a GUID"), "{guid}");

    let missing: String =
        sim.config_toml().lines().filter(|l| !l.starts_with("tenant_id")).collect::<Vec<_>>().join("\n");
    let line = one_error(&verify(&write_config("missing", &missing)), &secret);
    assert!(line.contains("`tenant_id` (Tenant ID) is required"), "{line}");

    let unknown = one_error(
        &verify(&write_config("unknown", &format!("{}\nclient_secrte = \"x\"\n", sim.config_toml()))),
        &secret,
    );
    assert!(unknown.contains("`client_secrte` is not a field of defender-tvm"), "{unknown}");

    let toml = one_error(&verify(&write_config("toml", "[connector\nname = 1")), &secret);
    assert!(toml.contains("not valid TOML"), "{toml}");

    let out = run_cli(
        &["verify", "--plugin", &plugin(), "--config", write_config("flag", &sim.config_toml()).to_str().unwrap()],
        &[],
    );
    let line = one_error(&out, &secret);
    assert!(line.contains("needs --allow-insecure-loopback"), "{line}");
}

#[test]
fn the_secret_can_come_from_the_environment() {
    let sim = sim();
    let config = sim
        .config_toml()
        .lines()
        .map(|l| {
            if l.starts_with("client_secret") {
                "client_secret = { env = \"E2E_DEFENDER_SECRET\" }".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = write_config("env", &config);
    let args = ["verify", "--plugin", &plugin(), "--config", path.to_str().unwrap(), "--allow-insecure-loopback"];
    let out = run_cli(&args, &[("E2E_DEFENDER_SECRET", &sim.tenant().client_secret)]);
    assert!(out.success(), "{}", out.stderr());
    let line = one_error(&run_cli(&args, &[]), &sim.tenant().client_secret);
    assert!(line.contains("environment variable `E2E_DEFENDER_SECRET` is not set"), "{line}");
}

#[test]
fn run_writes_files_and_prints_the_summary() {
    let sim = sim();
    let out_dir = kdi::temp_dir("cli-run");
    let config = write_config("run", &sim.config_toml());
    let out = run_defender(&config, &out_dir);
    assert!(out.success(), "{}", out.stderr());
    let stdout = out.stdout();
    let active = sim.tenant().active_machines().count();
    assert!(stdout.contains(&format!("Devices fetched                    {active}")), "{stdout}");
    assert!(stdout.contains("Vulnerability rows fetched         400"), "{stdout}");
    for label in [
        "Rows skipped",
        "Assets written",
        "Vulnerabilities written",
        "Vulnerability definitions written",
        "Files written",
        "API calls made",
        "Throttled responses (429)",
        "Time taken",
    ] {
        assert!(stdout.contains(label), "summary lacks {label}: {stdout}");
    }
    let files = kdi::read_dir(&out_dir);
    let assets: usize = files.iter().map(|(_, f)| f["assets"].as_array().unwrap().len()).sum();
    assert_eq!(assets, active);
}

#[test]
fn a_failed_run_writes_nothing_and_keeps_earlier_files() {
    let sim = sim();
    let out_dir = kdi::temp_dir("cli-failed");
    std::fs::write(out_dir.join("kdi-00001.json"), "{\"earlier\": true}").unwrap();
    let config = write_config("failed", &with(&sim, "client_secret", "bad-secret-value"));
    let out = run_defender(&config, &out_dir);
    let line = one_error(&out, &sim.tenant().client_secret);
    assert!(line.contains("run failed; no files were written") && line.contains("wrong client secret"), "{line}");
    let names: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["kdi-00001.json"]);
    assert_eq!(std::fs::read_to_string(out_dir.join("kdi-00001.json")).unwrap(), "{\"earlier\": true}");
}

#[test]
fn a_plugin_panic_reads_as_its_message() {
    let config = write_config("panic", "[connector]\n");
    let out_dir = kdi::temp_dir("cli-panic-out");
    let panic_plugin = artifacts::plugin("test_plugin_hostile").display().to_string();
    let out = run_cli(
        &["run", "--plugin", &panic_plugin, "--config", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap()],
        &[],
    );
    let line = one_error(&out, "\u{0}");
    assert!(line.contains("plugin `test-hostile` crashed in `fetch`"), "{line}");
    assert!(line.contains("test plugin panics on purpose: row 17 has no id"), "{line}");
    assert!(kdi::read_dir(&out_dir).is_empty());
}

#[test]
fn the_demo_runs_without_credentials() {
    let out_dir = kdi::temp_dir("cli-demo");
    let out = run_cli(
        &["demo", "--out", out_dir.to_str().unwrap(), "--devices", "120", "--rows", "3000", "--plugin", &plugin()],
        &[],
    );
    assert!(out.success(), "{}", out.stderr());
    assert!(out.stdout().contains("Vulnerability rows fetched         3000"), "{}", out.stdout());
    assert!(!kdi::read_dir(&out_dir).is_empty());
}

#[test]
fn a_government_tenant_that_refuses_the_default_scope_is_told_which_one_works() {
    // A GCC High tenant whose Azure AD knows the Defender app only by the third
    // scope public clients use: the default is refused with AADSTS500011.
    let accepted = "https://securitycenter.onmicrosoft.us/windowsatpservice/.default";
    let sim = DefenderSim::start(
        TenantSpec { seed: 3, devices: 20, rows: 100 },
        SimOptions { scopes: Some(vec![accepted.into()]), ..Default::default() },
    )
    .unwrap();
    let secret = sim.tenant().client_secret.clone();
    let gov = format!("{}\ncloud = \"gcc-high\"\n", sim.config_toml());
    let line = one_error(&verify(&write_config("gov-verify", &gov)), &secret);
    assert!(
        line.contains("does not accept the token audience `https://api-gov.securitycenter.microsoft.us/.default`"),
        "{line}"
    );
    assert!(
        line.contains(&format!("`{accepted}` works for this tenant (GCC High cloud): set scope = \"{accepted}\"")),
        "{line}"
    );
    let tokens = sim.calls()["token"];
    assert_eq!(tokens, 3, "the default, then the two alternatives in order until one worked");

    // A run uses what is configured, and its error names the alternatives.
    let out = kdi::temp_dir("gov-run");
    let line = one_error(&run_defender(&write_config("gov-run", &gov), &out), &secret);
    assert!(line.contains("other scopes known for the GCC High cloud: https://api.securitycenter.microsoft.us/.default, https://securitycenter.onmicrosoft.us/windowsatpservice/.default"), "{line}");
    assert_eq!(sim.calls()["token"], tokens + 1, "a run does not try other scopes on its own");

    let pinned = format!("{gov}scope = \"{accepted}\"\n");
    let result = run_defender(&write_config("gov-pinned", &pinned), &out);
    assert!(result.success(), "{}", result.stderr());
    assert!(verify(&write_config("gov-pinned-verify", &pinned))
        .stdout()
        .contains(&format!("GCC High cloud (configured), scope {accepted}")));
}

#[test]
fn proxies_from_the_environment_are_not_used() {
    // A proxy would resolve names itself, past the host's address checks.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let url = format!("http://{}", proxy.local_addr().unwrap());
    let sim = sim();
    let out = kdi::temp_dir("cli-proxy");
    let (plugin, config) = (plugin(), write_config("proxy", &sim.config_toml()));
    let env = [("HTTPS_PROXY", url.as_str()), ("HTTP_PROXY", url.as_str()), ("ALL_PROXY", url.as_str())];
    let result = run_cli(
        &[
            "run",
            "--plugin",
            &plugin,
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--allow-insecure-loopback",
        ],
        &env,
    );
    assert!(result.success(), "{}", result.stderr());
    assert!(proxy.accept().is_err(), "no connection reached the proxy");
    assert!(!sim.calls().is_empty(), "the requests went to the tenant directly");
}
