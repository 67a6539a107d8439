//! The platform service end to end on its embedded SQLite database: `connector-host
//! serve` as a process, its REST API against the simulated Defender tenant and the
//! simulated CVM, schedules, restarts, and the secret key.

use connector_cvm_simulator::{CvmOptions, CvmSim};
use connector_e2e::kdi;
use connector_e2e::oracle;
use connector_e2e::service::{cvm_settings, defender_settings, Api, Process, ADMIN_TOKEN};
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const SPEC: TenantSpec = TenantSpec { seed: 77, devices: 60, rows: 1_500 };

fn start(state: &Path, env: &[(&str, &str)]) -> (Process, Api) {
    start_with(state, &[], env)
}

fn start_with(state: &Path, args: &[&str], env: &[(&str, &str)]) -> (Process, Api) {
    let mut with_token = vec![("CONNECTOR_HOST_ADMIN_TOKEN", ADMIN_TOKEN)];
    with_token.extend_from_slice(env);
    let (process, url) = Process::serve(state, args, &with_token).unwrap_or_else(|e| panic!("{e}"));
    (process, Api::new(&url, Some(ADMIN_TOKEN)))
}

/// Every byte of every file under `dir`, as text where it is text.
fn contains_anywhere(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(contains_anywhere(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn the_api_adds_verifies_and_runs_a_connector_and_never_shows_a_secret() {
    let defender = DefenderSim::start(SPEC, SimOptions::default()).unwrap();
    let cvm = CvmSim::start(CvmOptions::default()).unwrap();
    let dir = kdi::temp_dir("service-api");
    let state = dir.join("state");
    let (mut serve, api) = start_with(&state, &["--log-format", "json"], &[]);
    let secret = defender.tenant().client_secret.clone();
    let api_key = cvm.options().api_key.clone();

    // Health and metrics answer without a token; the API does not.
    assert_eq!(api.with_token(None).get("/healthz").0, 200);
    assert_eq!(api.with_token(None).get("/api/connectors").0, 401);
    assert_eq!(api.with_token(Some("not-a-token")).get("/api/connectors").0, 401);

    // The catalogue.
    let (status, plugins) = api.get("/api/plugins");
    assert_eq!(status, 200, "{plugins}");
    let defender_plugin =
        plugins.as_array().unwrap().iter().find(|p| p["id"] == "defender-tvm").expect("Defender offered");
    assert_eq!(defender_plugin["contract"], "0.4.0");
    assert_eq!(defender_plugin["section"], "Vulnerability Management", "the plugin names its section (0.4)");
    let keys: Vec<&str> =
        defender_plugin["fields"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert!(keys.starts_with(&["name", "client_id", "client_secret", "host", "tenant_id"]), "{keys:?}");
    assert!(!defender_plugin["egress"].as_array().unwrap().is_empty());

    // Bad settings: every field's problem, in the plugin's words where it found them.
    let (status, invalid) = api.post(
        "/api/connectors",
        json!({"plugin": "defender-tvm", "name": "Defender", "settings": {"host": "not a host", "client_id": "x"}}),
    );
    assert_eq!(status, 422, "{invalid}");
    let fields: BTreeSet<&str> =
        invalid["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, BTreeSet::from(["client_secret", "host", "tenant_id"]), "{invalid}");
    let (status, invalid) = api
        .post("/api/connectors", json!({"plugin": "defender-tvm", "name": "D", "settings": {}, "schedule": "daily"}));
    assert_eq!(status, 422);
    assert!(invalid["errors"].as_array().unwrap().iter().any(|e| e["field"] == "schedule"), "{invalid}");

    // Added with a wrong secret: saved, but Save and Verify names the failure.
    let mut settings = defender_settings(&defender);
    settings["client_secret"] = json!("wrong-secret-value");
    let body =
        json!({"plugin": "defender-tvm", "name": "Defender prod", "settings": settings, "cvm": cvm_settings(&cvm)});
    let (status, connector) = api.post("/api/connectors", body.clone());
    assert_eq!(status, 201, "{connector}");
    let id = connector["id"].as_str().unwrap().to_owned();
    assert_eq!(connector["settings"]["client_secret"], json!({"set": true}));
    assert_eq!(connector["cvm"]["api_key"], json!({"set": true}));
    assert_eq!(connector["settings"]["client_id"], defender.tenant().client_id.as_str());
    assert_eq!(api.post("/api/connectors", body).0, 409, "the name is taken");
    let (_, verified) = api.post(&format!("/api/connectors/{id}/verify"), json!({}));
    assert_eq!(verified["ok"], false, "{verified}");
    assert!(verified["error"].as_str().unwrap().contains("AADSTS7000215"), "{verified}");

    // Corrected: verify proves the token, the permissions and the CVM connector.
    let (status, changed) =
        api.call("PATCH", &format!("/api/connectors/{id}"), Some(json!({"settings": {"client_secret": secret}})));
    assert_eq!(status, 200, "{changed}");
    let (_, verified) = api.post(&format!("/api/connectors/{id}/verify"), json!({}));
    assert_eq!(verified["ok"], true, "{verified}");
    let checks: Vec<&str> =
        verified["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(checks.contains(&"CVM"), "{checks:?}");
    assert!(checks.len() >= 3, "{checks:?}");

    // A viewer reads but changes nothing.
    let (status, viewer) = api.post("/api/tokens", json!({"name": "auditor", "role": "viewer"}));
    assert_eq!(status, 201, "{viewer}");
    let viewer = api.with_token(viewer["token"].as_str());
    assert_eq!(viewer.get("/api/connectors").0, 200);
    assert_eq!(viewer.get("/api/session").1["role"], "viewer");
    assert_eq!(viewer.post(&format!("/api/connectors/{id}/runs"), json!({})).0, 403);
    assert_eq!(viewer.call("DELETE", &format!("/api/connectors/{id}"), None).0, 403);

    // Run now: one run at a time, its summary, its files, its upload.
    let (status, queued) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
    assert_eq!(status, 202, "{queued}");
    let run_id = queued["id"].as_str().unwrap().to_owned();
    let (status, _) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
    assert_eq!(status, 409, "a second run while one is queued or running");
    let run = api.wait_for_run(&run_id, Duration::from_secs(120));
    assert_eq!(run["status"], "succeeded", "{run}");
    let expected = oracle::expected_live(&defender.tenant());
    assert_eq!(run["summary"]["assets_written"], expected.assets.len(), "{run}");
    let open: usize = expected.assets.values().map(|a| a.vulns.len()).sum();
    assert_eq!(run["summary"]["vulnerabilities_written"], open);
    assert_eq!(run["cvm"]["run"]["ended"], true, "{run}");
    assert_eq!(cvm.runs().len(), 1, "one upload");
    let files = run["files"].as_array().unwrap();
    assert_eq!(run["summary"]["files_written"].as_array().unwrap().len(), files.len());
    let mut assets = BTreeSet::new();
    for file in files {
        // Streamed out decompressed; or as stored, gzipped, to a client that accepts it.
        // Both with their length: the service streams them, and a client can still
        // see how much is coming.
        let url = format!("{}{}", api.base, file["url"].as_str().unwrap());
        let plain = reqwest::blocking::Client::new().get(&url).bearer_auth(ADMIN_TOKEN).send().unwrap();
        assert_eq!(plain.status(), 200);
        assert_eq!(plain.headers()["content-length"].to_str().unwrap(), file["bytes"].to_string());
        assert!(plain.headers().get("content-encoding").is_none());
        let text = plain.text().unwrap();
        assert_eq!(text.len() as u64, file["bytes"].as_u64().unwrap());
        let sha256: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&text))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(file["sha256"], sha256.as_str(), "the listed checksum is the content's");
        let gzipped = reqwest::blocking::Client::new()
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .header("accept-encoding", "gzip")
            .send()
            .unwrap();
        assert_eq!(gzipped.headers()["content-encoding"], "gzip");
        // The default file store: a directory in the state directory, gzipped as sent.
        let attempt = run["attempt"].to_string();
        let object = state
            .join("files/runs")
            .join(&run_id)
            .join(&attempt)
            .join(format!("{}.gz", file["name"].as_str().unwrap()));
        let on_disk = std::fs::metadata(&object).unwrap_or_else(|e| panic!("{}: {e}", object.display())).len();
        assert_eq!(gzipped.headers()["content-length"].to_str().unwrap(), on_disk.to_string());
        let packed = gzipped.bytes().unwrap();
        assert!(packed.len() < text.len() / 2, "sent compressed: {} of {} bytes", packed.len(), text.len());
        let mut unpacked = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&packed[..]), &mut unpacked).unwrap();
        assert_eq!(unpacked, text);
        let kdi: Value = serde_json::from_str(&text).unwrap();
        kdi::assert_valid(file["name"].as_str().unwrap(), &kdi);
        for asset in kdi["assets"].as_array().unwrap() {
            assets.insert(asset["external_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(assets, expected.assets.keys().cloned().collect::<BTreeSet<_>>(), "the files hold every asset");
    assert_eq!(cvm.assets(), assets, "CVM has what the files hold");
    // A file whose object is gone (a lifecycle rule, a hand) is reported gone, not as a fault.
    let first = &files[0];
    let object = state.join("files/runs").join(&run_id).join(run["attempt"].to_string());
    std::fs::remove_file(object.join(format!("{}.gz", first["name"].as_str().unwrap()))).unwrap();
    let (status, gone) = api.get(first["url"].as_str().unwrap());
    assert_eq!(status, 410, "{gone}");
    assert!(gone["error"].as_str().unwrap().contains("kept 14 days"), "{gone}");
    let (_, log) = api.get(&format!("/api/runs/{run_id}/log"));
    let log_text = log.to_string();
    assert!(log_text.contains("run started") && log_text.contains("run succeeded"), "{log_text}");
    let (_, listed) = api.get(&format!("/api/runs?connector={id}"));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], run_id.as_str());

    // A connector is deleted with its history.
    let (status, spare) = api.post(
        "/api/connectors",
        json!({"plugin": "defender-tvm", "name": "spare", "settings": defender_settings(&defender)}),
    );
    assert_eq!(status, 201, "{spare}");
    let spare = spare["id"].as_str().unwrap();
    assert_eq!(api.call("DELETE", &format!("/api/connectors/{spare}"), None).0, 204);
    assert_eq!(api.get(&format!("/api/connectors/{spare}")).0, 404);

    // Metrics: the run, counted by connector and status; no setting in them.
    let (_, metrics) = api.with_token(None).call_text("GET", "/metrics", None);
    assert!(
        metrics.contains(&format!(
            "connector_runs{{connector_id=\"{id}\",connector=\"Defender prod\",status=\"succeeded\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("connector_api_calls_total"), "{metrics}");

    // The OpenAPI document describes the routes the service has.
    let (_, doc) = api.get("/api/openapi.json");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15);
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys().filter(|m| *m != "parameters") {
            let concrete = path.replace("{id}", "nothing").replace("{name}", "nothing");
            let (status, _) =
                api.with_token(Some("not-a-token")).call(&method.to_uppercase(), &concrete, Some(json!({})));
            assert!(
                status != 404 && status != 405,
                "{} {path} is documented but not served ({status})",
                method.to_uppercase()
            );
        }
    }

    // The secrets: in no answer, no log line, no file of the state directory.
    serve.signal(libc::SIGTERM);
    assert!(serve.wait(Duration::from_secs(30)).success(), "{}", serve.log_text());
    // JSON log lines of the run carry the connector, the run and the plugin.
    let log = serve.log_text();
    let tagged = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["run"] == run_id.as_str() && l["connector"] == id.as_str() && l["plugin"] == "defender-tvm");
    assert!(tagged.is_some(), "no JSON line with connector, run and plugin:\n{log}");
    for needle in [&secret, &api_key] {
        assert!(!api.answers.lock().unwrap().iter().any(|a| a.contains(needle.as_str())), "a secret in an answer");
        assert!(!serve.log_text().contains(needle.as_str()), "a secret in the log");
        assert_eq!(contains_anywhere(&state, needle), Vec::<String>::new(), "a secret in the state directory");
    }
}

#[test]
fn schedules_run_without_overlap_and_a_restart_keeps_everything() {
    let defender = DefenderSim::start(TenantSpec { seed: 5, devices: 10, rows: 100 }, SimOptions::default()).unwrap();
    let dir = kdi::temp_dir("service-schedule");
    let state = dir.join("state");
    let (mut serve, api) = start(&state, &[]);
    let body = json!({"plugin": "defender-tvm", "name": "every two seconds", "settings": defender_settings(&defender), "schedule": "every 2s"});
    let (status, connector) = api.post("/api/connectors", body);
    assert_eq!(status, 201, "{connector}");
    let id = connector["id"].as_str().unwrap().to_owned();
    let times = connector["next_due_times"].as_array().unwrap();
    assert_eq!(times.len(), 3, "{connector}");
    assert!(connector["next_due"].is_string());

    // Runs come due on their own, one at a time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let (_, runs) = api.get(&format!("/api/runs?connector={id}"));
        let ended: Vec<Value> =
            runs.as_array().unwrap().iter().filter(|r| r["status"] == "succeeded").cloned().collect();
        if ended.len() >= 2 {
            break runs.as_array().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "fewer than two scheduled runs in a minute: {runs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(runs.iter().all(|r| r["triggered_by"] == "schedule"));
    let mut spans: Vec<(String, String)> = runs
        .iter()
        .filter(|r| r["finished_at"].is_string())
        .map(|r| (r["started_at"].as_str().unwrap().to_owned(), r["finished_at"].as_str().unwrap().to_owned()))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlapped: {pair:?}");
    }

    // Stop, start again: connectors, schedules and history are kept.
    api.call("PATCH", &format!("/api/connectors/{id}"), Some(json!({"enabled": false})));
    let (_, before) = api.get(&format!("/api/runs?connector={id}&limit=500"));
    serve.signal(libc::SIGTERM);
    assert!(serve.wait(Duration::from_secs(60)).success(), "{}", serve.log_text());
    drop(serve);
    let (_serve, api) = start(&state, &[]);
    let (_, again) = api.get(&format!("/api/connectors/{id}"));
    assert_eq!(again["schedule"], "every 2s");
    assert_eq!(again["enabled"], false);
    assert_eq!(again["settings"]["client_secret"], json!({"set": true}));
    let (_, after) = api.get(&format!("/api/runs?connector={id}&limit=500"));
    let ids = |runs: &Value| runs.as_array().unwrap().iter().map(|r| r["id"].to_string()).collect::<BTreeSet<_>>();
    assert!(ids(&before).is_subset(&ids(&after)), "history kept");
    // The stored secret still opens: a run succeeds.
    let (status, queued) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
    assert_eq!(status, 202, "{queued}");
    let run = api.wait_for_run(queued["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
}

#[test]
fn a_wrong_or_missing_secret_key_is_refused_and_nothing_is_lost() {
    let defender = DefenderSim::start(TenantSpec { seed: 6, devices: 5, rows: 50 }, SimOptions::default()).unwrap();
    let dir = kdi::temp_dir("service-key");
    let state = dir.join("state");
    let (mut serve, api) = start(&state, &[]);
    let body = json!({"plugin": "defender-tvm", "name": "kept", "settings": defender_settings(&defender)});
    let (status, connector) = api.post("/api/connectors", body);
    assert_eq!(status, 201, "{connector}");
    serve.signal(libc::SIGTERM);
    serve.wait(Duration::from_secs(30));
    drop(serve);

    let key_file = state.join("secret.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    // Another key.
    let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let err = Process::serve(&state, &[], &[("CONNECTOR_HOST_SECRET_KEY", other)]).err().expect("refused");
    assert!(err.contains("not the key this database's secrets were sealed with"), "{err}");
    // A damaged key file.
    std::fs::write(&key_file, "damaged\n").unwrap();
    let err = Process::serve(&state, &[], &[]).err().expect("refused");
    assert!(err.contains("not 32 bytes in base64"), "{err}");
    // No key at all: refused, and no new key is made in its place.
    std::fs::remove_file(&key_file).unwrap();
    let err = Process::serve(&state, &[], &[]).err().expect("refused");
    assert!(err.contains("secret key is missing"), "{err}");
    assert!(!key_file.exists());

    // The original key, from the environment: everything is there.
    let (_serve, api) = start(&state, &[("CONNECTOR_HOST_SECRET_KEY", key.trim())]);
    let (_, list) = api.get("/api/connectors");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let id = list[0]["id"].as_str().unwrap();
    let (_, verified) = api.post(&format!("/api/connectors/{id}/verify"), json!({}));
    assert_eq!(verified["ok"], true, "the sealed secret opens with the original key: {verified}");
}

#[test]
fn a_first_admin_token_is_made_and_printed_once() {
    let dir = kdi::temp_dir("service-first-token");
    let state = dir.join("state");
    let (serve, url) = Process::serve(&state, &[], &[]).unwrap();
    let printed: Vec<String> = serve.stdout.lock().unwrap().clone();
    let token = printed.iter().find_map(|l| l.split("first admin token").nth(1)).expect("a token is printed");
    let token = token.rsplit(' ').next().unwrap().trim().to_owned();
    let api = Api::new(&url, Some(&token));
    assert_eq!(api.get("/api/session").1["role"], "admin");
    drop(serve);
    let (again, _) = Process::serve(&state, &[], &[]).unwrap();
    assert!(!again.stdout.lock().unwrap().iter().any(|l| l.contains("first admin token")), "printed only once");
    assert_eq!(contains_anywhere(&state, &token), Vec::<String>::new(), "stored hashed");
}

#[test]
fn a_run_cut_short_by_a_killed_serve_is_taken_over_after_a_restart() {
    use connector_simulators::defender::Faults;
    // Slow answers keep the run going long enough to be cut short.
    let faults = Faults { slow: Some(Duration::from_millis(300)), ..Faults::default() };
    let defender = DefenderSim::start(
        TenantSpec { seed: 8, devices: 20, rows: 400 },
        SimOptions { faults, ..SimOptions::default() },
    )
    .unwrap();
    let dir = kdi::temp_dir("service-killed");
    let state = dir.join("state");
    let lease = ["--lease-seconds", "2"];
    let (mut serve, api) = start_with(&state, &lease, &[]);
    let mut settings = defender_settings(&defender);
    settings["page_size"] = json!(100);
    let (_, connector) =
        api.post("/api/connectors", json!({"plugin": "defender-tvm", "name": "cut short", "settings": settings}));
    let id = connector["id"].as_str().unwrap().to_owned();
    let (_, queued) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
    let run_id = queued["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get(&format!("/api/runs/{run_id}")).1["status"] != "running" {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    serve.signal(libc::SIGKILL);
    serve.wait(Duration::from_secs(10));
    drop(serve);

    let (_serve, api) = start_with(&state, &lease, &[]);
    let run = api.wait_for_run(&run_id, Duration::from_secs(120));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 2, "taken over by the restarted service: {run}");
    let expected = oracle::expected_live(&defender.tenant());
    assert_eq!(run["summary"]["assets_written"], expected.assets.len());
}

#[test]
fn a_throttled_run_runs_again_later_and_refused_credentials_read_as_a_settings_problem() {
    use connector_simulators::defender::{Faults, RetryAfter};
    // Every API call answers 429 asking to wait an hour: longer than the plugin
    // waits, so it reports `throttled`.
    let faults = Faults { throttle_every: Some((1, RetryAfter::Seconds(3_600))), ..Faults::default() };
    let throttling = DefenderSim::start(SPEC, SimOptions { faults, ..SimOptions::default() }).unwrap();
    let healthy = DefenderSim::start(SPEC, SimOptions::default()).unwrap();
    let dir = kdi::temp_dir("service-failure-kinds");
    let (serve, api) = start(&dir.join("state"), &[]);

    let add = |name: &str, settings: Value| {
        let (status, created) =
            api.post("/api/connectors", json!({"plugin": "defender-tvm", "name": name, "settings": settings}));
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    };
    let run = |id: &str| {
        let (status, queued) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
        assert_eq!(status, 202, "{queued}");
        api.wait_for_run(queued["id"].as_str().unwrap(), Duration::from_secs(120))
    };

    let throttled = add("throttled", defender_settings(&throttling));
    let ran = run(&throttled);
    assert_eq!(ran["status"], "failed", "{ran}");
    assert_eq!(ran["error_kind"], "throttled", "{ran}");
    assert_eq!(ran["settings_problem"], false);
    // Not scheduled, yet due again: in about 15 minutes.
    let (_, connector) = api.get(&format!("/api/connectors/{throttled}"));
    let due = chrono::DateTime::parse_from_rfc3339(connector["next_due"].as_str().expect("due again")).unwrap();
    let minutes = (due.timestamp() - chrono::Utc::now().timestamp()) as f64 / 60.0;
    assert!((13.0..=15.5).contains(&minutes), "due again in {minutes:.1} minutes");

    let mut wrong = defender_settings(&healthy);
    wrong["client_secret"] = json!("not-the-secret");
    let refused = add("refused", wrong);
    let ran = run(&refused);
    assert_eq!(ran["status"], "failed", "{ran}");
    assert_eq!(ran["error_kind"], "authentication failed", "{ran}");
    assert_eq!(ran["settings_problem"], true, "{ran}");
    let (_, connector) = api.get(&format!("/api/connectors/{refused}"));
    assert!(connector["next_due"].is_null(), "a settings problem is not retried: {connector}");
    drop(serve);
}

#[test]
fn a_connector_runs_a_baseline_then_changes_and_clearing_its_state_makes_the_next_a_baseline() {
    let window = Duration::from_millis(300);
    let defender = DefenderSim::start(SPEC, SimOptions { snapshot_window: window, ..SimOptions::default() }).unwrap();
    let cvm = CvmSim::start(CvmOptions::default()).unwrap();
    let dir = kdi::temp_dir("service-incremental");
    let (_serve, api) = start(&dir.join("state"), &[]);
    let body = json!({"plugin": "defender-tvm", "name": "Defender incremental", "settings": defender_settings(&defender),
        "cvm": cvm_settings(&cvm), "baseline_days": 3});
    let (status, connector) = api.post("/api/connectors", body);
    assert_eq!(status, 201, "{connector}");
    let id = connector["id"].as_str().unwrap().to_owned();
    assert_eq!(connector["baseline_days"], 3);
    let (_, view) = api.get(&format!("/api/connectors/{id}"));
    assert_eq!(view["incremental"]["supported"], true, "{view}");
    assert_eq!(view["incremental"]["next_mode"], "full", "no state yet: {view}");
    let run = |api: &Api| {
        let (status, queued) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
        assert_eq!(status, 202, "{queued}");
        let run = api.wait_for_run(queued["id"].as_str().unwrap(), Duration::from_secs(60));
        assert_eq!(run["status"], "succeeded", "{run}");
        run
    };
    assert_eq!(run(&api)["summary"]["mode"], "full");
    let (_, view) = api.get(&format!("/api/connectors/{id}"));
    let incremental = &view["incremental"];
    assert_eq!(incremental["next_mode"], "incremental", "{view}");
    assert!(incremental["changes_since"].is_string() && incremental["last_baseline"].is_string(), "{view}");
    assert_eq!(incremental["baseline_days"], 3);

    // A fix in the tenant: the next run reads it from the delta and closes it in CVM.
    let expected = oracle::expected_live(&defender.tenant());
    let (device, open) = expected.assets.iter().find(|(_, a)| !a.vulns.is_empty()).unwrap();
    let fixed: BTreeSet<String> = open.vulns.keys().cloned().collect();
    let device = device.clone();
    defender.update_tenant(|t| t.remove_rows(|r| r.device_id == device));
    std::thread::sleep(window * 3);
    let second = run(&api);
    assert_eq!(second["summary"]["mode"], "incremental", "{second}");
    assert!(second["summary"]["vulnerabilities_closed"].as_u64().unwrap() >= 1, "{second}");
    assert_eq!(cvm.open_vulns(&device), BTreeSet::new(), "the device's fixed vulnerabilities are closed");
    assert_eq!(cvm.closed_vulns(&device), fixed);

    // Clear state: the next run is a baseline, and nothing started.
    let (status, _) = api.call("POST", &format!("/api/connectors/{id}/clear-state"), None);
    assert_eq!(status, 204);
    let (_, view) = api.get(&format!("/api/connectors/{id}"));
    assert_eq!(view["incremental"]["next_mode"], "full", "{view}");
    let (_, runs) = api.get(&format!("/api/runs?connector={id}"));
    assert_eq!(runs.as_array().unwrap().len(), 2, "clearing the state starts no run");
    assert_eq!(run(&api)["summary"]["mode"], "full");
    assert_eq!(api.call("POST", &format!("/api/connectors/{id}"), None).0, 405);
    let (status, refused) = api.call("PATCH", &format!("/api/connectors/{id}"), Some(json!({"baseline_days": 0})));
    assert_eq!(status, 422, "{refused}");
    assert!(refused.to_string().contains("from 1 to 365"), "{refused}");
}

#[test]
fn the_mass_close_guard_reads_its_baseline_from_the_database_after_a_restart() {
    let defender = DefenderSim::start(SPEC, SimOptions::default()).unwrap();
    let cvm = CvmSim::start(CvmOptions::default()).unwrap();
    let dir = kdi::temp_dir("service-guard");
    let state = dir.join("state");
    let (serve, api) = start(&state, &[]);
    let body = json!({"plugin": "defender-tvm", "name": "Defender guarded", "settings": defender_settings(&defender),
        "cvm": cvm_settings(&cvm)});
    let (status, connector) = api.post("/api/connectors", body);
    assert_eq!(status, 201, "{connector}");
    let id = connector["id"].as_str().unwrap().to_owned();
    let run = |api: &Api| {
        let (status, queued) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
        assert_eq!(status, 202, "{queued}");
        api.wait_for_run(queued["id"].as_str().unwrap(), Duration::from_secs(60))
    };
    assert_eq!(run(&api)["status"], "succeeded");
    let uploads = cvm.uploaded_files();
    drop(serve);

    // Most devices retired: a baseline now would make CVM close most of what it holds.
    defender.update_tenant(|t| t.retire_machines(|m| !m.id.ends_with('0')));
    let (_serve, api) = start(&state, &[]);
    assert_eq!(api.call("POST", &format!("/api/connectors/{id}/clear-state"), None).0, 204);
    let refused = run(&api);
    assert_eq!(refused["status"], "failed", "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("refusing to upload") && error.contains("the last upload to connector"), "{error}");
    assert_eq!(cvm.uploaded_files(), uploads, "nothing was uploaded");
}

/// `files migrate` (moving files that versions before the file store kept in the
/// database; the move itself is tested in the service crate) opens the same store
/// `serve` does, and a store nobody speaks is named before anything happens.
#[test]
fn files_migrate_opens_the_services_store_and_names_a_bad_one() {
    let dir = kdi::temp_dir("service-files-migrate");
    let state = dir.join("state");
    drop(Process::serve(&state, &[], &[]).unwrap());
    let migrate = |extra: &[&str]| {
        let mut command = std::process::Command::new(connector_e2e::artifacts::host_binary());
        command.args(["files", "migrate", "--state-dir", state.to_str().unwrap()]).args(extra);
        command.env_remove("CONNECTOR_HOST_FILES").env_remove("CONNECTOR_HOST_DATABASE").output().unwrap()
    };
    let done = migrate(&[]);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{out}{}", String::from_utf8_lossy(&done.stderr));
    let store = format!("file://{}/", state.join("files").canonicalize().unwrap().display());
    assert!(out.contains(&format!("to {store}")) && out.contains("0 files moved"), "{out}");
    let refused = migrate(&["--files", "ftp://files.example/x"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("no store speaks `ftp`"), "{err}");
}
