//! A simulated Cisco Vulnerability Management (CVM) connector API on loopback, with
//! an in-memory store that applies KDI semantics the way CVM documents them.
//!
//! - `POST /connectors/{id}/data_file`: multipart, one part named `file`; the file is
//!   validated against the KDI v2 schema (`host/schema/kdi-v2.schema.json`) and kept.
//!   Answers `{"success": "true", "data_file": <id>}` (`success` is a string, as CVM's).
//! - `POST /connectors/{id}/run` with `{"data_files": [...]}`: applies the files to the
//!   store and reports the connector running for a while.
//! - `GET /connectors/{id}`: `{"connector": {"id", "name", "host": null, "running"}}`.
//! - `GET /connectors/{id}/connector_runs[/{run_id}]`: runs with their counts.
//!
//! Every call needs `X-Risk-Token`. KDI semantics: assets matched by `external_id`;
//! for each asset present in a run, open vulnerabilities the run does not report are
//! closed (auto-close) unless `skip_autoclose`; a reported closed one reopens.

// Handlers return early with a ready error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use crate::serve::{bind, spawn, Background};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The schema every uploaded file must satisfy.
pub const KDI_SCHEMA: &str = include_str!("../../../host/schema/kdi-v2.schema.json");

/// How the simulated CVM behaves.
#[derive(Clone, Debug)]
pub struct CvmOptions {
    pub api_key: String,
    pub connector_id: u64,
    /// How long a run reports `running: true`.
    pub run_duration: Duration,
    /// The first N uploads answer 422 (file could not be persisted).
    pub fail_uploads: usize,
    /// The first N uploads answer 429.
    pub throttle_uploads: usize,
    /// The first N uploads answer 502.
    pub bad_gateway_uploads: usize,
}

impl Default for CvmOptions {
    fn default() -> Self {
        CvmOptions {
            api_key: "sim-risk-token-0123456789abcdef".into(),
            connector_id: 4242,
            run_duration: Duration::from_millis(300),
            fail_uploads: 0,
            throttle_uploads: 0,
            bad_gateway_uploads: 0,
        }
    }
}

/// A vulnerability as CVM keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVuln {
    pub open: bool,
    pub score: Option<u64>,
    pub last_seen_at: Option<String>,
}

/// A connector run and its counts.
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    pub id: u64,
    pub data_files: Vec<u64>,
    pub started: Option<Instant>,
    pub counts: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct Store {
    next_file: u64,
    files: HashMap<u64, Value>,
    /// external_id -> scanner_type + identifier -> vulnerability.
    assets: BTreeMap<String, BTreeMap<String, StoredVuln>>,
    runs: Vec<RunRecord>,
    upload_attempts: usize,
    requests: BTreeMap<String, u64>,
}

struct Shared {
    options: CvmOptions,
    store: Mutex<Store>,
    validator: jsonschema::Validator,
}

/// A running simulated CVM; it stops when dropped.
pub struct CvmSim {
    shared: Arc<Shared>,
    base_url: String,
    _server: Background,
}

impl CvmSim {
    pub fn start(options: CvmOptions) -> anyhow::Result<CvmSim> {
        let schema: Value = serde_json::from_str(KDI_SCHEMA)?;
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| anyhow::anyhow!("the KDI schema does not compile: {e}"))?;
        let shared = Arc::new(Shared { options, store: Mutex::default(), validator });
        let listener = bind()?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/connectors/{id}/data_file", post(upload))
            .route("/connectors/{id}/run", post(run))
            .route("/connectors/{id}", get(connector))
            .route("/connectors/{id}/connector_runs", get(runs))
            .route("/connectors/{id}/connector_runs/{run_id}", get(run_details))
            .layer(axum::extract::DefaultBodyLimit::max(512 << 20))
            .with_state(shared.clone());
        let server = spawn("cvm-sim", vec![(listener, app)])?;
        Ok(CvmSim { shared, base_url, _server: server })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn options(&self) -> &CvmOptions {
        &self.shared.options
    }

    /// A `[cvm]` table for a connector configuration.
    pub fn config_toml(&self) -> String {
        format!(
            "[cvm]\napi_host = \"{}\"\napi_key = \"{}\"\nconnector_id = {}\npoll_interval_ms = 50\nretry_delay_ms = 50\n",
            self.base_url, self.shared.options.api_key, self.shared.options.connector_id
        )
    }

    /// Identifiers of the open vulnerabilities of an asset, by external id.
    pub fn open_vulns(&self, external_id: &str) -> BTreeSet<String> {
        self.vulns(external_id, true)
    }

    /// Identifiers of the closed vulnerabilities of an asset.
    pub fn closed_vulns(&self, external_id: &str) -> BTreeSet<String> {
        self.vulns(external_id, false)
    }

    fn vulns(&self, external_id: &str, open: bool) -> BTreeSet<String> {
        let store = self.shared.store.lock().unwrap();
        store
            .assets
            .get(external_id)
            .map(|v| {
                v.iter().filter(|(_, s)| s.open == open).map(|(k, _)| k.split_once('|').unwrap().1.to_owned()).collect()
            })
            .unwrap_or_default()
    }

    /// External ids of every asset CVM knows.
    pub fn assets(&self) -> BTreeSet<String> {
        self.shared.store.lock().unwrap().assets.keys().cloned().collect()
    }

    /// Open vulnerabilities across all assets.
    pub fn open_vuln_count(&self) -> usize {
        self.shared.store.lock().unwrap().assets.values().flat_map(|v| v.values()).filter(|v| v.open).count()
    }

    pub fn runs(&self) -> Vec<RunRecord> {
        self.shared.store.lock().unwrap().runs.clone()
    }

    /// Files stored (successful uploads).
    pub fn uploaded_files(&self) -> usize {
        self.shared.store.lock().unwrap().files.len()
    }

    /// Requests by kind: `upload`, `run`, `status`, `run details`, `unauthorized`.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.shared.store.lock().unwrap().requests.clone()
    }
}

fn count(shared: &Shared, what: &str) {
    *shared.store.lock().unwrap().requests.entry(what.to_owned()).or_default() += 1;
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn authorize(shared: &Shared, headers: &HeaderMap, id: u64) -> Result<(), Response> {
    if headers.get("x-risk-token").and_then(|v| v.to_str().ok()) != Some(shared.options.api_key.as_str()) {
        count(shared, "unauthorized");
        return Err(error(StatusCode::UNAUTHORIZED, "unauthorized"));
    }
    if id != shared.options.connector_id {
        return Err(error(StatusCode::NOT_FOUND, "Connector not found"));
    }
    Ok(())
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    count(&shared, "upload");
    if let Err(e) = authorize(&shared, &headers, id) {
        return e;
    }
    let attempt = {
        let mut store = shared.store.lock().unwrap();
        store.upload_attempts += 1;
        store.upload_attempts
    };
    let o = &shared.options;
    if attempt <= o.throttle_uploads {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "Too Many Requests").into_response();
    }
    if attempt <= o.throttle_uploads + o.bad_gateway_uploads {
        return (StatusCode::BAD_GATEWAY, "Bad Gateway").into_response();
    }
    if attempt <= o.throttle_uploads + o.bad_gateway_uploads + o.fail_uploads {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "The file could not be persisted");
    }
    let mut file = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            file = field.bytes().await.ok();
        }
    }
    let Some(bytes) = file else { return error(StatusCode::BAD_REQUEST, "no multipart part named `file`") };
    let kdi: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not JSON: {e}")),
    };
    let problems: Vec<String> =
        shared.validator.iter_errors(&kdi).take(5).map(|e| format!("{e} at {}", e.instance_path)).collect();
    if !problems.is_empty() {
        return error(StatusCode::BAD_REQUEST, &format!("not a valid KDI v2 file: {}", problems.join("; ")));
    }
    let mut store = shared.store.lock().unwrap();
    store.next_file += 1;
    let file_id = store.next_file;
    store.files.insert(file_id, kdi);
    Json(json!({"success": "true", "data_file": file_id})).into_response()
}

async fn run(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    count(&shared, "run");
    if let Err(e) = authorize(&shared, &headers, id) {
        return e;
    }
    let Some(ids) = body["data_files"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect::<Vec<_>>())
    else {
        return error(StatusCode::BAD_REQUEST, "data_files must be a list of ids");
    };
    let mut store = shared.store.lock().unwrap();
    if let Some(missing) = ids.iter().find(|id| !store.files.contains_key(id)) {
        return error(StatusCode::BAD_REQUEST, &format!("unknown data file {missing}"));
    }
    let files: Vec<Value> = ids.iter().map(|id| store.files[id].clone()).collect();
    let counts = apply(&mut store.assets, &files);
    let run_id = store.runs.len() as u64 + 1;
    store.runs.push(RunRecord { id: run_id, data_files: ids, started: Some(Instant::now()), counts });
    Json(json!({"success": true, "connector_run_id": run_id})).into_response()
}

/// KDI semantics over one run's files.
fn apply(assets: &mut BTreeMap<String, BTreeMap<String, StoredVuln>>, files: &[Value]) -> BTreeMap<&'static str, u64> {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bump = |key: &'static str| *counts.entry(key).or_default() += 1;
    // Per asset in this run: the vulnerabilities reported, and whether auto-close applies.
    let mut reported: BTreeMap<String, (BTreeSet<String>, bool)> = BTreeMap::new();
    for file in files {
        let autoclose = !file["skip_autoclose"].as_bool().unwrap_or(false);
        for asset in file["assets"].as_array().into_iter().flatten() {
            let Some(external_id) = asset["external_id"].as_str() else { continue };
            bump("processed_assets_count");
            let stored = assets.entry(external_id.to_owned()).or_default();
            let entry = reported.entry(external_id.to_owned()).or_insert_with(|| (BTreeSet::new(), autoclose));
            for v in asset["vulns"].as_array().into_iter().flatten() {
                bump("processed_scanner_vuln_count");
                let key = format!(
                    "{}|{}",
                    v["scanner_type"].as_str().unwrap_or(""),
                    v["scanner_identifier"].as_str().unwrap_or("")
                );
                let incoming = StoredVuln {
                    open: v["status"] == "open",
                    score: v["scanner_score"].as_u64(),
                    last_seen_at: v["last_seen_at"].as_str().map(str::to_owned),
                };
                match stored.get(&key) {
                    None => bump("created_scanner_vuln_count"),
                    Some(old) if !old.open && incoming.open => bump("reopened_scanner_vuln_count"),
                    Some(_) => bump("updated_scanner_vuln_count"),
                }
                entry.0.insert(key.clone());
                stored.insert(key, incoming);
            }
        }
    }
    for (external_id, (seen, autoclose)) in reported {
        if !autoclose {
            continue;
        }
        for (key, v) in assets.get_mut(&external_id).unwrap().iter_mut() {
            if v.open && !seen.contains(key) {
                v.open = false;
                bump("autoclosed_scanner_vuln_count");
            }
        }
    }
    counts
}

fn running(shared: &Shared) -> bool {
    let store = shared.store.lock().unwrap();
    store.runs.last().and_then(|r| r.started).is_some_and(|t| t.elapsed() < shared.options.run_duration)
}

async fn connector(State(shared): State<Arc<Shared>>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    count(&shared, "status");
    if let Err(e) = authorize(&shared, &headers, id) {
        return e;
    }
    Json(
        json!({"connector": {"id": id, "name": "Defender TVM (simulated)", "host": null, "running": running(&shared)}}),
    )
    .into_response()
}

fn run_json(shared: &Shared, run: &RunRecord) -> Value {
    let done = run.started.is_some_and(|t| t.elapsed() >= shared.options.run_duration);
    let mut body = json!({
        "id": run.id,
        "start_time": "2026-11-28T01:00:00.000Z",
        "end_time": if done { json!("2026-11-28T01:00:01.000Z") } else { Value::Null },
        "success": done,
        "total_payload_count": run.data_files.len(),
        "processed_payload_count": if done { run.data_files.len() } else { 0 },
        "failed_payload_count": 0,
    });
    for key in [
        "processed_assets_count",
        "processed_scanner_vuln_count",
        "created_scanner_vuln_count",
        "updated_scanner_vuln_count",
        "reopened_scanner_vuln_count",
        "closed_scanner_vuln_count",
        "autoclosed_scanner_vuln_count",
    ] {
        body[key] = json!(run.counts.get(key).copied().unwrap_or(0));
    }
    body
}

async fn runs(State(shared): State<Arc<Shared>>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&shared, &headers, id) {
        return e;
    }
    let list: Vec<RunRecord> = shared.store.lock().unwrap().runs.iter().rev().cloned().collect();
    Json(Value::Array(list.iter().map(|r| run_json(&shared, r)).collect())).into_response()
}

async fn run_details(
    State(shared): State<Arc<Shared>>,
    Path((id, run_id)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Response {
    count(&shared, "run details");
    if let Err(e) = authorize(&shared, &headers, id) {
        return e;
    }
    let run = shared.store.lock().unwrap().runs.iter().find(|r| r.id == run_id).cloned();
    match run {
        Some(r) => Json(run_json(&shared, &r)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Connector run not found"),
    }
}
