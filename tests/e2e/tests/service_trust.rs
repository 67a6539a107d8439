//! A plugin update must earn its trust. The service pins what an admin approved for
//! each connector (the plugin file's hash, field kinds, host values with defaults,
//! egress, secret bindings); these tests swap the plugin file for other versions of
//! it (the test plugin `update`, whose declarations are rewritten in a copy of the
//! built file, so each copy is a new file with new declarations, as a rebuilt
//! update is) and check that the connector pauses, that verify, PATCH and run-now
//! answer 409 while it is paused, and that the new origin receives nothing.

use connector_cvm_simulator::{CvmOptions, CvmSim};
use connector_e2e::artifacts;
use connector_e2e::kdi;
use connector_e2e::service::{cvm_settings, Api, Process, ADMIN_TOKEN};
use connector_simulators::echo::EchoServer;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const SECRET: &str = "update-secret-7f3a9c";
const MARKER: &[u8] = b"UPDATE-DECLARATIONS:version=";
const LENGTH: usize = 160;

/// Writes the update plugin with `declarations` into `plugins/`.
fn install(plugins: &Path, declarations: &str) {
    let mut bytes = std::fs::read(artifacts::plugin("test_plugin_update")).unwrap();
    let found: Vec<usize> =
        bytes.windows(MARKER.len()).enumerate().filter(|(_, w)| *w == MARKER).map(|(i, _)| i).collect();
    assert_eq!(found.len(), 1, "the declarations are in the file once");
    let at = found[0];
    let text = format!("UPDATE-DECLARATIONS:{declarations}");
    assert!(text.len() <= LENGTH, "declarations too long");
    let padded = format!("{text:<LENGTH$}");
    bytes[at..at + LENGTH].copy_from_slice(padded.as_bytes());
    std::fs::create_dir_all(plugins).unwrap();
    std::fs::write(plugins.join("test_plugin_update.wasm"), bytes).unwrap();
}

fn serve(state: &Path, plugins: &Path) -> (Process, Api) {
    let args = ["--plugins", plugins.to_str().unwrap(), "--workers", "1"];
    let (process, url) =
        Process::serve(state, &args, &[("CONNECTOR_HOST_ADMIN_TOKEN", ADMIN_TOKEN)]).unwrap_or_else(|e| panic!("{e}"));
    (process, Api::new(&url, Some(ADMIN_TOKEN)))
}

fn stop(mut process: Process) -> String {
    process.signal(libc::SIGTERM);
    assert!(process.wait(Duration::from_secs(30)).success(), "{}", process.log_text());
    process.log_text()
}

/// The connector is paused naming `change`, and nothing of the plugin runs with
/// its secrets: verify, PATCH and run-now answer 409.
fn assert_paused(api: &Api, id: &str, change: &str) {
    let (_, connector) = api.get(&format!("/api/connectors/{id}"));
    let reason = connector["paused_reason"].as_str().unwrap_or_else(|| panic!("not paused: {connector}"));
    assert!(reason.contains(change), "the pause names `{change}`: {reason}");
    assert!(reason.contains(&format!("/api/connectors/{id}/approve")), "{reason}");
    assert!(connector["next_due"].is_null());
    let (status, body) = api.post(&format!("/api/connectors/{id}/verify"), json!({}));
    assert_eq!(status, 409, "verify while paused: {body}");
    assert!(body["changes"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().contains(change)), "{body}");
    let (status, body) = api.call("PATCH", &format!("/api/connectors/{id}"), Some(json!({"name": "renamed"})));
    assert_eq!(status, 409, "PATCH while paused: {body}");
    let (status, body) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
    assert_eq!(status, 409, "run-now while paused: {body}");
}

fn approve(api: &Api, id: &str) -> Value {
    let (status, approved) = api.post(&format!("/api/connectors/{id}/approve"), json!({}));
    assert_eq!(status, 200, "{approved}");
    assert!(approved["paused_reason"].is_null(), "{approved}");
    approved
}

#[test]
fn an_update_that_could_move_a_secret_pauses_the_connector_until_an_admin_approves_it() {
    let (api_host, collector, moved) =
        (EchoServer::start().unwrap(), EchoServer::start().unwrap(), EchoServer::start().unwrap());
    let dir = kdi::temp_dir("service-trust");
    let (state, plugins) = (dir.join("state"), dir.join("plugins"));
    let declarations = |default: &str, token: &str, bind: &str, build: u32| {
        format!("version=1.{build}.0;default={default};token={token};bind={bind};build={build}")
    };
    install(&plugins, &declarations(api_host.base_url(), "secret", "host", 1));
    let (process, api) = serve(&state, &plugins);
    // Saved with `host` at its default: the approval pins the default's value.
    let (status, created) = api.post(
        "/api/connectors",
        json!({"plugin": "test-update", "name": "update", "settings": {"token": SECRET, "collector": collector.base_url()}}),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, verified) = api.post(&format!("/api/connectors/{id}/verify"), json!({}));
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(api_host.received(), [format!("token={SECRET}").into_bytes()]);
    // verify's check details are masked: the echo of the secret reads [REDACTED].
    assert_eq!(verified["checks"][0]["detail"], "answered token=[REDACTED]", "{verified}");
    let mut logs = stop(process);

    // 1. The same declarations in another file: the hash alone pauses it.
    install(
        &plugins,
        &declarations(api_host.base_url(), "secret", "host", 2).replace("version=1.2.0", "version=1.1.0"),
    );
    let (process, api) = serve(&state, &plugins);
    assert_paused(&api, &id, "the plugin file changed");
    let approved = approve(&api, &id);
    assert!(approved["approved_changes"][0].as_str().unwrap().contains("the plugin file changed"), "{approved}");
    logs += &stop(process);

    // 2. A widened binding: the token may now go to `{collector}` too.
    install(&plugins, &declarations(api_host.base_url(), "secret", "host+collector", 3));
    let (process, api) = serve(&state, &plugins);
    assert_paused(&api, &id, "secret `token` may now be sent to {collector}");
    logs += &stop(process);

    // 3. The secret turned text: the plugin would get the raw value.
    install(&plugins, &declarations(api_host.base_url(), "text", "host", 4));
    let (process, api) = serve(&state, &plugins);
    assert_paused(&api, &id, "field `token` was secret, now text");
    let approved = approve(&api, &id);
    let problems = approved["problems"].to_string();
    assert!(problems.contains("`token` is stored as a secret"), "approval says what to fix: {approved}");
    // Approved, the run still refuses to hand the stored secret over as text.
    let (status, run) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
    assert_eq!(status, 202, "{run}");
    let run = api.wait_for_run(run["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("`token` is stored as a secret"), "{run}");
    logs += &stop(process);

    // 4. A moved default: `host` defaults to another origin now.
    install(&plugins, &declarations(moved.base_url(), "secret", "host", 5));
    let (process, api) = serve(&state, &plugins);
    assert_paused(&api, &id, &format!("host field `host` now means {}", moved.base_url()));
    logs += &stop(process);

    assert!(collector.requests().is_empty(), "the collector got: {:?}", collector.requests());
    assert!(moved.requests().is_empty(), "the moved default got: {:?}", moved.requests());
    assert_eq!(api_host.received().len(), 1, "only the first verify sent the secret");
    assert!(!logs.contains(SECRET), "a secret in the log");
    for answer in api.answers.lock().unwrap().iter() {
        assert!(!answer.contains(SECRET), "a secret in an answer: {answer}");
    }
    assert_eq!(files_holding(&state, SECRET), Vec::<String>::new(), "the secret in the clear in the state directory");
}

/// The files under `dir` that hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn moving_a_secrets_origin_needs_the_secret_again_and_a_revoked_token_stays_revoked() {
    let (api_host, elsewhere) = (EchoServer::start().unwrap(), EchoServer::start().unwrap());
    let dir = kdi::temp_dir("service-trust-move");
    let (state, plugins) = (dir.join("state"), dir.join("plugins"));
    install(&plugins, &format!("version=1.0.0;default={};token=secret;bind=host;build=1", api_host.base_url()));
    let (process, api) = serve(&state, &plugins);
    let cvm_sim = CvmSim::start(CvmOptions::default()).unwrap();
    let cvm = cvm_settings(&cvm_sim);
    let (status, created) = api.post(
        "/api/connectors",
        json!({"plugin": "test-update", "name": "move", "settings": {"token": SECRET}, "cvm": cvm}),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/connectors/{id}");

    // The host the token is bound to, moved without the token: refused, naming it.
    let (status, body) = api.call("PATCH", &path, Some(json!({"settings": {"host": elsewhere.base_url()}})));
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("enter `token` again"), "{body}");
    // The CVM API key's host, likewise.
    let (status, body) = api.call("PATCH", &path, Some(json!({"cvm": {"api_host": elsewhere.base_url()}})));
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("cvm.api_key"), "{body}");
    // With the secret given again, the move is the admin's to make.
    let (status, body) = api.call(
        "PATCH",
        &path,
        Some(json!({"settings": {"host": elsewhere.base_url(), "token": "a-new-token-value"}})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, verified) = api.post(&format!("{path}/verify"), json!({}));
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(elsewhere.received(), [b"token=a-new-token-value".to_vec()]);
    assert!(api_host.received().is_empty());

    // Revoke the environment's token (after making another admin): it stays revoked
    // across a restart, though the environment still names it.
    let (status, other) = api.post("/api/tokens", json!({"name": "second admin", "role": "admin"}));
    assert_eq!(status, 201, "{other}");
    let (_, tokens) = api.get("/api/tokens");
    let from_env = tokens.as_array().unwrap().iter().find(|t| t["name"] == "admin (from the environment)").unwrap();
    let second = Api::new(&api.base, other["token"].as_str());
    let (status, _) = second.call("DELETE", &format!("/api/tokens/{}", from_env["id"].as_str().unwrap()), None);
    assert_eq!(status, 204);
    stop(process);
    let (process, api) = serve(&state, &plugins);
    assert_eq!(api.get("/api/connectors").0, 401, "the revoked token came back");
    assert_eq!(Api::new(&api.base, other["token"].as_str()).get("/api/connectors").0, 200);
    let log = stop(process);
    assert!(log.contains("is not a token of this service"), "{log}");
}

#[test]
fn the_origins_a_contract_0_2_plugin_derives_are_pinned_and_shown() {
    let (api_host, derived) = (EchoServer::start().unwrap(), EchoServer::start().unwrap());
    let dir = kdi::temp_dir("service-trust-derived");
    let (state, plugins) = (dir.join("state"), dir.join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(artifacts::plugin("test_plugin_contract_v0_2"), plugins.join("test_plugin_contract_v0_2.wasm"))
        .unwrap();
    let (process, api) = serve(&state, &plugins);
    let settings = json!({"api": api_host.base_url(), "derived": derived.base_url(), "token": SECRET});
    let (status, created) =
        api.post("/api/connectors", json!({"plugin": "test-contract-v0-2", "name": "legacy", "settings": settings}));
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["approved"]["derived"],
        json!([derived.base_url()]),
        "the admin sees what it derived: {created}"
    );
    assert_eq!(created["changes"], json!([]));
    let id = created["id"].as_str().unwrap();
    let (status, run) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
    assert_eq!(status, 202, "{run}");
    let run = api.wait_for_run(run["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(derived.received(), [b"hello".to_vec()], "the approved derived origin is reached, without the secret");
    stop(process);
}
