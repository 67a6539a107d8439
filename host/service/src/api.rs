//! The REST API (JSON, `Authorization: Bearer TOKEN`), described by `openapi.json`
//! beside this crate's manifest, which a test keeps true.

use super::auth::{self, Role};
use super::catalogue::Catalogue;
use super::connectors::{self, time, Draft, Invalid, Values};
use super::files::{self, FileStore, Found};
use super::metrics;
use super::store::{new_id, now_ms, ConnectorRow, Db, FileRow, Inserted, PluginRow, RunRow};
use super::trust::{self, Trust};
use super::vault::Vault;
use super::worker::Queue;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use connector_host::config::FieldErrors;
use connector_host::engine::{FailureKind, PluginHost, SessionOptions};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The OpenAPI document of this API.
pub(crate) const OPENAPI: &str = include_str!("../openapi.json");

/// What every request handler shares.
pub(crate) struct App {
    pub(crate) db: Db,
    pub(crate) vault: Vault,
    pub(crate) host: Arc<PluginHost>,
    pub(crate) catalogue: Arc<Catalogue>,
    pub(crate) queue: Queue,
    pub(crate) allow_insecure_loopback: bool,
    /// Where the runs' files are kept.
    pub(crate) files: FileStore,
    /// How long they are kept (named when one is gone).
    pub(crate) retention: std::time::Duration,
}

type AppState = State<Arc<App>>;

/// The routes.
pub(crate) fn router(app: Arc<App>) -> Router {
    super::console::routes()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/openapi.json", get(openapi))
        .route("/api/session", get(session))
        .route("/api/plugins", get(plugins))
        .route("/api/cvm", get(cvm_fields))
        .route("/api/connectors", get(list_connectors).post(create_connector))
        .route("/api/connectors/{id}", get(get_connector).patch(change_connector).delete(delete_connector))
        .route("/api/connectors/{id}/verify", post(verify_connector))
        .route("/api/connectors/{id}/runs", post(run_now))
        .route("/api/connectors/{id}/approve", post(approve_connector))
        .route("/api/connectors/{id}/clear-state", post(clear_state))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/log", get(run_log))
        .route("/api/runs/{id}/files/{name}", get(run_file))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{id}", axum::routing::delete(delete_token))
        .with_state(app)
}

/// An error answer: a status and `{"error": ..., ...}`.
pub(crate) struct ApiError(StatusCode, Value);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(status, json!({"error": message.into()}))
    }
    fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no {what} `{id}`"))
    }
    fn invalid(Invalid(errors): Invalid) -> ApiError {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, json!({"error": "invalid connector settings", "errors": errors}))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        tracing::error!("request failed: {e:#}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(self.1)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        }
        response
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

/// Who is calling: the role of a valid bearer token (401 without one).
pub(crate) struct Caller(Role);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "sign in: send `Authorization: Bearer TOKEN`"))?;
        match auth::role_of(&app.db, token).await? {
            Some(role) => Ok(Caller(role)),
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "this token is not known (revoked or mistyped)")),
        }
    }
}

impl Caller {
    fn admin(&self) -> ApiResult<()> {
        match self.0 {
            Role::Admin => Ok(()),
            Role::Viewer => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "only an admin token may do this; this token is a viewer's"))
            }
        }
    }
}

/// A JSON object body, or 400 saying what is wrong with it.
fn object(body: &Bytes) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(StatusCode::BAD_REQUEST, "the body must be a JSON object")),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}"))),
    }
}

/// Runs wasm (or other blocking work) off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::from(anyhow::anyhow!("a worker thread failed: {e}")))
}

async fn healthz(State(app): AppState) -> Response {
    match app.db.meta("schema").await {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "database unavailable", "error": format!("{e:#}")})),
        )
            .into_response(),
    }
}

async fn metrics_text(State(app): AppState) -> ApiResult {
    let text = metrics::render(&app.db).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn session(caller: Caller) -> Json<Value> {
    Json(json!({"role": caller.0}))
}

async fn plugins(State(app): AppState, _caller: Caller) -> ApiResult<Json<Value>> {
    let rows = app.db.plugins().await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|p| {
            // The plugin names its section and its counters (contract 0.4); one that
            // is no longer installed is listed under "Other".
            let loaded = app.catalogue.get(&p.id).map(|l| &l.plugin.info);
            json!({"id": p.id, "name": p.name, "version": p.version, "contract": p.contract,
                "description": p.description, "scanner_type": p.scanner_type,
                "section": loaded.map_or(super::catalogue::OTHER_SECTION, |i| i.section.as_str()),
                "incremental": loaded.is_some_and(|i| i.incremental),
                "counters": loaded.map(connector_host::types::counters_json).unwrap_or_default(),
                "fields": serde_json::from_str::<Value>(&p.fields).unwrap_or_default(),
                "egress": serde_json::from_str::<Value>(&p.egress).unwrap_or_default(),
                "content_hash": p.content_hash,
                "installed": app.catalogue.get(&p.id).is_some()})
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// The `[cvm]` part of a connector, field by field, as the library reads it.
async fn cvm_fields(_caller: Caller) -> Json<Value> {
    Json(json!({ "fields": connector_host::cvm::FIELDS }))
}

/// A connector with its plugin and last run, as the API shows it.
async fn connector_view(app: &App, row: &ConnectorRow) -> ApiResult<Value> {
    let plugin = app.db.plugin(&row.plugin_id).await?;
    let last = app.db.runs(Some(&row.id), 1).await?;
    view_with(app, row, plugin.as_ref(), last.first())
}

/// A connector's view, its plugin's row already read.
/// With what differs from the approval, for the admin to review next to Approve.
fn view_with(app: &App, row: &ConnectorRow, plugin: Option<&PluginRow>, last: Option<&RunRow>) -> ApiResult<Value> {
    let mut view = connectors::view(row, plugin, last, &app.vault);
    let changes = match app.catalogue.get(&row.plugin_id) {
        Some(loaded) => trust::changes(row, &loaded.plugin)?,
        None => Vec::new(),
    };
    view["changes"] = json!(changes);
    view["approved"] = serde_json::from_str(&row.trust).unwrap_or(Value::Null);
    Ok(view)
}

async fn load_connector(app: &App, id: &str) -> ApiResult<ConnectorRow> {
    app.db.connector(id).await?.ok_or_else(|| ApiError::not_found("connector", id))
}

async fn list_connectors(State(app): AppState, _caller: Caller) -> ApiResult<Json<Value>> {
    // Three queries, whatever the number of connectors: plugins, connectors, last runs.
    let plugins = app.db.plugins().await?;
    let mut last_runs = std::collections::HashMap::new();
    for run in app.db.last_runs().await? {
        last_runs.entry(run.connector_id.clone()).or_insert(run);
    }
    let mut list = Vec::new();
    for row in app.db.connectors().await? {
        let plugin = plugins.iter().find(|p| p.id == row.plugin_id);
        list.push(view_with(&app, &row, plugin, last_runs.get(&row.id))?);
    }
    Ok(Json(Value::Array(list)))
}

async fn get_connector(State(app): AppState, _caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let row = load_connector(&app, &id).await?;
    let mut view = connector_view(&app, &row).await?;
    // Contract 0.4: the next run's mode, the watermark, the last baseline.
    let checkpoint = super::incremental::from_row(app.db.checkpoint(&id).await?);
    let plugin = app.catalogue.get(&row.plugin_id).map(|l| &l.plugin.info);
    view["incremental"] = super::incremental::view(&row, plugin, &checkpoint);
    Ok(Json(view))
}

/// Forgets the connector's checkpoint: its next run is a full baseline. Starts
/// nothing.
async fn clear_state(State(app): AppState, caller: Caller, Path(id): Path<String>) -> ApiResult {
    caller.admin()?;
    load_connector(&app, &id).await?;
    app.db.clear_checkpoint(&id).await?;
    tracing::info!(connector = %id, "state cleared: the next run is a baseline");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Checks a draft against its plugin, off the runtime; with the origins a 0.2
/// plugin derived.
async fn check(app: &Arc<App>, plugin: &str, draft: Draft) -> ApiResult<(Draft, Vec<String>)> {
    if app.catalogue.get(plugin).is_none() {
        return Err(ApiError::invalid(Invalid(vec![connector_host::config::FieldProblem {
            field: "plugin".into(),
            message: format!("`{plugin}` is not an installed plugin (see GET /api/plugins)"),
        }])));
    }
    let (app2, plugin) = (app.clone(), plugin.to_owned());
    blocking(move || {
        let loaded = app2.catalogue.get(&plugin).expect("checked above");
        draft.check(&app2.host, loaded, app2.allow_insecure_loopback).map(|derived| (draft, derived))
    })
    .await?
    .map_err(ApiError::invalid)
}

fn name_taken(name: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, format!("a connector is already named `{name}`; choose another name"))
}

async fn create_connector(State(app): AppState, caller: Caller, body: Bytes) -> ApiResult {
    caller.admin()?;
    let (plugin, draft) = Draft::create(&object(&body)?).map_err(ApiError::invalid)?;
    let (draft, derived) = check(&app, &plugin, draft).await?;
    let name = draft.name.clone();
    let loaded = app.catalogue.get(&plugin).expect("checked");
    let row = draft.into_row(&new_id("c_"), loaded, &app.vault, now_ms(), &derived)?;
    if let Inserted::Conflict = app.db.insert_connector(&row).await? {
        return Err(name_taken(&name));
    }
    tracing::info!(connector = %row.id, plugin = %plugin, "connector added");
    Ok((StatusCode::CREATED, Json(connector_view(&app, &row).await?)).into_response())
}

/// Refuses to run anything of a connector's plugin with its secrets while the
/// connector is paused, or while the installed plugin differs from what an admin
/// approved (which pauses it now): 409 naming the pause and each change.
async fn ensure_approved(app: &App, row: &ConnectorRow) -> ApiResult<()> {
    let paused = |reason: &str, changes: Vec<String>| {
        ApiError(
            StatusCode::CONFLICT,
            json!({"error": format!("the connector is {reason}"), "paused_reason": reason, "changes": changes}),
        )
    };
    let Some(loaded) = app.catalogue.get(&row.plugin_id) else {
        return match &row.paused_reason {
            Some(reason) => Err(paused(reason, Vec::new())),
            None => Ok(()),
        };
    };
    let changes = trust::changes(row, &loaded.plugin)?;
    if let Some(reason) = &row.paused_reason {
        return Err(paused(reason, changes));
    }
    if changes.is_empty() {
        return Ok(());
    }
    let reason = trust::reason(row, &loaded.plugin, &changes);
    app.db.pause_connector(&row.id, &reason).await?;
    tracing::warn!(connector = %row.id, "{reason}");
    Err(paused(&reason, changes))
}

async fn change_connector(
    State(app): AppState,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let body = object(&body)?;
    let row = load_connector(&app, &id).await?;
    // Checking the change runs the plugin with the connector's secrets.
    ensure_approved(&app, &row).await?;
    let before = Draft::of(&row, &app.vault)?;
    let before_values = before.values.clone();
    let draft = before.change(&body).map_err(ApiError::invalid)?;
    if let Some(loaded) = app.catalogue.get(&row.plugin_id) {
        connectors::moved_secrets(&before_values, &draft.values, &body, &loaded.plugin.info)
            .map_err(ApiError::invalid)?;
    }
    let (draft, derived) = check(&app, &row.plugin_id, draft).await?;
    let name = draft.name.clone();
    let loaded = app.catalogue.get(&row.plugin_id).expect("checked");
    // The plugin is the one approved (checked above): saving pins the new settings.
    let mut changed = draft.into_row(&row.id, loaded, &app.vault, row.created_at, &derived)?;
    changed.trusted_version = row.trusted_version.clone();
    if let Inserted::Conflict = app.db.update_connector(&changed).await? {
        return Err(name_taken(&name));
    }
    tracing::info!(connector = %row.id, "connector changed");
    Ok(Json(connector_view(&app, &changed).await?))
}

async fn delete_connector(State(app): AppState, caller: Caller, Path(id): Path<String>) -> ApiResult {
    caller.admin()?;
    load_connector(&app, &id).await?;
    if let Some(run) = app.db.active_run(&id).await? {
        return Err(ApiError(
            StatusCode::CONFLICT,
            json!({"error": format!("run {run} of this connector is queued or running; delete the connector when it ends"), "run": run}),
        ));
    }
    // Its runs' files go with it: the rows with the connector, the objects after.
    let locations = app.db.file_locations_of_connector(&id).await?;
    app.db.delete_connector(&id).await?;
    for location in &locations {
        if let Err(e) = app.files.delete(location).await {
            tracing::warn!(connector = %id, "a file of a deleted connector stays in the file store: {e:#}");
        }
    }
    tracing::info!(connector = %id, files = locations.len(), "connector deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Approves the installed plugin for a connector: pins its hash, fields, host values,
/// egress, bindings and (for 0.2) derived origins, and lifts a pause. The settings
/// are checked by the plugin on the way (as an admin's save would): problems are
/// returned beside the approval, to be fixed with a PATCH.
async fn approve_connector(State(app): AppState, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let mut row = load_connector(&app, &id).await?;
    if app.catalogue.get(&row.plugin_id).is_none() {
        let message = format!("plugin `{}` is not installed; nothing to approve", row.plugin_id);
        return Err(ApiError::new(StatusCode::CONFLICT, message));
    }
    let draft = Draft::of(&row, &app.vault)?;
    let checked = check(&app, &row.plugin_id, draft).await;
    let before = trust::approved(&row)?;
    let (derived, problems) = match checked {
        Ok((_, derived)) => (derived, Value::Null),
        Err(ApiError(_, problems)) => (before.derived.iter().cloned().collect(), problems),
    };
    let loaded = app.catalogue.get(&row.plugin_id).expect("checked");
    let plain: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&row.settings).map_err(anyhow::Error::from)?;
    let pinned = Trust::pin(&loaded.plugin, &plain, &derived);
    let changes = before.changes_to(&pinned);
    row.trust = serde_json::to_string(&pinned).map_err(anyhow::Error::from)?;
    row.trusted_version = loaded.row.version.clone();
    row.paused_reason = None;
    row.next_due_at = connectors::next_due(row.schedule.as_deref(), now_ms());
    app.db.update_connector(&row).await?;
    tracing::info!(connector = %id, version = %row.trusted_version, "plugin approved: {}", changes.join("; "));
    let mut view = connector_view(&app, &row).await?;
    view["approved_changes"] = json!(changes);
    view["problems"] = problems;
    Ok(Json(view))
}

async fn verify_connector(State(app): AppState, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let row = load_connector(&app, &id).await?;
    // Verify runs the plugin with the connector's secrets.
    ensure_approved(&app, &row).await?;
    let values = Values::open(&row, &app.vault)?;
    let approved_derived = Some(trust::approved(&row)?.derived.into_iter().collect());
    let app2 = app.clone();
    let plugin_id = row.plugin_id.clone();
    let verified = blocking(move || {
        let loaded =
            app2.catalogue.get(&plugin_id).ok_or_else(|| anyhow::anyhow!("plugin `{plugin_id}` is not installed"))?;
        let options = SessionOptions {
            allow_insecure_loopback: app2.allow_insecure_loopback,
            approved_derived,
            ..Default::default()
        };
        connector_host::verify::verify(&app2.host, &loaded.plugin, &values.config(), options)
    })
    .await?;
    Ok(Json(match verified {
        Ok(v) => json!({
            "ok": true,
            "checks": v.checks.iter().map(|c| json!({"name": c.name, "detail": c.detail})).collect::<Vec<_>>(),
            "egress": v.egress,
            "error": null,
        }),
        Err(e) => {
            let errors = e.downcast_ref::<FieldErrors>().map(|f| json!(f.0)).unwrap_or(json!([]));
            json!({"ok": false, "checks": [], "error": format!("{e:#}"), "errors": errors})
        }
    }))
}

async fn run_now(State(app): AppState, caller: Caller, Path(id): Path<String>) -> ApiResult {
    caller.admin()?;
    let row = load_connector(&app, &id).await?;
    ensure_approved(&app, &row).await?;
    let run = queue_run(&app.db, &app.queue, &id, "manual").await?;
    match run {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(json!({"id": run}))).into_response()),
        Err(active) => Err(ApiError(
            StatusCode::CONFLICT,
            json!({"error": format!("run {active} of this connector is already queued or running"), "run": active}),
        )),
    }
}

/// Queues a run of a connector: its id, or the id of the run already queued or running.
pub(crate) async fn queue_run(
    db: &Db,
    queue: &Queue,
    connector: &str,
    triggered_by: &str,
) -> anyhow::Result<Result<String, String>> {
    let id = new_id("r_");
    if let Inserted::Conflict = db.insert_run(&id, connector, triggered_by).await? {
        let active = db.active_run(connector).await?.unwrap_or_default();
        return Ok(Err(active));
    }
    // A push that fails leaves the run queued and not enqueued: `reconcile` retries it.
    queue.push(&id).await?;
    db.mark_enqueued(&id).await?;
    tracing::info!(connector = %connector, run = %id, triggered_by, "run queued");
    Ok(Ok(id))
}

#[derive(serde::Deserialize)]
struct RunsQuery {
    connector: Option<String>,
    limit: Option<i64>,
}

async fn list_runs(State(app): AppState, _caller: Caller, Query(q): Query<RunsQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    // Two queries, whatever the number of runs: the runs, and their files.
    let runs = app.db.runs(q.connector.as_deref(), limit).await?;
    let files = app.db.files_of_runs(q.connector.as_deref(), limit).await?;
    let list = runs.iter().map(|run| run_view(run, files.iter().filter(|f| f.run_id == run.id))).collect();
    Ok(Json(Value::Array(list)))
}

/// A run as the API shows it, with its files.
fn run_view<'a>(run: &RunRow, files: impl Iterator<Item = &'a FileRow>) -> Value {
    let parse = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
    let files: Vec<Value> = files
        .map(|f| {
            json!({"name": f.name, "bytes": f.bytes, "sha256": f.sha256, "url": format!("/api/runs/{}/files/{}", run.id, f.name)})
        })
        .collect();
    json!({
        "id": run.id,
        "connector": run.connector_id,
        "status": run.status,
        "triggered_by": run.triggered_by,
        "queued_at": time(Some(run.queued_at)),
        "started_at": time(run.started_at),
        "finished_at": time(run.finished_at),
        "duration_ms": run.duration_ms,
        "assets": run.assets,
        "open_vulnerabilities": run.open_vulnerabilities,
        "worker": run.worker,
        "attempt": run.attempt,
        "delivery_started": run.delivery_started == 1,
        "progress": parse(&run.progress),
        "summary": parse(&run.summary),
        "cvm": parse(&run.cvm_result),
        "error": run.error,
        "error_kind": run.error_kind,
        // Fixed in the connector's settings (credentials, permissions), not by waiting.
        "settings_problem": run.error_kind.as_deref().and_then(FailureKind::parse).is_some_and(FailureKind::is_configuration),
        "files": files,
    })
}

async fn load_run(app: &App, id: &str) -> ApiResult<RunRow> {
    app.db.run(id).await?.ok_or_else(|| ApiError::not_found("run", id))
}

async fn get_run(State(app): AppState, _caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let run = load_run(&app, &id).await?;
    let files = app.db.files(&run.id).await?;
    Ok(Json(run_view(&run, files.iter())))
}

async fn run_log(State(app): AppState, _caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    load_run(&app, &id).await?;
    Ok(Json(json!(app.db.logs(&id).await?)))
}

/// A run's KDI file, streamed from where it is kept (gzipped): as it is to a client
/// that accepts gzip, else decompressed as it is sent; never whole in memory. Both
/// carry `Content-Length`. A file whose object is gone answers 410.
async fn run_file(
    State(app): AppState,
    _caller: Caller,
    Path((id, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    load_run(&app, &id).await?;
    let place = app.db.file_place(&id, &name).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("run {id} has no file `{name}` (or it is past its retention)"))
    })?;
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")));
    let (packed, stored): (Body, i64) = match (&place.location, place.content) {
        (Some(location), _) => match app.files.get(location).await? {
            Found::Object(object) => {
                let size = object.meta.size as i64;
                if accepts_gzip {
                    (Body::from_stream(object.into_stream()), size)
                } else {
                    (gunzipped(move || files::gunzip_blocking(object)), size)
                }
            }
            Found::Missing => {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    format!(
                        "run {id}'s file `{name}` is gone from the file store ({location}): files are kept {} days after their run (--retention-days), and the store's own lifecycle rules may remove them sooner",
                        app.retention.as_secs() / 86_400
                    ),
                ))
            }
        },
        // Written before the file store; `connector-host files migrate` moves it.
        (None, Some(packed)) => {
            let size = packed.len() as i64;
            if accepts_gzip {
                (Body::from(packed), size)
            } else {
                (gunzipped(move || flate2::read::GzDecoder::new(std::io::Cursor::new(packed))), size)
            }
        }
        (None, None) => return Err(anyhow::anyhow!("run {id}'s file `{name}` has neither a location nor content").into()),
    };
    let mut response = packed.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\', '\r', '\n'], ""));
    headers.insert(header::CONTENT_DISPOSITION, disposition.parse().map_err(anyhow::Error::from)?);
    let length = if accepts_gzip {
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        stored
    } else {
        place.bytes
    };
    headers.insert(header::CONTENT_LENGTH, length.into());
    Ok(response)
}

/// A body of what `open` reads (on a blocking thread, 64 KiB at a time).
fn gunzipped<R: std::io::Read + Send + 'static>(open: impl FnOnce() -> R + Send + 'static) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = open();
        loop {
            let mut chunk = vec![0u8; 64 << 10];
            let sent = match reader.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    tx.blocking_send(Ok(Bytes::from(chunk)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => tx.blocking_send(Err(e)),
            };
            // The client went away: stop reading.
            if sent.is_err() {
                return;
            }
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) }))
}

async fn list_tokens(State(app): AppState, caller: Caller) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let tokens = app.db.tokens().await?;
    Ok(Json(json!(tokens
        .iter()
        .map(|t| json!({"id": t.id, "name": t.name, "role": t.role, "created_at": time(Some(t.created_at))}))
        .collect::<Vec<_>>())))
}

async fn create_token(State(app): AppState, caller: Caller, body: Bytes) -> ApiResult {
    caller.admin()?;
    let body = object(&body)?;
    let name = body.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty());
    let role = body.get("role").and_then(Value::as_str).and_then(Role::parse);
    let (Some(name), Some(role)) = (name, role) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "give `name` (text) and `role` (`admin` or `viewer`)",
        ));
    };
    let token = auth::generate()?;
    let id = auth::add(&app.db, name, role, &token).await?;
    tracing::info!(token_id = %id, role = role.as_str(), "token created");
    // The only time the token is shown.
    Ok((StatusCode::CREATED, Json(json!({"id": id, "name": name, "role": role, "token": token}))).into_response())
}

async fn delete_token(State(app): AppState, caller: Caller, Path(id): Path<String>) -> ApiResult {
    caller.admin()?;
    let tokens = app.db.tokens().await?;
    let Some(token) = tokens.iter().find(|t| t.id == id) else { return Err(ApiError::not_found("token", &id)) };
    if token.role == "admin" && tokens.iter().filter(|t| t.role == "admin").count() == 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this is the last admin token; create another before deleting it",
        ));
    }
    app.db.delete_token(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
