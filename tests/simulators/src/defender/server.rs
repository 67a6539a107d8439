//! The simulated Defender API and Azure AD login host on one loopback port, and the
//! export's blob storage on another.
//!
//! - `POST /{tenant}/oauth2/v2.0/token` (scope) and `POST /{tenant}/oauth2/token`
//!   (resource): client credentials, with Azure AD's error shapes for an unknown
//!   tenant (AADSTS90002), unknown client (AADSTS700016), wrong secret
//!   (AADSTS7000215), bad scope (AADSTS70011) and bad resource (AADSTS500011).
//! - `GET /api/machines`: `$filter` on `healthStatus eq|ne '…'`, `$top` (at most
//!   10,000), `$skip`, and a nextLink when `$top` is absent and more remain; a `$skip`
//!   past the end answers 404 `ResourceNotFound`, as Defender does for "no machines".
//! - `GET /api/machines/SoftwareVulnerabilitiesByMachine`: `pageSize` (default
//!   50,000, at most 200,000) with an opaque `$skiptoken` nextLink; `$top` returns
//!   that many rows and no nextLink.
//! - `GET /api/machines/SoftwareVulnerabilityChangesByMachine`: the delta export.
//!   `sinceTime` is required and may reach back at most 14 days (400 otherwise);
//!   the tenant's changes are computed once per snapshot window
//!   ([`SimOptions::snapshot_window`], 6 hours as Defender's, shorter in tests): an
//!   event shows once its window has closed, and the answer holds every event from
//!   the start of the window `sinceTime` falls in. `pageSize` pages with a nextLink.
//! - `GET /api/vulnerabilities/{cveId}/machineReferences`: the devices whose live
//!   rows carry the CVE (any case), as `id`, `computerDnsName`, `osPlatform` and
//!   `rbacGroupName`; an empty list for an id no row carries.
//! - `GET /api/machines/SoftwareVulnerabilitiesExport`: signed URLs of gzip JSON-lines
//!   files with PascalCase keys, served by the storage listener, which refuses
//!   requests that carry a bearer token and counts them.
//!
//! Bearer tokens are checked (401), and so are the application's roles (403).
//! [`Faults`] switch on throttling, server errors, expiring tokens, slow and
//! truncated responses, odd paging and expiring export links.

// Handlers return early with a ready error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use super::faults::{Endpoint, Faults, RetryAfter};
use super::generator::{Tenant, TenantSpec};
use crate::serve::{bind, spawn, Background};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime};

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
/// The export generation the simulator serves.
pub const EXPORT_GENERATED_TIME: &str = "2026-11-28T00:00:00Z";

/// How the simulated tenant behaves beyond its data.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Application permissions granted to the client.
    pub roles: Vec<String>,
    pub faults: Faults,
    /// The token audiences this tenant's Azure AD knows, as v2 scopes (v1 resources
    /// are the same without `/.default`); others are refused with AADSTS500011, as
    /// a government tenant refuses the scopes of another cloud's app registration.
    /// `None`: the commercial ones.
    pub scopes: Option<Vec<String>>,
    /// How often the delta export's changes are computed (Defender: 6 hours).
    pub snapshot_window: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            roles: vec!["Machine.Read.All".into(), VULNERABILITY_ROLE.into()],
            faults: Faults::default(),
            scopes: None,
            snapshot_window: Duration::from_secs(6 * 3600),
        }
    }
}

#[derive(Default)]
struct Counters {
    calls: BTreeMap<String, u64>,
    /// API calls counted for `throttle_every`.
    api_calls: u64,
    tokens: HashMap<String, Instant>,
    /// Pages already failed or cut once, by (fault, page).
    done_once: HashSet<(&'static str, u64)>,
    vulnerability_calls: VecDeque<Instant>,
}

struct Shared {
    tenant: RwLock<Tenant>,
    options: SimOptions,
    base_url: String,
    storage_url: String,
    counters: Mutex<Counters>,
    /// Vulnerability pages rendered ahead by
    /// [`DefenderSim::prerender_vulnerability_pages`], by (offset, page size).
    rendered_pages: RwLock<HashMap<(u64, u64), bytes::Bytes>>,
    /// The devices of each CVE (upper case) in the live rows, built on the first
    /// `machineReferences` call after the tenant changed.
    references: RwLock<Option<HashMap<String, Vec<Value>>>>,
    /// Export files as served (gzip), by index, made on the first request after the
    /// tenant changed: a file read in ranges must be the same bytes each time.
    export_files: RwLock<HashMap<usize, bytes::Bytes>>,
}

impl Shared {
    fn count(&self, what: &str) {
        *self.counters.lock().unwrap().calls.entry(what.to_owned()).or_default() += 1;
    }

    fn faults(&self) -> &Faults {
        &self.options.faults
    }

    /// True the first time a fault fires for a page.
    fn first_time(&self, fault: &'static str, page: u64) -> bool {
        self.counters.lock().unwrap().done_once.insert((fault, page))
    }
}

/// A running simulator; it stops when dropped.
pub struct DefenderSim {
    shared: Arc<Shared>,
    _server: Background,
}

impl DefenderSim {
    /// Generates a tenant and serves it on ephemeral ports of 127.0.0.1.
    pub fn start(spec: TenantSpec, options: SimOptions) -> anyhow::Result<DefenderSim> {
        let tenant = Tenant::generate(spec);
        let api = bind()?;
        let storage = bind()?;
        let shared = Arc::new(Shared {
            tenant: RwLock::new(tenant),
            options,
            base_url: format!("http://{}", api.local_addr()?),
            // A different origin, as blob storage is: `localhost`, another port.
            storage_url: format!("http://localhost:{}", storage.local_addr()?.port()),
            counters: Mutex::default(),
            rendered_pages: RwLock::default(),
            references: RwLock::default(),
            export_files: RwLock::default(),
        });
        let api_app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
            .route("/{tenant}/oauth2/token", post(token_v1))
            .route("/api/machines", get(machines))
            .route("/api/machines/SoftwareVulnerabilitiesByMachine", get(vulnerabilities))
            .route("/api/machines/SoftwareVulnerabilitiesExport", get(export_list))
            .route("/api/machines/SoftwareVulnerabilityChangesByMachine", get(changes))
            .route("/api/vulnerabilities", get(catalogue))
            .route("/api/vulnerabilities/{cve}/machineReferences", get(machine_references))
            .with_state(shared.clone());
        let storage_app = Router::new().route("/tvm-export/{file}", get(export_file)).with_state(shared.clone());
        let server = spawn("defender-sim", vec![(api, api_app), (storage, storage_app)])?;
        Ok(DefenderSim { shared, _server: server })
    }

    /// `http://127.0.0.1:PORT`, serving both the API and the login host.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// `http://localhost:PORT`, the export files' storage host.
    pub fn storage_url(&self) -> &str {
        &self.shared.storage_url
    }

    pub fn tenant(&self) -> RwLockReadGuard<'_, Tenant> {
        self.shared.tenant.read().unwrap()
    }

    /// Changes the tenant between runs (fixed vulnerabilities, retired devices).
    pub fn update_tenant(&self, change: impl FnOnce(&mut Tenant)) {
        change(&mut self.shared.tenant.write().unwrap());
        self.shared.rendered_pages.write().unwrap().clear();
        *self.shared.references.write().unwrap() = None;
        self.shared.export_files.write().unwrap().clear();
    }

    /// Renders every vulnerability page of `page_size` rows ahead, on every core,
    /// and serves them from memory from then on (until the tenant changes); returns
    /// the bytes held. Rendering a page costs several times what a client spends
    /// reading it, so a benchmark that did not render ahead would measure the
    /// simulator, which shares the cores with the connector, not the connector.
    pub fn prerender_vulnerability_pages(&self, page_size: u64) -> u64 {
        let total = self.tenant().row_count();
        let offsets: Vec<u64> = (0..total).step_by(page_size.max(1) as usize).collect();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&offset) = offsets.get(i) else { break };
                    let page = render_vulnerability_page(&self.shared, offset, page_size, None, offset / page_size);
                    self.shared.rendered_pages.write().unwrap().insert((offset, page_size), page.into());
                });
            }
        });
        self.shared.rendered_pages.read().unwrap().values().map(|page| page.len() as u64).sum()
    }

    /// Indexes the live rows by CVE ahead of `machineReferences` calls (a benchmark
    /// would otherwise time the simulator's first index, not the connector).
    pub fn index_references(&self) {
        build_references(&self.shared);
    }

    /// Requests served so far, by kind: `token`, `machines`, `vulnerabilities`,
    /// `export list`, `export file`, and the answers `401`, `429`, `503`, and
    /// `export file with a bearer token` (which must stay absent).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared.counters.lock().unwrap().calls.clone()
    }

    /// A connector configuration (TOML) that works against this tenant.
    pub fn config_toml(&self) -> String {
        let t = self.tenant();
        format!(
            "[connector]\nname = \"Simulated Defender\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\ntenant_id = \"{}\"\nhost = \"{}\"\nlogin_host = \"{}\"\nstorage_host = \"{}\"\n",
            t.client_id,
            t.client_secret,
            t.tenant_id,
            self.base_url(),
            self.base_url(),
            self.storage_url()
        )
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

fn check_client(shared: &Shared, tenant: &str, form: &HashMap<String, String>) -> Result<(), Response> {
    let t = shared.tenant.read().unwrap();
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
            &format!("Application with identifier '{client}' was not found in the directory '{tenant}'."),
        ));
    }
    if form.get("client_secret") != Some(&t.client_secret) {
        return Err(aad_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."));
    }
    Ok(())
}

fn issue_token(shared: &Shared, v1: bool) -> Response {
    let mut counters = shared.counters.lock().unwrap();
    let token = format!("sim-token-{}", counters.tokens.len() + 1);
    counters.tokens.insert(token.clone(), Instant::now());
    let expires_in = shared.faults().token_expires_in.unwrap_or(3599);
    let body = if v1 {
        json!({"token_type": "Bearer", "expires_in": expires_in.to_string(), "ext_expires_in": expires_in.to_string(), "expires_on": "1900000000", "not_before": "1899996400", "resource": V1_RESOURCES[0], "access_token": token})
    } else {
        json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token})
    };
    axum::Json(body).into_response()
}

async fn token_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    token(&shared, &tenant, &form, false)
}

async fn token_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    token(&shared, &tenant, &form, true)
}

/// Both token endpoints: v2 checks `scope`, v1 `resource`.
fn token(shared: &Shared, tenant: &str, form: &HashMap<String, String>, v1: bool) -> Response {
    shared.count("token");
    if let Err(e) = check_client(shared, tenant, form) {
        return e;
    }
    if let Some(scopes) = &shared.options.scopes {
        let (asked, known) = match v1 {
            true => {
                (form.get("resource"), scopes.iter().any(|s| Some(&s.replace("/.default", "")) == form.get("resource")))
            }
            false => (form.get("scope"), scopes.iter().any(|s| Some(s) == form.get("scope"))),
        };
        if !known {
            let resource = asked.map(|a| a.trim_end_matches("/.default")).unwrap_or("");
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                500011,
                &format!("The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."),
            );
        }
    } else if v1 {
        let resource = form.get("resource").map(String::as_str).unwrap_or("");
        if !V1_RESOURCES.contains(&resource) {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                500011,
                &format!("The resource principal named {resource} was not found in the tenant."),
            );
        }
    } else {
        let scope = form.get("scope").map(String::as_str).unwrap_or("");
        if !V2_SCOPES.contains(&scope) {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            );
        }
    }
    issue_token(shared, v1)
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message, "target": "|5f3a9c1e.0000"}})))
        .into_response()
}

fn throttled(shared: &Shared, retry_after: RetryAfter) -> Response {
    shared.count("429");
    let mut response = api_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "API calls quota exceeded! Maximum admitted 30 per Minute.",
    );
    let value = match retry_after {
        RetryAfter::Seconds(s) => Some(s.to_string()),
        RetryAfter::HttpDate(s) => Some(httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(s))),
        RetryAfter::Absent => None,
    };
    if let Some(value) = value {
        response.headers_mut().insert("retry-after", value.parse().unwrap());
    }
    response
}

/// Authentication, roles, and the faults every API call shares (throttling, delay).
async fn admit(shared: &Shared, headers: &HeaderMap, roles: &[&str]) -> Result<(), Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let throttle = {
        let mut counters = shared.counters.lock().unwrap();
        let valid = counters.tokens.get(token).is_some_and(|issued| match shared.faults().token_valid_for {
            Some(lifetime) => issued.elapsed() < lifetime,
            None => true,
        });
        if !valid {
            drop(counters);
            shared.count("401");
            return Err(api_error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Authorization has been denied for this request.",
            ));
        }
        counters.api_calls += 1;
        shared.faults().throttle_every.filter(|(n, _)| counters.api_calls.is_multiple_of(*n)).map(|(_, r)| r)
    };
    if let Some(retry_after) = throttle {
        return Err(throttled(shared, retry_after));
    }
    if !roles.iter().any(|role| shared.options.roles.iter().any(|r| r == role)) {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("The application does not have any of the required application permissions ({}) to access the resource.", roles.join(", ")),
        ));
    }
    // The token was judged on arrival; the slowness is the answer's.
    if let Some(delay) = shared.faults().slow {
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

/// A 503 when the server-error fault applies to this page.
fn server_error(shared: &Shared, endpoint: Endpoint, page: u64) -> Option<Response> {
    let fault = shared.faults().server_error.filter(|f| f.endpoint == endpoint)?;
    let fires = if fault.always { page >= fault.page } else { page == fault.page && shared.first_time("503", page) };
    fires.then(|| {
        shared.count("503");
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    })
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

/// The machine list as served: the tenant's machines, plus, with the
/// `duplicate_machines` fault, stale repeats and machines merged into others.
fn machine_list(shared: &Shared) -> Vec<Value> {
    let mut list: Vec<Value> =
        shared.tenant.read().unwrap().machines().iter().map(|m| serde_json::to_value(m).unwrap()).collect();
    if shared.faults().duplicate_machines {
        let originals = list.clone();
        for (i, m) in originals.iter().enumerate().filter(|(i, _)| i % 7 == 0) {
            let mut stale = m.clone();
            stale["lastSeen"] = json!("2020-01-01T00:00:00Z");
            stale["computerDnsName"] = json!("stale-copy.corp.contoso.com");
            // Stale copies appear both before and after the current record.
            if i % 14 == 0 {
                list.insert(0, stale);
            } else {
                list.push(stale);
            }
        }
        for (i, m) in originals.iter().enumerate().filter(|(i, m)| i % 11 == 5 && m["healthStatus"] == "Active") {
            let mut merged = m.clone();
            merged["id"] = json!(format!("{:0>40}", format!("merged{i}")));
            merged["mergedIntoMachineId"] = m["id"].clone();
            list.push(merged);
        }
    }
    list
}

async fn machines(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.count("machines");
    if let Err(e) = admit(&shared, &headers, &MACHINE_ROLES).await {
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
        Some(Err(_)) => return api_error(StatusCode::BAD_REQUEST, "ODataError", "Invalid $skip value."),
    };
    let take = top.unwrap_or(10_000);
    if let Some(e) = server_error(&shared, Endpoint::Machines, (skip / take.max(1)) as u64) {
        return e;
    }
    let wanted = |health: &str| filter.as_ref().is_none_or(|(eq, value)| (health == value.as_str()) == *eq);
    // The next link, when one is due after `count` machines of `matching`.
    let next_link = |count: usize, matching: usize| {
        let link_wanted = top.is_none() || shared.faults().machines_next_link;
        (link_wanted && count > 0 && skip + take < matching).then(|| {
            let mut next = format!("{}/api/machines?$skip={}", shared.base_url, skip + take);
            if let Some(t) = top {
                next.push_str(&format!("&$top={t}"));
            }
            if let Some(f) = query.get("$filter") {
                next.push_str(&format!("&$filter={}", f.replace(' ', "%20").replace('\'', "%27")));
            }
            next
        })
    };
    let context = format!("{}/api/$metadata#Machines", shared.base_url);
    let body = if shared.faults().duplicate_machines {
        let matching: Vec<Value> =
            machine_list(&shared).into_iter().filter(|m| wanted(m["healthStatus"].as_str().unwrap_or(""))).collect();
        let page: Vec<Value> = matching.iter().skip(skip).take(take).cloned().collect();
        let next_link = next_link(page.len(), matching.len());
        (page.is_empty(), serde_json::to_vec(&ODataPage { context, value: &page, next_link }))
    } else {
        // Only the page's machines are serialized, straight from the records: a
        // `Value` of each made the simulator, not the connector, the slow part of
        // listing tens of thousands of devices.
        let tenant = shared.tenant.read().unwrap();
        let matching = || tenant.machines().iter().filter(|m| wanted(m.health_status));
        let page: Vec<&super::generator::Machine> = matching().skip(skip).take(take).collect();
        let next_link = next_link(page.len(), matching().count());
        (page.is_empty(), serde_json::to_vec(&ODataPage { context, value: &page, next_link }))
    };
    let (empty, body) = (body.0, body.1.expect("a page serializes"));
    if empty && skip > 0 {
        // Defender answers 404 when a page has no machines: past the end of the list
        // when the count is a multiple of the page size.
        return api_error(StatusCode::NOT_FOUND, "ResourceNotFound", "No machines found");
    }
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}

/// An OData page as Defender sends it.
#[derive(serde::Serialize)]
struct ODataPage<'a, T: serde::Serialize> {
    #[serde(rename = "@odata.context")]
    context: String,
    value: &'a [T],
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
}

fn skiptoken(offset: u64) -> String {
    // Opaque to clients, like Defender's base64 JSON tokens.
    format!("eyJvZmZzZXQiOj{:x}", offset ^ 0x5A5A_5A5A)
}

fn parse_skiptoken(token: &str) -> Option<u64> {
    let hex = token.strip_prefix("eyJvZmZzZXQiOj")?;
    u64::from_str_radix(hex, 16).ok().map(|v| v ^ 0x5A5A_5A5A)
}

/// 429 when the rolling-window limit of the vulnerabilities endpoint is exceeded.
fn over_rate_limit(shared: &Shared) -> bool {
    let Some((count, window)) = shared.faults().vulnerabilities_rate_limit else { return false };
    let mut counters = shared.counters.lock().unwrap();
    let now = Instant::now();
    while counters.vulnerability_calls.front().is_some_and(|t| now.duration_since(*t) >= window) {
        counters.vulnerability_calls.pop_front();
    }
    if counters.vulnerability_calls.len() >= count {
        return true;
    }
    counters.vulnerability_calls.push_back(now);
    false
}

async fn vulnerabilities(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.count("vulnerabilities");
    if over_rate_limit(&shared) {
        return throttled(&shared, RetryAfter::Seconds(1));
    }
    if let Err(e) = admit(&shared, &headers, &[VULNERABILITY_ROLE]).await {
        return e;
    }
    let page_size = match query.get("pageSize").or_else(|| query.get("pagesize")).map(|v| v.parse::<u64>()) {
        None => 50_000,
        Some(Ok(n)) if (1..=200_000).contains(&n) => n,
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "InvalidInput", "pageSize must be between 1 and 200000."),
    };
    let top = match query.get("$top").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return api_error(StatusCode::BAD_REQUEST, "ODataError", "Invalid $top value."),
    };
    let offset = match query.get("$skiptoken").map(|t| parse_skiptoken(t)) {
        None => 0,
        Some(Some(o)) => o,
        Some(None) => return api_error(StatusCode::BAD_REQUEST, "InvalidInput", "Invalid skip token."),
    };
    let page_index = offset / page_size;
    if let Some(e) = server_error(&shared, Endpoint::Vulnerabilities, page_index) {
        return e;
    }
    let faults = shared.faults();
    if faults.malformed_page == Some(page_index) {
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"value\": [{\"deviceId\": \"abc\", \"cveId\"",
        )
            .into_response();
    }
    // Faults that change the links bypass the cache of rendered pages.
    let plain_links = faults.next_link_loop_after.is_none() && !faults.foreign_next_link;
    let cached = (top.is_none() && plain_links)
        .then(|| shared.rendered_pages.read().unwrap().get(&(offset, page_size)).cloned())
        .flatten();
    let bytes = match cached {
        Some(bytes) => bytes,
        None => bytes::Bytes::from(render_vulnerability_page(&shared, offset, page_size, top, page_index)),
    };
    if faults.truncate_page_once == Some(page_index) && shared.first_time("truncate", page_index) {
        shared.count("truncated");
        return truncated(bytes);
    }
    (StatusCode::OK, [("content-type", "application/json")], bytes).into_response()
}

/// Indexes the live rows by CVE for `machineReferences`, unless done since the
/// tenant last changed.
fn build_references(shared: &Shared) {
    if shared.references.read().unwrap().is_some() {
        return;
    }
    {
        let tenant = shared.tenant.read().unwrap();
        let machines: HashMap<&str, &super::generator::Machine> =
            tenant.machines().iter().map(|m| (m.id.as_str(), m)).collect();
        let mut index: HashMap<String, BTreeMap<String, Value>> = HashMap::new();
        for row in tenant.live_rows() {
            let Some(id) = row.cve_id.as_deref().map(|c| c.trim().to_ascii_uppercase()) else { continue };
            let machine = machines.get(row.device_id.as_str());
            let device = json!({"id": row.device_id, "computerDnsName": machine.and_then(|m| m.computer_dns_name.clone()),
                "osPlatform": machine.map(|m| m.os_platform.clone()), "rbacGroupName": machine.and_then(|m| m.rbac_group_name)});
            index.entry(id).or_default().insert(row.device_id.clone(), device);
        }
        let index = index.into_iter().map(|(cve, devices)| (cve, devices.into_values().collect())).collect();
        *shared.references.write().unwrap() = Some(index);
    }
}

/// The vulnerability catalogue (see `catalogue`'s documentation).
async fn catalogue(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    use super::catalogue as c;
    shared.count("catalogue");
    if let Err(e) = admit(&shared, &headers, &[VULNERABILITY_ROLE]).await {
        return e;
    }
    if shared.faults().catalogue_forbidden {
        return api_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The application does not have any of the required application permissions (Vulnerability.Read.All) to access the resource.",
        );
    }
    let parse = |key: &str| query.get(key).map(|v| v.parse::<usize>());
    let top = match parse("$top") {
        None => c::MAX_TOP,
        Some(Ok(n)) if n <= c::MAX_TOP => n,
        Some(_) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "ODataError",
                "The limit of '8000' for Top query has been exceeded.",
            )
        }
    };
    let skip = match parse("$skip") {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return api_error(StatusCode::BAD_REQUEST, "ODataError", "Invalid $skip value."),
    };
    let after = match query.get("$filter").map(|f| c::updated_after(f)).transpose() {
        Ok(after) => {
            if after.is_some() {
                shared.count("catalogue filtered by updatedOn");
            }
            after
        }
        Err(message) => return api_error(StatusCode::BAD_REQUEST, "ODataError", &message),
    };
    let tenant = shared.tenant.read().unwrap();
    let seed = tenant.spec.seed;
    let value: Vec<Value> = (0..c::len())
        .map(|i| (i, tenant.catalogue_updated(i)))
        .filter(|(_, updated)| after.is_none_or(|after| *updated > after))
        .skip(skip)
        .take(top)
        .map(|(i, updated)| c::record(seed, i, updated))
        .collect();
    let body = json!({"@odata.context": format!("{}/api/$metadata#Vulnerabilities", shared.base_url), "value": value});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

/// The devices a CVE is on (see the module's documentation).
async fn machine_references(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cve): Path<String>,
) -> Response {
    shared.count("machine references");
    if let Err(e) = admit(&shared, &headers, &[VULNERABILITY_ROLE]).await {
        return e;
    }
    build_references(&shared);
    let references = shared.references.read().unwrap();
    let devices =
        references.as_ref().and_then(|r| r.get(&cve.trim().to_ascii_uppercase())).cloned().unwrap_or_default();
    let body = json!({"@odata.context": format!("{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.MachineReference)", shared.base_url), "value": devices});
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

/// The delta export (see the module's documentation).
async fn changes(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.count("changes");
    if over_rate_limit(&shared) {
        return throttled(&shared, RetryAfter::Seconds(1));
    }
    if let Err(e) = admit(&shared, &headers, &[VULNERABILITY_ROLE]).await {
        return e;
    }
    let Some(since) = query.get("sinceTime") else {
        return api_error(StatusCode::BAD_REQUEST, "InvalidInput", "The sinceTime parameter is required.");
    };
    let Ok(since) = chrono::DateTime::parse_from_rfc3339(since) else {
        return api_error(StatusCode::BAD_REQUEST, "InvalidInput", "sinceTime is not a valid date and time.");
    };
    let since = SystemTime::from(since.with_timezone(&chrono::Utc));
    let now = SystemTime::now();
    if now.duration_since(since).unwrap_or_default() > Duration::from_secs(14 * 86_400) {
        return api_error(StatusCode::BAD_REQUEST, "InvalidInput", "sinceTime can be at most 14 days ago.");
    }
    let page_size = match query.get("pageSize").or_else(|| query.get("pagesize")).map(|v| v.parse::<usize>()) {
        None => 50_000,
        Some(Ok(n)) if (1..=200_000).contains(&n) => n,
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "InvalidInput", "pageSize must be between 1 and 200000."),
    };
    let top = query.get("$top").and_then(|v| v.parse::<usize>().ok());
    let offset = query.get("$skiptoken").and_then(|t| parse_skiptoken(t)).unwrap_or(0) as usize;
    // Windows are counted from the epoch: the one `since` falls in starts at `from`,
    // and only events of windows that have closed (before `until`) are computed.
    let window = shared.options.snapshot_window.as_nanos().max(1);
    let floor = |t: SystemTime| {
        let nanos = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        SystemTime::UNIX_EPOCH + Duration::from_nanos(((nanos / window) * window) as u64)
    };
    let (from, until) = (floor(since), floor(now));
    let events: Vec<Value> = {
        let tenant = shared.tenant.read().unwrap();
        tenant.changes.iter().filter(|c| c.at >= from && c.at < until).map(|c| c.to_json()).collect()
    };
    let count = top.unwrap_or(page_size).min(events.len().saturating_sub(offset));
    let page = &events[offset.min(events.len())..offset.min(events.len()) + count];
    let mut body = json!({
        "@odata.context": format!("{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.AssessmentVulnerabilityChange)", shared.base_url),
        "value": page,
    });
    if top.is_none() && offset + count < events.len() {
        let mut link =
            url::Url::parse(&format!("{}/api/machines/SoftwareVulnerabilityChangesByMachine", shared.base_url))
                .unwrap();
        link.query_pairs_mut()
            .append_pair("sinceTime", query.get("sinceTime").map(String::as_str).unwrap_or_default())
            .append_pair("pageSize", &page_size.to_string())
            .append_pair("$skiptoken", &skiptoken((offset + count) as u64));
        body["@odata.nextLink"] = json!(link.to_string());
    }
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

/// One page of `SoftwareVulnerabilitiesByMachine` as served: `top` rows (or
/// `page_size`) from `offset`, with a nextLink while more remain.
fn render_vulnerability_page(
    shared: &Shared,
    offset: u64,
    page_size: u64,
    top: Option<u64>,
    page_index: u64,
) -> Vec<u8> {
    let faults = shared.faults();
    let (total, rows) = {
        let tenant = shared.tenant.read().unwrap();
        let total = tenant.row_count();
        let count = top.unwrap_or(page_size).min(total.saturating_sub(offset));
        (total, (offset..offset + count).map(|i| tenant.row_at(i)).collect::<Vec<_>>())
    };
    let count = rows.len() as u64;
    let next_link = (top.is_none() && offset + count < total).then(|| {
        let next_offset = if faults.next_link_loop_after == Some(page_index) { 0 } else { offset + count };
        let base = if faults.foreign_next_link { "http://127.0.0.2:9".to_owned() } else { shared.base_url.clone() };
        format!(
            "{base}/api/machines/SoftwareVulnerabilitiesByMachine?pagesize={page_size}&$skiptoken={}",
            skiptoken(next_offset)
        )
    });
    // Serialized straight from the rows: going through a `Value` tree made the
    // simulator, not the connector, the bottleneck of large runs.
    let body = ODataPage {
        context: format!(
            "{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.AssessmentVulnerability)",
            shared.base_url
        ),
        value: &rows,
        next_link,
    };
    serde_json::to_vec(&body).unwrap()
}

/// A response whose body stops half-way although its length promised more: the
/// connection drops mid-transfer.
fn truncated(bytes: bytes::Bytes) -> Response {
    let full = bytes.len();
    let half = bytes.slice(..full / 2);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        vec![Ok(half), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated cut"))];
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("content-length", full)
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

fn export_file_count(shared: &Shared) -> usize {
    shared.faults().export_files.unwrap_or(3).max(1)
}

async fn export_list(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.count("export list");
    if let Err(e) = admit(&shared, &headers, &[VULNERABILITY_ROLE]).await {
        return e;
    }
    let files: Vec<String> = (0..export_file_count(&shared))
        .map(|k| {
            format!(
                "{}/tvm-export/part-{k:05}-{}.json.gz?sv=2020-08-04&se=2026-11-28T06%3A00%3A00Z&sr=b&sp=r&sig=sim{k}",
                shared.storage_url,
                shared.tenant.read().unwrap().tenant_id
            )
        })
        .collect();
    axum::Json(json!({
        "@odata.context": format!("{}/api/$metadata#microsoft.windowsDefenderATP.api.ExportFilesResponse", shared.base_url),
        "exportFiles": files,
        "generatedTime": EXPORT_GENERATED_TIME,
    }))
    .into_response()
}

/// `deviceId` -> `DeviceId`, `osPlatform` -> `OSPlatform`, as the file export writes.
fn pascal_case(row: &super::VulnerabilityRow) -> Value {
    let Value::Object(fields) = serde_json::to_value(row).unwrap() else { unreachable!("rows are objects") };
    let renamed = fields
        .into_iter()
        .map(|(key, value)| {
            let key = match key.strip_prefix("os") {
                Some(rest) if rest.starts_with(char::is_uppercase) => format!("OS{rest}"),
                _ => key[..1].to_uppercase() + &key[1..],
            };
            (key, value)
        })
        .collect();
    Value::Object(renamed)
}

async fn export_file(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    use std::io::Write;
    shared.count("export file");
    if headers.contains_key("authorization") {
        shared.count("export file with a bearer token");
        return (StatusCode::BAD_REQUEST, "a SAS URL takes no bearer token").into_response();
    }
    let files = export_file_count(&shared);
    let index = file.strip_prefix("part-").and_then(|r| r.get(..5)).and_then(|n| n.parse::<usize>().ok());
    let Some(index) = index.filter(|i| *i < files && query.get("sig") == Some(&format!("sim{i}"))) else {
        return (StatusCode::NOT_FOUND, "BlobNotFound").into_response();
    };
    let faults = shared.faults();
    if faults.export_expire_once == Some(index) && shared.first_time("expire", index as u64) {
        shared.count("export link expired");
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request. Signature not valid in the specified key time frame</Message></Error>";
        return (StatusCode::FORBIDDEN, [("content-type", "application/xml")], xml).into_response();
    }
    let mid_file =
        headers.get("range").and_then(|r| r.to_str().ok()).and_then(parse_range).is_some_and(|(from, _)| from > 0);
    if mid_file && faults.export_expire_mid_file == Some(index) && shared.first_time("expire-mid-file", index as u64) {
        shared.count("export link expired");
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Signature not valid in the specified key time frame</Message></Error>";
        return (StatusCode::FORBIDDEN, [("content-type", "application/xml")], xml).into_response();
    }
    if faults.export_empty_once == Some(index) && shared.first_time("empty", index as u64) {
        shared.count("export file empty");
        return StatusCode::OK.into_response();
    }
    let cached = shared.export_files.read().unwrap().get(&index).cloned();
    let file = match cached {
        Some(file) => file,
        None => {
            let tenant = shared.tenant.read().unwrap();
            let total = tenant.row_count();
            let (start, end) = (total * index as u64 / files as u64, total * (index as u64 + 1) / files as u64);
            // Buffered: serde writes token by token, and a deflate call per token made
            // building a file cost 75 µs a row (the simulator, not the connector, was
            // then what a default run of a large tenant waited on).
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut out = std::io::BufWriter::with_capacity(1 << 16, gz);
            for i in start..end {
                serde_json::to_writer(&mut out, &pascal_case(&tenant.row_at(i))).unwrap();
                out.write_all(b"\n").unwrap();
            }
            let gz = out.into_inner().map_err(|e| e.into_error()).unwrap();
            let file = bytes::Bytes::from(gz.finish().unwrap());
            shared.export_files.write().unwrap().insert(index, file.clone());
            file
        }
    };
    // Blob storage answers a `Range: bytes=a-b` with 206 and that slice, a range
    // past the end with 416.
    let size = file.len() as u64;
    match headers.get("range").and_then(|r| r.to_str().ok()).map(parse_range) {
        None => (StatusCode::OK, [("content-type", "application/octet-stream")], file).into_response(),
        Some(Some((from, _))) if from >= size => Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header("content-range", format!("bytes */{size}"))
            .body(Body::empty())
            .unwrap(),
        Some(Some((from, to))) => {
            shared.count("export file range");
            let to = to.unwrap_or(size - 1).min(size - 1);
            Response::builder()
                .status(StatusCode::PARTIAL_CONTENT)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("bytes {from}-{to}/{size}"))
                .body(Body::from(file.slice(from as usize..=to as usize)))
                .unwrap()
        }
        Some(None) => (StatusCode::BAD_REQUEST, "InvalidRange").into_response(),
    }
}

/// `bytes=a-b` or `bytes=a-`.
fn parse_range(header: &str) -> Option<(u64, Option<u64>)> {
    let (from, to) = header.trim().strip_prefix("bytes=")?.split_once('-')?;
    let from = from.trim().parse().ok()?;
    let to = match to.trim() {
        "" => None,
        to => Some(to.parse::<u64>().ok().filter(|to| *to >= from)?),
    };
    Some((from, to))
}
