//! The simulated Defender API and Azure AD login host, on one loopback port.
//!
//! - `POST /{tenant}/oauth2/v2.0/token` (scope) and `POST /{tenant}/oauth2/token`
//!   (resource): client credentials, with Azure AD's error shapes for an unknown
//!   tenant (AADSTS90002), unknown client (AADSTS700016), wrong secret
//!   (AADSTS7000215), bad scope (AADSTS70011) and bad resource (AADSTS500011).
//! - `GET /api/machines`: `$filter` on `healthStatus eq|ne '…'`, `$top` (at most
//!   10,000), `$skip`, and a nextLink when `$top` is absent and more remain.
//! - `GET /api/machines/SoftwareVulnerabilitiesByMachine`: `pageSize` (default
//!   50,000, at most 200,000) with an opaque `$skiptoken` nextLink; `$top` returns
//!   that many rows and no nextLink.
//!
//! Bearer tokens are checked (401), and so are the application's roles (403).

// Handlers return early with a ready error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use super::generator::{Tenant, TenantSpec};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const MACHINE_ROLES: [&str; 2] = ["Machine.Read.All", "Machine.ReadWrite.All"];
const VULNERABILITY_ROLE: &str = "Vulnerability.Read.All";
const V2_SCOPES: [&str; 2] = [
    "https://api.securitycenter.microsoft.com/.default",
    "https://securitycenter.onmicrosoft.com/windowsatpservice/.default",
];
const V1_RESOURCES: [&str; 3] = [
    "https://api.securitycenter.microsoft.com",
    "https://api.securitycenter.windows.com",
    "https://api.security.microsoft.com",
];

/// How the simulated tenant behaves beyond its data.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Application permissions granted to the client.
    pub roles: Vec<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            roles: vec!["Machine.Read.All".into(), VULNERABILITY_ROLE.into()],
        }
    }
}

struct Shared {
    tenant: Tenant,
    options: SimOptions,
    base_url: String,
    tokens: Mutex<HashSet<String>>,
    calls: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn count(&self, endpoint: &str) {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(endpoint.to_owned())
            .or_default() += 1;
    }
}

/// A running simulator; it stops when dropped.
pub struct DefenderSim {
    shared: Arc<Shared>,
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DefenderSim {
    /// Generates a tenant and serves it on an ephemeral port of 127.0.0.1.
    pub fn start(spec: TenantSpec, options: SimOptions) -> anyhow::Result<DefenderSim> {
        let tenant = Tenant::generate(spec);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            tenant,
            options,
            base_url: format!("http://{address}"),
            tokens: Mutex::default(),
            calls: Mutex::default(),
        });
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
            .route("/{tenant}/oauth2/token", post(token_v1))
            .route("/api/machines", get(machines))
            .route(
                "/api/machines/SoftwareVulnerabilitiesByMachine",
                get(vulnerabilities),
            )
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("defender-sim".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("simulator runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("simulator listener");
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            rx.await.ok();
                        })
                        .await
                        .ok();
                });
            })?;
        Ok(DefenderSim {
            shared,
            address,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, serving both the API and the login host.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn tenant(&self) -> &Tenant {
        &self.shared.tenant
    }

    /// Calls served so far, by endpoint (`token`, `machines`, `vulnerabilities`).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// A connector configuration (TOML) that works against this tenant.
    pub fn config_toml(&self) -> String {
        let t = self.tenant();
        format!(
            "[connector]\nname = \"Simulated Defender\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\ntenant_id = \"{}\"\nhost = \"{}\"\nlogin_host = \"{}\"\n",
            t.client_id,
            t.client_secret,
            t.tenant_id,
            self.base_url(),
            self.base_url()
        )
    }
}

impl Drop for DefenderSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

fn aad_error(status: StatusCode, error: &str, code: u64, message: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {message}\r\nTrace ID: 0b7e1c7a-0000-4000-8000-000000000000\r\nCorrelation ID: 5d0e2f4b-0000-4000-8000-000000000000\r\nTimestamp: 2026-11-28 01:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-11-28 01:00:00Z",
        "trace_id": "0b7e1c7a-0000-4000-8000-000000000000",
        "correlation_id": "5d0e2f4b-0000-4000-8000-000000000000",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (status, axum::Json(body)).into_response()
}

fn check_client(
    shared: &Shared,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Result<(), Response> {
    let t = &shared.tenant;
    if tenant != t.tenant_id {
        return Err(aad_error(StatusCode::BAD_REQUEST, "invalid_request", 90002, &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")));
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ));
    }
    let client = form.get("client_id").map(String::as_str).unwrap_or("");
    if client != t.client_id {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client}' was not found in the directory '{tenant}'."
            ),
        ));
    }
    if form.get("client_secret") != Some(&t.client_secret) {
        return Err(aad_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."));
    }
    Ok(())
}

fn issue_token(shared: &Shared, v1: bool) -> Response {
    let mut tokens = shared.tokens.lock().unwrap();
    let token = format!("sim-token-{}", tokens.len() + 1);
    tokens.insert(token.clone());
    let body = if v1 {
        json!({"token_type": "Bearer", "expires_in": "3599", "ext_expires_in": "3599", "expires_on": "1900000000", "not_before": "1899996400", "resource": V1_RESOURCES[0], "access_token": token})
    } else {
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})
    };
    axum::Json(body).into_response()
}

async fn token_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    shared.count("token");
    if let Err(e) = check_client(&shared, &tenant, &form) {
        return e;
    }
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    if !V2_SCOPES.contains(&scope) {
        return aad_error(StatusCode::BAD_REQUEST, "invalid_scope", 70011, &format!("The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."));
    }
    issue_token(&shared, false)
}

async fn token_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    shared.count("token");
    if let Err(e) = check_client(&shared, &tenant, &form) {
        return e;
    }
    let resource = form.get("resource").map(String::as_str).unwrap_or("");
    if !V1_RESOURCES.contains(&resource) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!("The resource principal named {resource} was not found in the tenant."),
        );
    }
    issue_token(&shared, true)
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"code": code, "message": message, "target": "|5f3a9c1e.0000"}}),
        ),
    )
        .into_response()
}

fn authorize(shared: &Shared, headers: &HeaderMap, roles: &[&str]) -> Result<(), Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !shared.tokens.lock().unwrap().contains(token) {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Authorization has been denied for this request.",
        ));
    }
    if !roles
        .iter()
        .any(|role| shared.options.roles.iter().any(|r| r == role))
    {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("The application does not have any of the required application permissions ({}) to access the resource.", roles.join(", ")),
        ));
    }
    Ok(())
}

/// `healthStatus eq 'Active'` or `healthStatus ne 'Active'`.
fn health_filter(filter: &str) -> Result<(bool, String), String> {
    let parts: Vec<&str> = filter.split_whitespace().collect();
    match parts.as_slice() {
        ["healthStatus", op @ ("eq" | "ne"), value]
            if value.starts_with('\'') && value.ends_with('\'') && value.len() >= 2 =>
        {
            Ok((*op == "eq", value[1..value.len() - 1].to_owned()))
        }
        _ => Err(format!("Invalid filter clause: {filter}")),
    }
}

async fn machines(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.count("machines");
    if let Err(e) = authorize(&shared, &headers, &MACHINE_ROLES) {
        return e;
    }
    let filter = match query.get("$filter").map(|f| health_filter(f)).transpose() {
        Ok(f) => f,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, "ODataError", &message),
    };
    let parse = |key: &str| query.get(key).map(|v| v.parse::<usize>());
    let top = match parse("$top") {
        None => None,
        Some(Ok(n)) if n <= 10_000 => Some(n),
        Some(_) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "ODataError",
                "The limit of '10000' for Top query has been exceeded.",
            )
        }
    };
    let skip = match parse("$skip") {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "ODataError",
                "Invalid $skip value.",
            )
        }
    };
    let matching: Vec<&super::Machine> = shared
        .tenant
        .machines()
        .iter()
        .filter(|m| {
            filter
                .as_ref()
                .is_none_or(|(eq, value)| (m.health_status == value) == *eq)
        })
        .collect();
    let take = top.unwrap_or(10_000);
    let page: Vec<&super::Machine> = matching.iter().skip(skip).take(take).copied().collect();
    let mut body = json!({
        "@odata.context": format!("{}/api/$metadata#Machines", shared.base_url),
        "value": page,
    });
    if top.is_none() && skip + take < matching.len() {
        let mut next = format!("{}/api/machines?$skip={}", shared.base_url, skip + take);
        if let Some(f) = query.get("$filter") {
            next.push_str(&format!(
                "&$filter={}",
                f.replace(' ', "%20").replace('\'', "%27")
            ));
        }
        body["@odata.nextLink"] = Value::String(next);
    }
    axum::Json(body).into_response()
}

fn skiptoken(offset: u64) -> String {
    // Opaque to clients, like Defender's base64 JSON tokens.
    format!("eyJvZmZzZXQiOj{:x}", offset ^ 0x5A5A_5A5A)
}

fn parse_skiptoken(token: &str) -> Option<u64> {
    let hex = token.strip_prefix("eyJvZmZzZXQiOj")?;
    u64::from_str_radix(hex, 16).ok().map(|v| v ^ 0x5A5A_5A5A)
}

async fn vulnerabilities(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.count("vulnerabilities");
    if let Err(e) = authorize(&shared, &headers, &[VULNERABILITY_ROLE]) {
        return e;
    }
    let page_size = match query
        .get("pageSize")
        .or_else(|| query.get("pagesize"))
        .map(|v| v.parse::<u64>())
    {
        None => 50_000,
        Some(Ok(n)) if (1..=200_000).contains(&n) => n,
        Some(_) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "pageSize must be between 1 and 200000.",
            )
        }
    };
    let top = match query.get("$top").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return api_error(StatusCode::BAD_REQUEST, "ODataError", "Invalid $top value.")
        }
    };
    let offset = match query.get("$skiptoken").map(|t| parse_skiptoken(t)) {
        None => 0,
        Some(Some(o)) => o,
        Some(None) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "Invalid skip token.",
            )
        }
    };
    let total = shared.tenant.spec.rows;
    let count = top.unwrap_or(page_size).min(total.saturating_sub(offset));
    let rows: Vec<super::VulnerabilityRow> = (offset..offset + count)
        .map(|i| shared.tenant.row(i))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.AssessmentVulnerability)", shared.base_url),
        "value": rows,
    });
    if top.is_none() && offset + count < total {
        body["@odata.nextLink"] = Value::String(format!(
            "{}/api/machines/SoftwareVulnerabilitiesByMachine?pagesize={page_size}&$skiptoken={}",
            shared.base_url,
            skiptoken(offset + count)
        ));
    }
    axum::Json(body).into_response()
}

/// Generates and serves a tenant of the given size with default options.
pub fn start_default(seed: u64, devices: usize, rows: u64) -> anyhow::Result<DefenderSim> {
    DefenderSim::start(
        TenantSpec {
            seed,
            devices,
            rows,
        },
        SimOptions::default(),
    )
}
