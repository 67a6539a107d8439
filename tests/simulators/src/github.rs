//! A simulated GitHub organization's repositories and Dependabot alerts API on loopback.
//!
//! `GET /orgs/{org}/repos` lists every repository (`per_page` up to 100, numbered
//! `page`s, a `Link` header with `next`, `last`, `first` and `prev`), also those
//! without alerts.
//!
//! `GET /orgs/{org}/dependabot/alerts`, and `GET /repos/{owner}/{repo}/dependabot/alerts`
//! for one repository, with GitHub's behaviour: a bearer token,
//! `state` filtering (a comma-separated list), `sort=created|updated` with
//! `direction=asc|desc` (created, ascending by default), `per_page` up to 100,
//! opaque `after` cursors and a `Link`
//! header with `rel="next"` (and `rel="prev"`), JSON errors with a `message`, and
//! both of GitHub's rate-limit signals (403 with `x-ratelimit-remaining: 0`, and
//! 429 with `Retry-After`). The organization is generated deterministically from a
//! seed, so a test can compute what the connector must write.

// Handlers return early with a ready error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use crate::rng::derive;
use crate::serve::{bind, spawn, Background};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The size of a generated organization.
#[derive(Debug, Clone, Copy)]
pub struct OrgSpec {
    pub seed: u64,
    pub repositories: u64,
    pub alerts: u64,
}

/// One generated alert, with what the connector's output depends on.
#[derive(Debug, Clone)]
pub struct SimAlert {
    pub number: u64,
    pub repository: u64,
    pub advisory: u64,
    pub state: &'static str,
    pub withdrawn: bool,
    pub json: Value,
}

/// The generated organization.
#[derive(Debug, Clone)]
pub struct Org {
    pub name: String,
    pub token: String,
    /// Repositories `0..repositories`.
    pub repositories: u64,
    pub alerts: Vec<SimAlert>,
}

const ECOSYSTEMS: [(&str, &str, &str); 5] = [
    ("npm", "package-lock.json", "lodash"),
    ("pip", "requirements.txt", "django"),
    ("maven", "pom.xml", "jackson-databind"),
    ("rubygems", "Gemfile.lock", "nokogiri"),
    ("cargo", "Cargo.lock", "hyper"),
];
const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

impl Org {
    pub fn generate(spec: OrgSpec) -> Org {
        let alerts = (0..spec.alerts)
            .map(|i| {
                let r = |stream: &str| derive(spec.seed, stream, i);
                let repository = r("repository") % spec.repositories.max(1);
                let advisory = r("advisory") % 40;
                let state = match r("state") % 10 {
                    0 => "dismissed",
                    1 => "fixed",
                    _ => "open",
                };
                let withdrawn = advisory == 13;
                let json = alert_json(spec.seed, i + 1, repository, advisory, state, withdrawn);
                SimAlert { number: i + 1, repository, advisory, state, withdrawn, json }
            })
            .collect();
        Org {
            name: "octo-org".into(),
            token: format!("ghp_sim{:016x}", derive(spec.seed, "token", 0)),
            repositories: spec.repositories,
            alerts,
        }
    }

    /// Marks an alert fixed, as GitHub does when the dependency is upgraded: its
    /// `fixed_at` and `updated_at` are now.
    pub fn fix_alert(&mut self, number: u64) {
        self.close_alert(number, "fixed", "fixed_at");
    }

    /// Marks an alert dismissed by a person, now.
    pub fn dismiss_alert(&mut self, number: u64) {
        self.close_alert(number, "dismissed", "dismissed_at");
    }

    fn close_alert(&mut self, number: u64, state: &'static str, at_field: &str) {
        let now = now_text();
        let alert = self.alerts.iter_mut().find(|a| a.number == number).expect("an alert of this organization");
        alert.state = state;
        alert.json["state"] = json!(state);
        alert.json[at_field] = json!(now);
        alert.json["updated_at"] = json!(now);
    }

    /// A new open alert of `advisory` on `repository`, created and updated now;
    /// returns its number.
    pub fn open_alert(&mut self, seed: u64, repository: u64, advisory: u64) -> u64 {
        let number = self.alerts.iter().map(|a| a.number).max().unwrap_or(0) + 1;
        let mut json = alert_json(seed, number, repository, advisory, "open", false);
        json["created_at"] = json!(now_text());
        json["updated_at"] = json!(now_text());
        self.alerts.push(SimAlert { number, repository, advisory, state: "open", withdrawn: false, json });
        number
    }

    /// Full name of repository `r`.
    pub fn repository_name(&self, r: u64) -> String {
        format!("{}/repo-{r:04}", self.name)
    }
}

/// Now, as GitHub writes times.
fn now_text() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The GHSA id of generated advisory `a`.
pub fn ghsa(a: u64) -> String {
    let code = |n: u64| -> String {
        let alphabet = b"23456789cfghjmpqrvwx";
        (0..4).map(|k| alphabet[((n >> (k * 5)) % 20) as usize] as char).collect()
    };
    format!("GHSA-{}-{}-{}", code(a * 7 + 1), code(a * 11 + 2), code(a * 13 + 3))
}

/// The CVSS score of generated advisory `a` (none for every fifth).
pub fn cvss(a: u64) -> Option<f64> {
    (!a.is_multiple_of(5)).then_some(2.0 + (a % 8) as f64 + 0.3)
}

/// The severity of generated advisory `a`.
pub fn severity(a: u64) -> &'static str {
    SEVERITIES[(a % 4) as usize]
}

/// Repository `r` as GitHub lists it (the same `repository` object alerts carry,
/// and more).
pub fn repository_json(r: u64) -> Value {
    let full_name = format!("octo-org/repo-{r:04}");
    json!({
        "id": 500_000 + r,
        "node_id": format!("R_kgDO{r:06}"),
        "name": format!("repo-{r:04}"),
        "full_name": full_name,
        "private": !r.is_multiple_of(3),
        "owner": {"login": "octo-org", "type": "Organization"},
        "html_url": format!("https://github.com/{full_name}"),
        "archived": r % 7 == 6,
        "visibility": if r.is_multiple_of(3) { "public" } else { "private" },
        "default_branch": "main",
    })
}

fn alert_json(seed: u64, number: u64, repository: u64, advisory: u64, state: &str, withdrawn: bool) -> Value {
    let (ecosystem, manifest, package) = ECOSYSTEMS[(advisory % 5) as usize];
    let full_name = format!("octo-org/repo-{repository:04}");
    let directory = ["", "services/api/", "web/"][(derive(seed, "dir", number) % 3) as usize];
    let cve = (!advisory.is_multiple_of(3)).then(|| format!("CVE-20{}-{}", 18 + advisory % 7, 10_000 + advisory));
    let patched = (advisory % 6 != 5).then(|| format!("{}.{}.0", 2 + advisory % 3, advisory));
    let mut identifiers = vec![json!({"type": "GHSA", "value": ghsa(advisory)})];
    if let Some(cve) = &cve {
        identifiers.push(json!({"type": "CVE", "value": cve}));
    }
    let created = 1_650_000_000 + (number as i64) * 3_600;
    let timestamp = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "number": number,
        "state": state,
        "dependency": {"package": {"ecosystem": ecosystem, "name": package}, "manifest_path": format!("{directory}{manifest}"), "scope": "runtime"},
        "security_advisory": {
            "ghsa_id": ghsa(advisory),
            "cve_id": cve,
            "summary": format!("{package} advisory {advisory}"),
            "description": format!("Generated advisory {advisory} for {package}."),
            "severity": severity(advisory),
            "cvss": {"score": cvss(advisory), "vector_string": cvss(advisory).map(|_| "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")},
            "identifiers": identifiers,
            "references": [],
            "published_at": timestamp(1_600_000_000),
            "updated_at": timestamp(1_640_000_000),
            "withdrawn_at": withdrawn.then(|| timestamp(1_700_000_000)),
        },
        "security_vulnerability": {
            "package": {"ecosystem": ecosystem, "name": package},
            "severity": severity(advisory),
            "vulnerable_version_range": format!("< {}", patched.clone().unwrap_or_else(|| "99".into())),
            "first_patched_version": patched.map(|p| json!({"identifier": p})),
        },
        "url": format!("https://api.github.com/repos/{full_name}/dependabot/alerts/{number}"),
        "html_url": format!("https://github.com/{full_name}/security/dependabot/{number}"),
        "created_at": timestamp(created),
        "updated_at": timestamp(created + 86_400),
        "dismissed_at": null, "fixed_at": null, "auto_dismissed_at": null,
        "repository": {
            "id": 500_000 + repository,
            "name": format!("repo-{repository:04}"),
            "full_name": full_name,
            "private": !repository.is_multiple_of(3),
            "html_url": format!("https://github.com/{full_name}"),
        },
    })
}

/// Faults the simulated API injects, each once.
#[derive(Debug, Default)]
pub struct Faults {
    /// The next alerts call gets 403 with `x-ratelimit-remaining: 0` (reset in 1 s).
    pub primary_rate_limit_once: AtomicBool,
    /// The next alerts call gets 429 with `Retry-After: 1`.
    pub secondary_rate_limit_once: AtomicBool,
    /// The next alerts call gets 502.
    pub bad_gateway_once: AtomicBool,
    /// Every call gets 403 "Resource not accessible by personal access token".
    pub forbidden: AtomicBool,
}

struct Shared {
    org: Mutex<Org>,
    base_url: String,
    faults: Faults,
    calls: Mutex<BTreeMap<String, u64>>,
    total_calls: AtomicU64,
}

/// A running simulated GitHub; it stops when dropped.
pub struct GithubSim {
    shared: Arc<Shared>,
    _server: Background,
}

impl GithubSim {
    pub fn start(spec: OrgSpec) -> anyhow::Result<GithubSim> {
        let listener = bind()?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            org: Mutex::new(Org::generate(spec)),
            base_url,
            faults: Faults::default(),
            calls: Mutex::default(),
            total_calls: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/orgs/{org}/dependabot/alerts", get(alerts))
            .route("/repos/{owner}/{repo}/dependabot/alerts", get(repository_alerts))
            .route("/orgs/{org}/repos", get(repositories))
            .with_state(shared.clone());
        let server = spawn("github-sim", vec![(listener, app)])?;
        Ok(GithubSim { shared, _server: server })
    }

    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The organization as it is now.
    pub fn org(&self) -> Org {
        self.shared.org.lock().unwrap().clone()
    }

    /// Changes the organization between runs.
    pub fn update_org(&self, change: impl FnOnce(&mut Org)) {
        change(&mut self.shared.org.lock().unwrap());
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Calls answered, by outcome (`200`, `401`, `403 rate limit`...).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub fn total_calls(&self) -> u64 {
        self.shared.total_calls.load(Ordering::Relaxed)
    }

    /// A connector configuration (`[connector]` table) for this organization, with
    /// the Rust plugin's short retry delay.
    pub fn config_toml(&self) -> String {
        format!("{}retry_delay_ms = \"50\"\n", self.connection_toml())
    }

    /// The `[connector]` table any Dependabot plugin needs: organization, token and
    /// host, nothing plugin-specific.
    pub fn connection_toml(&self) -> String {
        let org = self.org();
        format!(
            "[connector]\norganization = \"{}\"\ntoken = \"{}\"\nhost = \"{}\"\n",
            org.name,
            org.token,
            self.base_url()
        )
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest/dependabot/alerts", "status": status.as_u16().to_string()});
    (status, axum::Json(body)).into_response()
}

async fn alerts(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    counted(&shared, "", || {
        admit(&shared, &org, &headers)?;
        once_faults(&shared)?;
        Ok(answer(&shared, &org, None, &query))
    })
}

/// One repository's alerts: the organization's, filtered, paged the same way.
async fn repository_alerts(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    counted(&shared, "repo ", || {
        admit(&shared, &owner, &headers)?;
        once_faults(&shared)?;
        Ok(answer(&shared, &owner, Some(&repo), &query))
    })
}

async fn repositories(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    counted(&shared, "repos ", || {
        admit(&shared, &org, &headers)?;
        Ok(list_repositories(&shared, &org, &query))
    })
}

/// Answers a call and counts it by outcome (`prefix` names the endpoint).
fn counted(
    shared: &Shared,
    prefix: &str,
    answer: impl FnOnce() -> Result<(String, Response), (String, Response)>,
) -> Response {
    shared.total_calls.fetch_add(1, Ordering::Relaxed);
    let (outcome, response) = answer().unwrap_or_else(|refused| refused);
    *shared.calls.lock().unwrap().entry(format!("{prefix}{outcome}")).or_default() += 1;
    response
}

/// `GET /orgs/{org}/repos`: numbered pages, as GitHub pages this list.
fn list_repositories(shared: &Shared, org: &str, query: &HashMap<String, String>) -> (String, Response) {
    let number = |key: &str, default: u64| query.get(key).map_or(Ok(default), |v| v.parse::<u64>());
    let (Ok(per_page @ 1..=100), Ok(page @ 1..)) = (number("per_page", 30), number("page", 1)) else {
        return ("422".into(), error(StatusCode::UNPROCESSABLE_ENTITY, "per_page must be 1 to 100, page from 1"));
    };
    let total = shared.org.lock().unwrap().repositories;
    let start = (page - 1) * per_page;
    let list: Vec<Value> = (start..(start + per_page).min(total)).map(repository_json).collect();
    let mut response = axum::Json(list).into_response();
    let last = total.div_ceil(per_page).max(1);
    let link = |p: u64, rel: &str| {
        let mut params: Vec<String> =
            query.iter().filter(|(k, _)| *k != "page").map(|(k, v)| format!("{k}={v}")).collect();
        params.sort();
        params.push(format!("page={p}"));
        format!("<{}/orgs/{org}/repos?{}>; rel=\"{rel}\"", shared.base_url, params.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    if !links.is_empty() {
        response.headers_mut().insert("link", links.join(", ").parse().unwrap());
    }
    ("200".into(), response)
}

/// What every call checks first: the token, a User-Agent, the organization, and
/// the faults switched on.
fn admit(shared: &Shared, org: &str, headers: &HeaderMap) -> Result<(), (String, Response)> {
    let f = &shared.faults;
    let (name, token) = {
        let org = shared.org.lock().unwrap();
        (org.name.clone(), org.token.clone())
    };
    let expected = format!("Bearer {token}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(("401".into(), error(StatusCode::UNAUTHORIZED, "Bad credentials")));
    }
    if headers.get("user-agent").is_none() {
        return Err((
            "403 no user agent".into(),
            error(
                StatusCode::FORBIDDEN,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            ),
        ));
    }
    if f.forbidden.load(Ordering::Relaxed) {
        return Err(("403".into(), error(StatusCode::FORBIDDEN, "Resource not accessible by personal access token")));
    }
    if !org.eq_ignore_ascii_case(&name) {
        return Err(("404".into(), error(StatusCode::NOT_FOUND, "Not Found")));
    }
    Ok(())
}

/// The faults switched on for the next alerts call, each once.
fn once_faults(shared: &Shared) -> Result<(), (String, Response)> {
    let f = &shared.faults;
    if f.primary_rate_limit_once.swap(false, Ordering::Relaxed) {
        let reset = chrono::Utc::now().timestamp() + 1;
        let mut response = error(StatusCode::FORBIDDEN, "API rate limit exceeded for user ID 1.");
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", "5000".parse().unwrap());
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        return Err(("403 rate limit".into(), response));
    }
    if f.secondary_rate_limit_once.swap(false, Ordering::Relaxed) {
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "You have exceeded a secondary rate limit.");
        response.headers_mut().insert("retry-after", "1".parse().unwrap());
        return Err(("429".into(), response));
    }
    if f.bad_gateway_once.swap(false, Ordering::Relaxed) {
        return Err(("502".into(), (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response()));
    }
    Ok(())
}

fn answer(shared: &Shared, org: &str, repo: Option<&str>, query: &HashMap<String, String>) -> (String, Response) {
    if query.contains_key("page") {
        return (
            "422".into(),
            error(StatusCode::UNPROCESSABLE_ENTITY, "Pagination using the `page` parameter is not supported."),
        );
    }
    let per_page: usize = match query.get("per_page").map(|p| p.parse::<usize>()) {
        None => 30,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return ("422".into(), error(StatusCode::UNPROCESSABLE_ENTITY, "per_page must be between 1 and 100"))
        }
    };
    let start = match query.get("after").map(|c| cursor_index(c)) {
        None => 0,
        Some(Some(i)) => i,
        Some(None) => return ("422".into(), error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid cursor")),
    };
    let states: Vec<&str> = query.get("state").map(|s| s.split(',').collect()).unwrap_or_default();
    let org_now = shared.org.lock().unwrap();
    let full_name = repo.map(|r| format!("{org}/{r}"));
    let mut matching: Vec<&SimAlert> = org_now
        .alerts
        .iter()
        .filter(|a| states.is_empty() || states.contains(&a.state))
        .filter(|a| full_name.as_deref().is_none_or(|n| a.json["repository"]["full_name"] == n))
        .collect();
    let sort = query.get("sort").map(String::as_str).unwrap_or("created");
    let time = |a: &SimAlert, field: &str| a.json[field].as_str().unwrap_or_default().to_owned();
    match sort {
        "created" => matching.sort_by_key(|a| (time(a, "created_at"), a.number)),
        "updated" => matching.sort_by_key(|a| (time(a, "updated_at"), a.number)),
        _ => return ("422".into(), error(StatusCode::UNPROCESSABLE_ENTITY, "sort must be created or updated")),
    }
    if query.get("direction").is_some_and(|d| d == "desc") {
        matching.reverse();
    }
    let end = (start + per_page).min(matching.len());
    let page: Vec<&Value> = matching.get(start..end).unwrap_or(&[]).iter().map(|a| &a.json).collect();
    let mut response = axum::Json(page).into_response();
    let link = |index: usize, rel: &str| {
        let mut params: Vec<String> =
            query.iter().filter(|(k, _)| *k != "after").map(|(k, v)| format!("{k}={v}")).collect();
        params.sort();
        params.push(format!("after={}", cursor(index)));
        let path = match repo {
            Some(repo) => format!("repos/{org}/{repo}"),
            None => format!("orgs/{org}"),
        };
        format!("<{}/{path}/dependabot/alerts?{}>; rel=\"{rel}\"", shared.base_url, params.join("&"))
    };
    let mut links = Vec::new();
    if start > 0 {
        links.push(link(start.saturating_sub(per_page), "prev"));
    }
    if end < matching.len() {
        links.push(link(end, "next"));
    }
    if !links.is_empty() {
        response.headers_mut().insert("link", links.join(", ").parse().unwrap());
    }
    ("200".into(), response)
}

/// GitHub's cursors are opaque; these encode an index.
fn cursor(index: usize) -> String {
    format!("Y3Vyc29yOnYyOpK{index:x}")
}

fn cursor_index(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix("Y3Vyc29yOnYyOpK")?, 16).ok()
}
