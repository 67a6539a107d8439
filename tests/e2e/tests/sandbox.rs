//! Hostile plugins: each misbehaves on purpose; the host stops it with a specific
//! error, and then runs a well-behaved plugin normally.

use connector_e2e::artifacts::{self, run_cli};
use connector_e2e::kdi;
use connector_host::config::ConnectorConfig;
use connector_host::engine::{Plugin, PluginHost, SessionOptions};
use connector_host::run::{self, RunOptions};
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use connector_simulators::echo::EchoServer;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Hosted {
    host: PluginHost,
    hostile: Plugin,
    defender: Plugin,
}

fn hosted() -> &'static Hosted {
    static HOSTED: OnceLock<Hosted> = OnceLock::new();
    HOSTED.get_or_init(|| {
        let host = PluginHost::new().unwrap();
        let hostile = host.load(&artifacts::plugin("test_plugin_hostile")).unwrap();
        let defender = host.load(&artifacts::plugin("plugin_defender")).unwrap();
        Hosted { host, hostile, defender }
    })
}

fn session() -> SessionOptions {
    SessionOptions { allow_insecure_loopback: true, ..Default::default() }
}

/// Runs the hostile plugin with a behavior and extra configuration; returns the error.
fn misbehave(behavior: &str, extra: &str) -> String {
    let h = hosted();
    let config =
        ConnectorConfig::parse(&format!("[connector]\nbehavior = \"{behavior}\"\n{extra}"), &|_| None).unwrap();
    let out = kdi::temp_dir(&format!("sandbox-{behavior}"));
    let result =
        run::run(&h.host, &h.hostile, &config, session(), &RunOptions { out_dir: out.clone(), ..Default::default() });
    assert!(kdi::read_dir(&out).is_empty());
    let error = format!("{:#}", result.expect_err("the hostile plugin must fail"));
    assert_host_still_works();
    error
}

/// The same host then runs the Defender plugin normally.
fn assert_host_still_works() {
    let h = hosted();
    let sim = DefenderSim::start(TenantSpec { seed: 9, devices: 20, rows: 200 }, SimOptions::default()).unwrap();
    let config = ConnectorConfig::parse(&sim.config_toml(), &|_| None).unwrap();
    let out = kdi::temp_dir(&format!("sandbox-after-{}", sim.base_url().rsplit(':').next().unwrap()));
    let summary =
        run::run(&h.host, &h.defender, &config, session(), &RunOptions { out_dir: out, ..Default::default() })
            .expect("a well-behaved plugin runs normally after a hostile one");
    assert_eq!(summary.assets_written, sim.tenant().active_machines().count());
}

#[test]
fn an_endless_loop_is_stopped_by_the_cpu_limit() {
    let started = Instant::now();
    let error = misbehave("loop", "[limits]\ncpu_seconds = 1\n");
    assert!(error.contains("plugin `test-hostile` exceeded its CPU limit of 1 s per call"), "{error}");
    assert!(error.ends_with("in `fetch`"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let error = misbehave("memory", "[limits]\nmemory_mb = 64\n");
    assert!(
        error.contains("plugin `test-hostile` exceeded its memory limit of 64 MiB (tried to grow its memory to"),
        "{error}"
    );
}

#[test]
fn a_panic_reads_as_its_message() {
    let error = misbehave("panic", "");
    assert!(error.contains("plugin `test-hostile` crashed in `fetch`: panicked at"), "{error}");
    assert!(error.contains("test plugin panics on purpose: row 17 has no id"), "{error}");
}

#[test]
fn a_host_not_granted_is_refused_as_a_value_that_says_what_to_add() {
    let error = misbehave("denied-host", "");
    assert!(error.contains("request refused: HttpError::Denied("), "the plugin got the refusal as a value: {error}");
    assert!(error.contains("https://evil.example:443 is not allowed for this run"), "{error}");
    assert!(error.contains(r#"add \"https://evil.example:443\" to `allow` in the [network] table"#), "{error}");
}

#[test]
fn an_output_flood_is_stopped_by_the_output_limit() {
    let error = misbehave("flood", "[limits]\noutput_records = 50000\n");
    assert!(error.contains("plugin `test-hostile` exceeded its output limit of 50000 records"), "{error}");
}

#[test]
fn a_log_flood_is_stopped_by_the_log_limit() {
    let error = misbehave("log-flood", "[limits]\nlog_lines = 100\n");
    assert!(error.contains("plugin `test-hostile` exceeded its log limit of 100 lines (wrote line 101)"), "{error}");
}

#[test]
fn the_filesystem_is_out_of_reach() {
    let error = misbehave("filesystem", "");
    assert!(error.contains("filesystem: read Err(") && error.contains("write Err("), "{error}");
}

#[test]
fn sockets_are_out_of_reach() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let error = misbehave("sockets", &format!("target = \"http://{address}\"\n"));
    assert!(error.contains(&format!("sockets: connect to {address}: Err(")), "{error}");
    assert!(listener.accept().is_err(), "no connection reached the listener");
}

#[test]
fn a_plugin_importing_wasi_http_is_refused_at_load() {
    let error = format!("{:#}", hosted().host.load(&artifacts::plugin("test_plugin_wasi_http")).err().unwrap());
    assert!(error.contains("needs imports this host does not provide") && error.contains("wasi:http"), "{error}");
    assert_host_still_works();
}

#[test]
fn a_secret_never_reaches_the_plugin_logs_or_a_host_not_granted() {
    let echo = EchoServer::start().unwrap();
    let text = format!(
        "[connector]\nbehavior = \"exfiltrate\"\ntarget = \"{}\"\nsecret = {{ env = \"HOSTILE_SECRET\" }}\n",
        echo.base_url()
    );
    let (out, _) = run_hostile("exfiltrate", &text);
    let (stdout, stderr) = (out.stdout(), out.stderr());
    assert!(out.success(), "{stderr}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret leaked: {stderr}");
    // The plugin only ever had a placeholder, and logging it reveals nothing.
    assert!(stderr.contains("my secret is __SECRET_"), "{stderr}");
    // The host not granted got nothing, and the host said so.
    assert!(stderr.contains("denied a request: https://evil.example:443 is not allowed"), "{stderr}");
    // The granted host got the real secret, and its echo reached the plugin masked.
    assert_eq!(echo.received(), [format!("stolen={SECRET}").into_bytes()]);
    assert!(stderr.contains("echo answered: stolen=[REDACTED]"), "{stderr}");
    assert!(
        !stdout.contains("hostile plugin stdout line") && !stderr.contains("hostile plugin stdout line"),
        "stdout is discarded"
    );
}

#[test]
fn compiled_components_are_cached_and_a_damaged_entry_is_compiled_again() {
    let dir = kdi::temp_dir("component-cache");
    let host = PluginHost::new().unwrap().with_cache_dir(Some(dir.clone()));
    let path = artifacts::plugin("plugin_defender");
    assert!(!host.load(&path).unwrap().from_cache, "the first load compiles");
    let warm = host.load(&path).unwrap();
    assert!(warm.from_cache, "the second load uses the cache");
    assert_eq!(warm.info.id, "defender-tvm");
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1);
    std::fs::write(&entries[0], b"not compiled code").unwrap();
    let recompiled = host.load(&path).unwrap();
    assert!(!recompiled.from_cache, "a damaged entry is compiled again");
    assert!(host.load(&path).unwrap().from_cache, "and replaced");
}

/// Runs `plugin` through the CLI with `config_text` and `SECRET` in the environment;
/// returns the output and every file it wrote, as text.
fn run_plugin(plugin: &str, name: &str, config_text: &str) -> (artifacts::CliOutput, String) {
    let dir = kdi::temp_dir(&format!("sandbox-{name}"));
    let config = dir.join("plugin.toml");
    std::fs::write(&config, config_text).unwrap();
    let plugin = artifacts::plugin(plugin);
    let out_dir = dir.join("out");
    let args = [
        "run",
        "-v",
        "--plugin",
        plugin.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--allow-insecure-loopback",
    ];
    let out = run_cli(&args, &[("HOSTILE_SECRET", SECRET)]);
    let files: String = std::fs::read_dir(&out_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    (out, files)
}

/// The hostile plugin through the CLI (see [`run_plugin`]).
fn run_hostile(name: &str, config_text: &str) -> (artifacts::CliOutput, String) {
    run_plugin("test_plugin_hostile", name, config_text)
}

const SECRET: &str = "hunter2-super-secret";

#[test]
fn an_echoed_secret_reaches_no_file_log_or_summary_however_it_came_back() {
    let echo = EchoServer::start().unwrap();
    let text = format!(
        "[connector]\nbehavior = \"echo-escapes\"\ntarget = \"{}\"\nsecret = {{ env = \"HOSTILE_SECRET\" }}\nnote = \"n\"\n",
        echo.base_url()
    );
    let (out, files) = run_hostile("echo-escapes", &text);
    let (stdout, stderr) = (out.stdout(), out.stderr());
    assert!(out.success(), "{stderr}");
    // The echo server got the secret twice: the plugin's own API may see it.
    assert_eq!(echo.received().len(), 2);
    assert!(echo.received().iter().all(|b| b == format!("stolen={SECRET}").as_bytes()));
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr), ("the KDI files", &files)] {
        assert!(!text.contains(SECRET), "the secret reached {what}: {text}");
    }
    // Neither gzip (the host drops Accept-Encoding) nor \u escapes got it past the mask.
    assert!(stderr.contains("decoded echoes: stolen=[REDACTED] / {\"echo\":\"stolen=[REDACTED]\"}"), "{stderr}");
    assert!(stderr.contains("dropped the plugin's `accept-encoding` header"), "{stderr}");
    assert!(files.contains("stolen=[REDACTED]"), "the tags were written, masked: {files}");
    assert_host_still_works();
}

#[test]
fn a_plugin_cannot_widen_its_egress_at_configure() {
    let error = misbehave("derive-origin", "target = \"https://api.example.com\"\n");
    assert!(error.contains("plugin `test-hostile` configured an origin it did not declare"), "{error}");
    assert!(error.contains("`https://attacker.example` is not among the origins the plugin declares"), "{error}");
}

#[test]
fn a_secret_goes_only_to_the_origins_it_is_bound_to() {
    let (target, collector) = (EchoServer::start().unwrap(), EchoServer::start().unwrap());
    let text = format!(
        "target = \"{}\"\ncollector = \"{}\"\nsecret = \"{SECRET}\"\n",
        target.base_url(),
        collector.base_url()
    );
    let error = misbehave("unbound-origin", &text);
    assert!(error.contains("collector refused: HttpError::Denied(\"the secret `secret` may not be sent to"), "{error}");
    assert!(collector.received().is_empty(), "nothing reached the origin the secret is not bound to");
    assert!(!error.contains(SECRET));
}

#[test]
fn a_placeholder_split_by_a_control_character_is_refused_not_joined_and_sent() {
    // The hole: the host looked for placeholders in the raw URL, then a URL parser
    // dropped the tab and joined the placeholder, which was then filled in toward
    // an origin the secret is not bound to.
    let (target, collector) = (EchoServer::start().unwrap(), EchoServer::start().unwrap());
    let text = format!(
        "target = \"{}\"\ncollector = \"{}\"\nsecret = \"{SECRET}\"\n",
        target.base_url(),
        collector.base_url()
    );
    let error = misbehave("split-placeholder", &text);
    assert_eq!(error.matches("control character").count(), 3, "{error}");
    assert!(collector.requests().is_empty(), "nothing reached the collector: {:?}", collector.requests());
    assert!(!error.contains(SECRET) && !error.contains("hunter2"), "{error}");
    assert!(!error.contains("%2D") && !error.contains("super%2Dsecret"), "{error}");
}

#[test]
fn a_value_given_by_reference_is_refused_for_a_field_the_plugin_declares_as_text() {
    let echo = EchoServer::start().unwrap();
    let text = format!(
        "[connector]\nbehavior = \"echo-escapes\"\ntarget = \"{}\"\nsecret = \"s\"\nnote = {{ env = \"HOSTILE_SECRET\" }}\n",
        echo.base_url()
    );
    let (out, files) = run_hostile("text-field", &text);
    assert!(!out.success());
    let line = out.error_lines().join("\n");
    assert!(
        line.contains(
            "`note` is given by reference, so it is treated as a secret, but plugin test-hostile declares it as text"
        ),
        "{line}"
    );
    assert!(line.contains("`secret = false`"), "{line}");
    assert!(echo.received().is_empty() && files.is_empty(), "refused before anything ran");
    assert!(!out.stderr().contains(SECRET));
}

#[test]
fn a_plugin_of_contract_0_2_runs_and_its_secret_never_goes_to_an_origin_it_derived() {
    let (api, derived) = (EchoServer::start().unwrap(), EchoServer::start().unwrap());
    let text = format!(
        "[connector]\napi = \"{}\"\nderived = \"{}\"\ntoken = {{ env = \"HOSTILE_SECRET\" }}\n",
        api.base_url(),
        derived.base_url()
    );
    let (out, files) = run_plugin("test_plugin_contract_v0_2", "contract-v0-2", &text);
    assert!(out.success(), "{}", out.stderr());
    assert_eq!(api.received(), [format!("token={SECRET}").into_bytes()], "its host field gets the secret");
    assert_eq!(derived.received(), [b"hello".to_vec()], "the derived origin is reachable, without the secret");
    let files: serde_json::Value = serde_json::from_str(&files).unwrap();
    let tags = files["assets"][0]["tags"].to_string();
    assert!(tags.contains("api with token: answered token=[REDACTED]"), "{tags}");
    assert!(
        tags.contains("derived with token: refused HttpError::Denied(\\\"the secret `token` may not be sent to"),
        "{tags}"
    );
    assert!(tags.contains("derived without: answered hello"), "{tags}");
    assert!(tags.contains("derived split: refused HttpError::InvalidRequest"), "{tags}");
    assert!(tags.contains("control character"), "{tags}");
    let derived_requests = derived.requests().join("\n");
    assert!(!derived_requests.contains("hunter2") && !derived_requests.contains("collect"), "{derived_requests}");
    let plugin = artifacts::plugin("test_plugin_contract_v0_2");
    let info = run_cli(&["info", "--plugin", plugin.to_str().unwrap(), "--json"], &[]);
    let info: serde_json::Value = serde_json::from_str(&info.stdout()).unwrap();
    assert_eq!(info["contract"], "0.2.0");
    assert_eq!(info["egress"][0]["origin"], "{api}");
    assert_host_still_works();
}

#[test]
fn a_contract_0_2_plugin_may_derive_only_the_origins_its_operator_approved() {
    // A platform pins the origins a 0.2 plugin derived when its operator saved it;
    // one it derives later is refused at `configure`, before anything is sent.
    let (api, derived) = (EchoServer::start().unwrap(), EchoServer::start().unwrap());
    let h = hosted();
    let plugin = h.host.load(&artifacts::plugin("test_plugin_contract_v0_2")).unwrap();
    let text = format!(
        "[connector]\napi = \"{}\"\nderived = \"{}\"\ntoken = \"{SECRET}\"\n",
        api.base_url(),
        derived.base_url()
    );
    let config = ConnectorConfig::parse(&text, &|_| None).unwrap();
    let out = kdi::temp_dir("sandbox-derived-unapproved");
    let pinned = SessionOptions { approved_derived: Some(vec!["http://127.0.0.1:9".into()]), ..session() };
    let result = run::run(&h.host, &plugin, &config, pinned, &RunOptions { out_dir: out, ..Default::default() });
    let error = result.expect_err("an unapproved derived origin is refused");
    let unapproved =
        error.downcast_ref::<connector_host::engine::UnapprovedOrigin>().expect("typed, for a platform to pause on");
    assert_eq!(unapproved.origin, derived.base_url());
    assert!(format!("{error:#}").contains("which its operator has not approved"), "{error:#}");
    assert!(api.requests().is_empty() && derived.requests().is_empty(), "refused before fetch sent anything");
    // Approved, it runs.
    let approved = SessionOptions { approved_derived: Some(vec![derived.base_url().to_owned()]), ..session() };
    let out = kdi::temp_dir("sandbox-derived-approved");
    run::run(&h.host, &plugin, &config, approved, &RunOptions { out_dir: out, ..Default::default() }).unwrap();
    assert_eq!(derived.received(), [b"hello".to_vec()]);
}

#[test]
fn a_run_has_a_wall_clock_limit_outside_a_platform_too() {
    let started = Instant::now();
    let error = misbehave("loop", "[limits]\ncpu_seconds = 600\nrun_seconds = 2\n");
    assert!(error.contains("plugin `test-hostile` exceeded its run time limit of 2 s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn the_text_a_run_emits_is_capped_too() {
    let error = misbehave("flood", "[limits]\noutput_mb = 1\n");
    assert!(error.contains("plugin `test-hostile` exceeded its output limit of 1 MiB"), "{error}");
}

/// The hostile plugin through the CLI, keeping its state under `state`.
fn run_hostile_with_state(name: &str, config_text: &str, state: &std::path::Path) -> artifacts::CliOutput {
    let dir = kdi::temp_dir(&format!("sandbox-state-{name}"));
    let config = dir.join("hostile.toml");
    std::fs::write(&config, config_text).unwrap();
    let plugin = artifacts::plugin("test_plugin_hostile");
    let (out, state) = (dir.join("out"), state.to_str().unwrap());
    let args = ["run", "--plugin", plugin.to_str().unwrap(), "--config", config.to_str().unwrap()];
    let args =
        [&args[..], &["--out", out.to_str().unwrap(), "--state-dir", state, "--allow-insecure-loopback"]].concat();
    run_cli(&args, &[("HOSTILE_SECRET", SECRET)])
}

#[test]
fn a_plugins_state_is_masked_bounded_and_its_run_mode_is_held_to_the_contract() {
    let echo = EchoServer::start().unwrap();
    let state = kdi::temp_dir("sandbox-state-dir");
    let checkpoint = state.join("checkpoints/test-hostile--hostile.state");
    let config = |behavior: &str| {
        format!(
            "[connector]\nbehavior = \"{behavior}\"\ntarget = \"{}\"\nsecret = {{ env = \"HOSTILE_SECRET\" }}\nnote = \"n\"\n",
            echo.base_url()
        )
    };
    // What it decoded from the echoes goes into its state: masked, as everywhere.
    let out = run_hostile_with_state("echo", &config("echo-escapes"), &state);
    assert!(out.success(), "{}", out.stderr());
    let kept = String::from_utf8_lossy(&std::fs::read(&checkpoint).unwrap()).into_owned();
    assert!(kept.contains("decoded: stolen=[REDACTED]"), "{kept}");
    assert!(!kept.contains(SECRET), "the secret reached the state file: {kept}");
    // 65 MiB of state: refused, named, and the previous state stays.
    let out = run_hostile_with_state("flood", &config("state-flood"), &state);
    let line = out.error_lines().join("\n");
    assert!(line.contains("above its limit of 64 MiB ([limits] state_mb); the previous state stays"), "{line}");
    assert_eq!(String::from_utf8_lossy(&std::fs::read(&checkpoint).unwrap()), kept);
    // Asked for a full run, it answers incremental: refused before anything is fetched.
    let out = run_hostile_with_state("anyway", &config("incremental-anyway"), &kdi::temp_dir("sandbox-state-fresh"));
    let line = out.error_lines().join("\n");
    assert!(line.contains("answered a request for a full run with an incremental one"), "{line}");
    assert_host_still_works();
}
