//! Run files in an object store: `serve --workers 0` and two `worker` processes on a
//! PostgreSQL server of the test's own, all with `--files s3://...` pointed at a real
//! S3-protocol server on loopback (moto's). The workers put each run's files in the
//! bucket; `serve`, another process, streams them back; deleting a connector deletes
//! its objects; a store that lost its bucket fails the run before its CVM upload,
//! naming the store's error, with nothing listed.

use connector_cvm_simulator::{CvmOptions, CvmSim};
use connector_e2e::kdi;
use connector_e2e::service::{cvm_settings, defender_settings, Api, Postgres, Process, S3Server, ADMIN_TOKEN};
use connector_simulators::defender::{DefenderSim, Faults, SimOptions, TenantSpec};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const BUCKET: &str = "connector-files";
const PREFIX: &str = "tenants/prod";

/// The store's address and what the store's client reads from the environment.
fn store_env(s3: &S3Server) -> Vec<(&'static str, String)> {
    vec![
        ("CONNECTOR_HOST_FILES", format!("s3://{BUCKET}/{PREFIX}")),
        ("CONNECTOR_HOST_FILES_ENDPOINT", s3.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "test-access-key".into()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret-key".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

fn worker(pg: &Postgres, dir: &Path, index: usize, env: &[(&str, &str)]) -> (Process, String) {
    let state = dir.join(format!("worker-{index}"));
    Process::worker(&state, &["--database", pg.url.as_str()], env).unwrap_or_else(|e| panic!("{e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(bytes))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn serve_and_two_workers_keep_run_files_in_an_s3_store() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let pg = Postgres::start("s3");
    let dir = kdi::temp_dir("service-s3");
    // Slow answers: each run lasts seconds, so the two queued runs go to both workers.
    let faults = Faults { slow: Some(Duration::from_millis(100)), ..Faults::default() };
    let defender = DefenderSim::start(
        TenantSpec { seed: 21, devices: 30, rows: 600 },
        SimOptions { faults, ..SimOptions::default() },
    )
    .unwrap();
    let cvms: Vec<CvmSim> = (0..2).map(|_| CvmSim::start(CvmOptions::default()).unwrap()).collect();

    let env = store_env(&s3);
    let mut serve_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    serve_env.push(("CONNECTOR_HOST_ADMIN_TOKEN", ADMIN_TOKEN));
    let state = dir.join("serve");
    let (serve, url) = Process::serve(&state, &["--workers", "0", "--database", pg.url.as_str()], &serve_env)
        .unwrap_or_else(|e| panic!("{e}"));
    let api = Api::new(&url, Some(ADMIN_TOKEN));
    let key = std::fs::read_to_string(state.join("secret.key")).unwrap().trim().to_owned();
    let mut worker_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    worker_env.push(("CONNECTOR_HOST_SECRET_KEY", key.as_str()));
    let workers: Vec<(Process, String)> = (0..2).map(|i| worker(&pg, &dir, i, &worker_env)).collect();

    let connectors: Vec<String> = cvms
        .iter()
        .enumerate()
        .map(|(i, cvm)| {
            let mut settings = defender_settings(&defender);
            settings["page_size"] = json!(100);
            let body = json!({"plugin": "defender-tvm", "name": format!("tenant {i}"), "settings": settings, "cvm": cvm_settings(cvm)});
            let (status, connector) = api.post("/api/connectors", body);
            assert_eq!(status, 201, "{connector}");
            connector["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let runs: Vec<String> = connectors
        .iter()
        .map(|id| {
            let (status, queued) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
            assert_eq!(status, 202, "{queued}");
            queued["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let ended: Vec<Value> = runs.iter().map(|r| api.wait_for_run(r, Duration::from_secs(180))).collect();
    let ran_on: BTreeSet<&str> = ended.iter().map(|r| r["worker"].as_str().unwrap()).collect();
    assert_eq!(ran_on.len(), 2, "each worker took a run: {ran_on:?}");

    for run in &ended {
        assert_eq!(run["status"], "succeeded", "{run}");
        let id = run["id"].as_str().unwrap();
        let files = run["files"].as_array().unwrap();
        assert!(!files.is_empty(), "{run}");
        // In the bucket, under the prefix, one object a file.
        let keys = s3.keys(BUCKET, &format!("{PREFIX}/runs/{id}/"));
        let attempt = &run["attempt"];
        let names: BTreeSet<String> =
            files.iter().map(|f| format!("{PREFIX}/runs/{id}/{attempt}/{}.gz", f["name"].as_str().unwrap())).collect();
        assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), names);
        // Read back through serve, which wrote none of them.
        for file in files {
            let (status, text) = api.call_text("GET", file["url"].as_str().unwrap(), None);
            assert_eq!(status, 200, "{text}");
            assert_eq!(text.len() as u64, file["bytes"].as_u64().unwrap());
            assert_eq!(file["sha256"], sha256_hex(text.as_bytes()).as_str());
            kdi::assert_valid(file["name"].as_str().unwrap(), &serde_json::from_str(&text).unwrap());
        }
    }
    assert!(!state.join("files").exists(), "nothing is kept in serve's state directory");

    // A file larger than a part (8 MiB gzipped) goes up as a multipart upload and
    // comes back whole: one asset file of about 70 MB.
    let large =
        DefenderSim::start(TenantSpec { seed: 22, devices: 360, rows: 180_000 }, SimOptions::default()).unwrap();
    let mut settings = defender_settings(&large);
    settings["page_size"] = json!(10_000);
    let (status, connector) =
        api.post("/api/connectors", json!({"plugin": "defender-tvm", "name": "large", "settings": settings}));
    assert_eq!(status, 201, "{connector}");
    let (status, queued) = api.post(&format!("/api/connectors/{}/runs", connector["id"].as_str().unwrap()), json!({}));
    assert_eq!(status, 202, "{queued}");
    let run = api.wait_for_run(queued["id"].as_str().unwrap(), Duration::from_secs(300));
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = run["id"].as_str().unwrap();
    let etags = s3.etags(BUCKET, &format!("{PREFIX}/runs/{id}/"));
    assert!(etags.iter().any(|(_, etag)| etag.contains('-')), "one object went up in parts: {etags:?}");
    for file in run["files"].as_array().unwrap() {
        let (status, text) = api.call_text("GET", file["url"].as_str().unwrap(), None);
        assert_eq!(status, 200);
        assert_eq!(text.len() as u64, file["bytes"].as_u64().unwrap());
        assert_eq!(file["sha256"], sha256_hex(text.as_bytes()).as_str());
    }

    // A connector goes with its objects.
    let gone = &connectors[0];
    assert_eq!(api.call("DELETE", &format!("/api/connectors/{gone}"), None).0, 204);
    assert_eq!(s3.keys(BUCKET, &format!("{PREFIX}/runs/{}/", runs[0])), Vec::<String>::new());
    assert!(!s3.keys(BUCKET, &format!("{PREFIX}/runs/{}/", runs[1])).is_empty(), "the other connector's stay");

    // The store loses its bucket: the next run fails before anything goes to CVM,
    // naming the store and its error, and lists no file.
    s3.reset();
    let uploads = cvms[1].runs().len();
    let (status, queued) = api.post(&format!("/api/connectors/{}/runs", connectors[1]), json!({}));
    assert_eq!(status, 202, "{queued}");
    let failed = api.wait_for_run(queued["id"].as_str().unwrap(), Duration::from_secs(180));
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("the run's files could not be kept")
            && error.contains(&format!("s3://{BUCKET}/{PREFIX}/"))
            && error.contains("NoSuchBucket"),
        "{error}"
    );
    assert_eq!(failed["files"], json!([]), "{failed}");
    assert_eq!(failed["delivery_started"], false);
    assert_eq!(cvms[1].runs().len(), uploads, "nothing went to CVM");
    // The store's credentials are nowhere in what the service says.
    for answer in api.answers.lock().unwrap().iter() {
        assert!(!answer.contains("test-secret-key"), "a store credential in an answer");
    }
    for log in workers.iter().map(|w| w.0.log_text()).chain([serve.log_text()]) {
        assert!(!log.contains("test-secret-key"), "a store credential in a log");
    }
}
