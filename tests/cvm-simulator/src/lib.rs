//! A simulated Cisco Vulnerability Management (CVM) connector API on loopback, with
//! an in-memory store that applies KDI semantics the way CVM documents them.
//!
//! - `POST /connectors/{id}/data_file`: multipart, one part named `file`; the file is
//!   validated against the KDI v2 schema (`host/schema/kdi-v2.schema.json`) and kept,
//!   with the part's content type. A request that is not multipart (CVM's 400 for
//!   `Content-Type: application/json`) is refused. Answers
//!   `{"success": "true", "data_file": <id>}` (`success` is a string, as CVM's).
//! - `POST /connectors/{id}/run` with `data_files[]=1&data_files[]=2` as form or query
//!   parameters, as known clients send them. Without them (a JSON body is not read)
//!   the run processes only the most recent upload, as CVM documents for file-based
//!   connectors. The run is *scheduled*: it waits queued (`queue_delay`, the connector
//!   not running), runs (`run_duration`, `running: true`), then ends; only then are
//!   its files applied to the store and its counts, `end_time` and `success` real.
//! - `GET /connectors/{id}`: `{"connector": {"id", "name", "host": null, "running"}}`.
//! - `GET /connectors/{id}/connector_runs[/{run_id}]`: runs with their counts;
//!   `start_time` and `end_time` are null until the run starts and ends, and
//!   `success` is `false` until it ended well.
//!
//! Every call needs `X-Risk-Token`. KDI semantics: assets matched by `external_id`;
//! for each asset present in a run, open vulnerabilities the run does not report are
//! closed (auto-close) unless `skip_autoclose`; a reported closed one reopens. Tags
//! only add, unless the file sets `reset_tags`: then each asset's tags are replaced
//! by the file's (from every source, as CVM does).

// Handlers return early with a ready error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use connector_simulators::serve::{bind, spawn, Background};
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
    /// How long a run waits queued after `POST /run` before it starts.
    pub queue_delay: Duration,
    /// How long a run reports `running: true`.
    pub run_duration: Duration,
    /// The first N runs end unsuccessfully (`success: false`), changing nothing.
    pub fail_runs: usize,
    /// A run processes at most this many of the files it names (CVM dropping some).
    pub process_at_most: Option<usize>,
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
            queue_delay: Duration::from_millis(250),
            run_duration: Duration::from_millis(300),
            fail_runs: 0,
            process_at_most: None,
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
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub id: u64,
    /// The files the run processes.
    pub data_files: Vec<u64>,
    /// When `POST /run` scheduled it.
    pub scheduled: Instant,
    /// Whether it ended well; meaningless until it ended.
    pub success: bool,
    /// Its counts, once it ended.
    pub counts: BTreeMap<&'static str, u64>,
    /// Whether it ended and was applied to the store.
    pub ended: bool,
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Queued,
    Running,
    Ended,
}

#[derive(Default)]
struct Store {
    next_file: u64,
    files: HashMap<u64, Value>,
    /// external_id -> scanner_type + identifier -> vulnerability.
    assets: BTreeMap<String, BTreeMap<String, StoredVuln>>,
    /// external_id -> tags.
    tags: BTreeMap<String, BTreeSet<String>>,
    runs: Vec<RunRecord>,
    /// The content type of each upload's `file` part.
    part_types: Vec<String>,
    /// How each `POST /run` named its files: `form`, `query` or `none`.
    run_requests: Vec<&'static str>,
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

    /// The store with every run that has ended by now applied to it.
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        advanced(&self.shared)
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
        let store = self.store();
        store
            .assets
            .get(external_id)
            .map(|v| {
                v.iter().filter(|(_, s)| s.open == open).map(|(k, _)| k.split_once('|').unwrap().1.to_owned()).collect()
            })
            .unwrap_or_default()
    }

    /// The tags CVM keeps on an asset, by external id.
    pub fn tags(&self, external_id: &str) -> BTreeSet<String> {
        self.store().tags.get(external_id).cloned().unwrap_or_default()
    }

    /// External ids of every asset CVM knows.
    pub fn assets(&self) -> BTreeSet<String> {
        self.store().assets.keys().cloned().collect()
    }

    /// Open vulnerabilities across all assets.
    pub fn open_vuln_count(&self) -> usize {
        self.store().assets.values().flat_map(|v| v.values()).filter(|v| v.open).count()
    }

    pub fn runs(&self) -> Vec<RunRecord> {
        self.store().runs.clone()
    }

    /// Where a run stands now.
    pub fn phase(&self, run: &RunRecord) -> Phase {
        phase(&self.shared.options, run)
    }

    /// Files stored (successful uploads).
    pub fn uploaded_files(&self) -> usize {
        self.store().files.len()
    }

    /// The content type of each uploaded `file` part, in order.
    pub fn part_content_types(&self) -> Vec<String> {
        self.store().part_types.clone()
    }

    /// How each `POST /run` named its files: `form`, `query` or `none`.
    pub fn run_requests(&self) -> Vec<&'static str> {
        self.store().run_requests.clone()
    }

    /// Requests by kind: `upload`, `run`, `status`, `run details`, `unauthorized`.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.store().requests.clone()
    }
}

fn phase(options: &CvmOptions, run: &RunRecord) -> Phase {
    let elapsed = run.scheduled.elapsed();
    if elapsed < options.queue_delay {
        Phase::Queued
    } else if elapsed < options.queue_delay + options.run_duration {
        Phase::Running
    } else {
        Phase::Ended
    }
}

/// Locks the store and applies every run that has ended by now, in order: CVM
/// changes its data when a run ends, not when it is scheduled.
fn advanced(shared: &Shared) -> std::sync::MutexGuard<'_, Store> {
    let mut store = shared.store.lock().unwrap();
    let store_ref = &mut *store;
    for index in 0..store_ref.runs.len() {
        let run = &store_ref.runs[index];
        if run.ended || phase(&shared.options, run) != Phase::Ended {
            continue;
        }
        let failed = index < shared.options.fail_runs;
        let files: Vec<Value> = run.data_files.iter().map(|id| store_ref.files[id].clone()).collect();
        let counts = if failed { BTreeMap::new() } else { apply(&mut store_ref.assets, &mut store_ref.tags, &files) };
        let run = &mut store_ref.runs[index];
        run.ended = true;
        run.success = !failed;
        run.counts = counts;
    }
    store
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
    request: axum::extract::Request,
) -> Response {
    count(&shared, "upload");
    if let Err(e) = authorize(&shared, &headers, id) {
        return e;
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("multipart/form-data") {
        // What Kenna's reference documents for a request sent as JSON.
        return error(StatusCode::BAD_REQUEST, "the request must be multipart/form-data with a part named `file`");
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
    let mut form = match <Multipart as axum::extract::FromRequest<()>>::from_request(request, &()).await {
        Ok(form) => form,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("unreadable multipart body: {e}")),
    };
    let mut file = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            let part_type = field.content_type().unwrap_or("").to_owned();
            file = field.bytes().await.ok().map(|bytes| (part_type, bytes));
        }
    }
    let Some((part_type, bytes)) = file else {
        return error(StatusCode::BAD_REQUEST, "no multipart part named `file`");
    };
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
    store.part_types.push(part_type);
    Json(json!({"success": "true", "data_file": file_id})).into_response()
}

/// `data_files[]=N` (or `data_files=N`) pairs of a form body or query string.
fn data_files(encoded: &str) -> Result<Vec<u64>, String> {
    let mut ids = Vec::new();
    for pair in encoded.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = key.replace("%5B", "[").replace("%5D", "]").replace("%5b", "[").replace("%5d", "]");
        if key == "data_files[]" || key == "data_files" {
            ids.push(value.parse::<u64>().map_err(|_| format!("data_files: `{value}` is not a data file id"))?);
        }
    }
    Ok(ids)
}

async fn run(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    count(&shared, "run");
    if let Err(e) = authorize(&shared, &headers, id) {
        return e;
    }
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let from_query = data_files(query.as_deref().unwrap_or(""));
    let from_form = if form { data_files(&String::from_utf8_lossy(&body)) } else { Ok(Vec::new()) };
    let (named, how) = match (from_query, from_form) {
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &e),
        (Ok(q), Ok(f)) if !f.is_empty() => ([q, f].concat(), "form"),
        (Ok(q), _) if !q.is_empty() => (q, "query"),
        _ => (Vec::new(), "none"),
    };
    let mut store = advanced(&shared);
    store.run_requests.push(how);
    let mut ids = if named.is_empty() {
        // File-based connectors process the most recent upload when no list is given.
        match store.next_file {
            0 => return error(StatusCode::UNPROCESSABLE_ENTITY, "no data file has been uploaded to this connector"),
            last => vec![last],
        }
    } else {
        named
    };
    if let Some(missing) = ids.iter().find(|id| !store.files.contains_key(id)) {
        return error(StatusCode::BAD_REQUEST, &format!("unknown data file {missing}"));
    }
    if let Some(at_most) = shared.options.process_at_most {
        ids.truncate(at_most);
    }
    let run_id = store.runs.len() as u64 + 1;
    store.runs.push(RunRecord {
        id: run_id,
        data_files: ids,
        scheduled: Instant::now(),
        success: false,
        counts: BTreeMap::new(),
        ended: false,
    });
    // Scheduled, not done: the answer comes before the run starts.
    Json(json!({"success": true, "connector_run_id": run_id})).into_response()
}

type Assets = BTreeMap<String, BTreeMap<String, StoredVuln>>;
type Tags = BTreeMap<String, BTreeSet<String>>;

/// KDI semantics over one run's files.
fn apply(assets: &mut Assets, tags: &mut Tags, files: &[Value]) -> BTreeMap<&'static str, u64> {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bump = |key: &'static str| *counts.entry(key).or_default() += 1;
    // Per asset in this run: the vulnerabilities reported, and whether auto-close applies.
    let mut reported: BTreeMap<String, (BTreeSet<String>, bool)> = BTreeMap::new();
    for file in files {
        let autoclose = !file["skip_autoclose"].as_bool().unwrap_or(false);
        let reset_tags = file["reset_tags"].as_bool().unwrap_or(false);
        for asset in file["assets"].as_array().into_iter().flatten() {
            let Some(external_id) = asset["external_id"].as_str() else { continue };
            bump("processed_assets_count");
            let incoming: BTreeSet<String> =
                asset["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
            let kept = tags.entry(external_id.to_owned()).or_default();
            if reset_tags {
                bump("assets_with_tags_reset_count");
                *kept = incoming;
            } else {
                kept.extend(incoming);
            }
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

async fn connector(State(shared): State<Arc<Shared>>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    count(&shared, "status");
    if let Err(e) = authorize(&shared, &headers, id) {
        return e;
    }
    let running = advanced(&shared).runs.iter().any(|r| phase(&shared.options, r) == Phase::Running);
    Json(json!({"connector": {"id": id, "name": "Defender TVM (simulated)", "host": null, "running": running}}))
        .into_response()
}

fn run_json(shared: &Shared, run: &RunRecord) -> Value {
    let stamp = |offset: Duration| {
        let at = chrono::Utc::now() - (run.scheduled.elapsed().saturating_sub(offset));
        json!(at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
    };
    let o = &shared.options;
    let phase = phase(o, run);
    let ended = run.ended;
    let mut body = json!({
        "id": run.id,
        "start_time": if phase == Phase::Queued { Value::Null } else { stamp(o.queue_delay) },
        "end_time": if ended { stamp(o.queue_delay + o.run_duration) } else { Value::Null },
        // Meaningless until the run ended, as in CVM.
        "success": ended && run.success,
        "total_payload_count": run.data_files.len(),
        "processed_payload_count": if ended && run.success { run.data_files.len() } else { 0 },
        "failed_payload_count": if ended && !run.success { run.data_files.len() } else { 0 },
    });
    for key in [
        "processed_assets_count",
        "assets_with_tags_reset_count",
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
    let list: Vec<RunRecord> = advanced(&shared).runs.iter().rev().cloned().collect();
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
    let run = advanced(&shared).runs.iter().find(|r| r.id == run_id).cloned();
    match run {
        Some(r) => Json(run_json(&shared, &r)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Connector run not found"),
    }
}
