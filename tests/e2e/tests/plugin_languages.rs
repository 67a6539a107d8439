//! The contract is language-neutral: plugins written in Python (componentize-py)
//! and JavaScript (componentize-js) are built from source here, as their guides say, and run in the same host as the
//! Rust plugins. The example is checked against the same oracle as the Rust
//! Dependabot plugin; the guide shows exactly the code that is built; and the
//! sandbox holds a hostile Python plugin exactly as it holds a Rust one.

use connector_e2e::artifacts::{run_cli, CliOutput};
use connector_e2e::dependabot::{oracle, written};
use connector_e2e::kdi;
use connector_e2e::languages::{
    component_world, componentize_javascript, componentize_python, guide_block, repository,
};
use connector_host::config::ConnectorConfig;
use connector_host::engine::{Plugin, PluginHost, SessionOptions};
use connector_host::run::{self, RunOptions};
use connector_simulators::echo::EchoServer;
use connector_simulators::github::{GithubSim, OrgSpec};
use std::path::Path;
use std::sync::OnceLock;

const SPEC: OrgSpec = OrgSpec { seed: 17, repositories: 240, alerts: 260 };
const SECRET: &str = "python-secret-4f1d";

fn cli(plugin: &Path, command: &str, config: &Path, out: Option<&Path>) -> CliOutput {
    let mut args = vec![command, "--plugin", plugin.to_str().unwrap(), "--config", config.to_str().unwrap()];
    if let Some(out) = out {
        args.extend(["--out", out.to_str().unwrap()]);
    }
    args.push("--allow-insecure-loopback");
    run_cli(&args, &[])
}

/// The example from its guide: `info`, `verify` and `run`, the KDI against the oracle
/// the Rust plugin's tests use.
fn an_example_runs_like_the_rust_plugin(plugin: &Path, id: &str) {
    let info = run_cli(&["info", "--plugin", plugin.to_str().unwrap(), "--json"], &[]);
    assert!(info.success(), "{}", info.stderr());
    let info: serde_json::Value = serde_json::from_str(&info.stdout()).unwrap();
    assert_eq!(info["id"], id);
    assert!(info.to_string().contains("0.4.0"), "declares contract 0.4: {info}");

    let sim = GithubSim::start(SPEC).unwrap();
    let dir = kdi::temp_dir(&format!("language-{id}"));
    let config = dir.join("connector.toml");
    let org = sim.org();
    std::fs::write(&config, sim.connection_toml()).unwrap();

    let verified = cli(plugin, "verify", &config, None);
    assert!(verified.success(), "{}{}", verified.stdout(), verified.stderr());
    assert!(verified.stdout().contains("Dependabot alerts"), "{}", verified.stdout());

    let out = dir.join("out");
    let ran = cli(plugin, "run", &config, Some(&out));
    assert!(ran.success(), "{}", ran.stderr());
    let expected = oracle(&sim);
    assert!(expected.values().map(|v| v.len()).sum::<usize>() > 50, "a meaningful org");
    assert_eq!(written(&out), expected, "the same records as the Rust plugin's oracle");
    let summary = ran.stdout();
    let open = org.alerts.iter().filter(|a| a.state == "open").count();
    assert!(summary.contains(&format!("{open}")), "the alerts fetched are counted: {summary}");
    assert!(summary.contains("advisory withdrawn by GitHub"), "skips are counted by reason: {summary}");
    assert!(!summary.contains(&org.token) && !ran.stderr().contains(&org.token), "the token leaked");
}

#[test]
fn a_python_plugin_built_as_its_guide_says_runs_like_the_rust_one() {
    let plugin = componentize_python("python-dependabot");
    an_example_runs_like_the_rust_plugin(&plugin, "python-dependabot");
}

#[test]
fn a_javascript_plugin_built_as_its_guide_says_runs_like_the_rust_one() {
    let plugin = componentize_javascript("javascript-dependabot");
    an_example_runs_like_the_rust_plugin(&plugin, "javascript-dependabot");
}

/// They are just components: the service's catalogue (which the console draws)
/// lists them with their section, fields and egress, and a connector of one runs.
#[test]
fn the_service_lists_python_and_javascript_plugins_like_any_other_and_runs_them() {
    use connector_e2e::service::{Api, Process, ADMIN_TOKEN};
    let dir = kdi::temp_dir("languages-service");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for built in [componentize_python("python-dependabot"), componentize_javascript("javascript-dependabot")] {
        std::fs::copy(&built, plugins.join(built.file_name().unwrap())).unwrap();
    }
    let env = [("CONNECTOR_HOST_ADMIN_TOKEN", ADMIN_TOKEN)];
    let (_serve, url) = Process::serve(&dir.join("state"), &["--plugins", plugins.to_str().unwrap()], &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let api = Api::new(&url, Some(ADMIN_TOKEN));
    let (status, listed) = api.get("/api/plugins");
    assert_eq!(status, 200, "{listed}");
    for id in ["python-dependabot", "javascript-dependabot"] {
        let plugin =
            listed.as_array().unwrap().iter().find(|p| p["id"] == id).unwrap_or_else(|| panic!("{id}: {listed}"));
        assert_eq!(plugin["section"], "Application Security", "{plugin}");
        assert_eq!(plugin["contract"], "0.4.0", "{plugin}");
        assert_eq!(plugin["installed"], true);
        assert_eq!(plugin["egress"][0]["origin"], "{host}", "{plugin}");
        assert!(plugin["fields"].to_string().contains("\"token\""), "{plugin}");
    }
    let sim = GithubSim::start(SPEC).unwrap();
    let org = sim.org();
    let settings = serde_json::json!({"organization": org.name, "token": org.token, "host": sim.base_url()});
    let body = serde_json::json!({"plugin": "python-dependabot", "name": "python", "settings": settings});
    let (status, connector) = api.post("/api/connectors", body);
    assert_eq!(status, 201, "{connector}");
    let (status, queued) =
        api.post(&format!("/api/connectors/{}/runs", connector["id"].as_str().unwrap()), serde_json::json!({}));
    assert_eq!(status, 202, "{queued}");
    let run = api.wait_for_run(queued["id"].as_str().unwrap(), std::time::Duration::from_secs(120));
    assert_eq!(run["status"], "succeeded", "{run}");
    let repositories: usize = oracle(&sim).len();
    assert_eq!(run["assets"], repositories, "{run}");
}

/// What `jco wit` shows, as the JavaScript guide says: the JavaScript component
/// imports the contract's interfaces and nothing else (its build disables the WASI
/// parts); the Python one also imports WASI's, which the host lends empty.
#[test]
fn the_components_import_what_their_guides_say() {
    let contract = |line: &str| line.starts_with("import vulnbridge:connector/") && line.ends_with("@0.4.0;");
    let javascript = component_world(&componentize_javascript("javascript-dependabot"));
    let imports: Vec<&str> = javascript.lines().map(str::trim).filter(|l| l.starts_with("import ")).collect();
    assert_eq!(imports.len(), 4, "http, log, types and output: {javascript}");
    assert!(imports.iter().all(|l| contract(l)), "only the contract: {javascript}");
    let python = component_world(&componentize_python("python-dependabot"));
    for world in [&javascript, &python] {
        assert!(world.contains("export vulnbridge:connector/connector@0.4.0;"), "{world}");
        assert!(world.contains("import vulnbridge:connector/http@0.4.0;"), "{world}");
        assert!(!world.contains("wasi:http"), "the host lends no wasi:http: {world}");
    }
    assert!(python.contains("import wasi:sockets/tcp@"), "CPython's WASI imports, lent empty: {python}");
}

#[test]
fn each_guide_shows_the_code_that_is_built() {
    let root = repository();
    for (guide, path) in [
        ("wit/guides/python.md", "tests/plugins/python-dependabot/app.py"),
        ("wit/guides/javascript.md", "tests/plugins/javascript-dependabot/plugin.js"),
        ("wit/guides/javascript.md", "tests/plugins/javascript-dependabot/package.json"),
    ] {
        let text = std::fs::read_to_string(root.join(guide)).unwrap();
        let file = std::fs::read_to_string(root.join(path)).unwrap();
        assert!(guide_block(&text, path) == file, "{guide} must show {path} as it is: copy it in again");
    }
}

struct Hostile {
    host: PluginHost,
    plugin: Plugin,
}

fn hostile() -> &'static Hostile {
    static HOSTILE: OnceLock<Hostile> = OnceLock::new();
    HOSTILE.get_or_init(|| {
        let host = PluginHost::new().unwrap();
        let plugin = host.load(&componentize_python("python-hostile")).unwrap();
        Hostile { host, plugin }
    })
}

/// Runs the hostile Python plugin with a behavior; the run's error.
fn misbehave(behavior: &str, extra: &str) -> String {
    let h = hostile();
    let text = format!("[connector]\nbehavior = \"{behavior}\"\n{extra}");
    let config = ConnectorConfig::parse(&text, &|_| None).unwrap();
    let out = kdi::temp_dir(&format!("python-hostile-{behavior}"));
    let session = SessionOptions { allow_insecure_loopback: true, ..Default::default() };
    let options = RunOptions { out_dir: out.clone(), ..Default::default() };
    let result = run::run(&h.host, &h.plugin, &config, session, &options);
    assert!(kdi::read_dir(&out).is_empty(), "a failed run writes nothing");
    format!("{:#}", result.expect_err("the hostile plugin must fail"))
}

#[test]
fn a_python_plugin_is_refused_an_undeclared_origin_as_a_rust_one_is() {
    let error = misbehave("denied-host", "");
    assert!(error.contains("request refused: HttpError_Denied("), "the plugin got the refusal as a value: {error}");
    assert!(error.contains("https://evil.example:443 is not allowed for this run"), "{error}");
    assert!(error.contains(r#"add "https://evil.example:443" to `allow` in the [network] table"#), "{error}");
}

#[test]
fn a_python_plugin_cannot_send_a_secret_to_an_origin_it_is_not_bound_to() {
    let (target, collector) = (EchoServer::start().unwrap(), EchoServer::start().unwrap());
    let text = format!(
        "target = \"{}\"\ncollector = \"{}\"\nsecret = \"{SECRET}\"\n",
        target.base_url(),
        collector.base_url()
    );
    let error = misbehave("unbound-origin", &text);
    assert!(
        error.contains("collector refused: HttpError_Denied(value='the secret `secret` may not be sent to"),
        "{error}"
    );
    assert!(collector.received().is_empty(), "nothing reached the origin the secret is not bound to");
    assert!(!error.contains(SECRET));
}

#[test]
fn a_runaway_python_loop_is_stopped_by_the_cpu_limit() {
    let error = misbehave("loop", "[limits]\ncpu_seconds = 1\n");
    assert!(error.contains("plugin `test-python-hostile` exceeded its CPU limit of 1 s per call"), "{error}");
    assert!(error.ends_with("in `fetch`"), "{error}");
}

#[test]
fn a_python_memory_bomb_is_stopped_by_the_memory_limit() {
    let error = misbehave("memory", "[limits]\nmemory_mb = 128\n");
    assert!(
        error
            .contains("plugin `test-python-hostile` exceeded its memory limit of 128 MiB (tried to grow its memory to"),
        "{error}"
    );
}
