//! Outbound HTTP through the host's `http` capability.
//!
//! Requests reach only the origins the operator allowed (the plugin's host fields,
//! the origins it declared, and the operator's `[network]` table); anything else is
//! refused with [`HttpError::Denied`]. Secret settings are placeholders: put them in
//! a header, the URL or the body as they are, and the host substitutes the real value
//! on the way out. Responses are buffered and capped by the host.
//!
//! ```no_run
//! use connector_sdk::http::Request;
//! # fn page(base: &str, token: &str) -> Result<(), connector_sdk::types::PluginError> {
//! let response = Request::get(&format!("{base}/v1/items?limit=100"))
//!     .bearer(token)
//!     .header("Accept", "application/json")
//!     .send_or_error()?;
//! let items: Vec<serde_json::Value> = response.json()?;
//! let next = response.next_link();
//! # Ok(()) }
//! ```

use crate::bindings::vulnbridge::connector::http as wit;
use crate::types::PluginError;
use std::time::Duration;

pub use wit::{HttpError, Method, Response};

/// The timeout the SDK asks for when a request sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl Request {
    pub fn new(method: Method, url: &str) -> Self {
        Request { method, url: url.to_owned(), headers: Vec::new(), body: None, timeout: DEFAULT_TIMEOUT }
    }

    pub fn get(url: &str) -> Self {
        Request::new(Method::Get, url)
    }

    pub fn post(url: &str) -> Self {
        Request::new(Method::Post, url)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `Authorization: Bearer <token>`; the token may be a secret placeholder.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let body = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        self.body = Some(body.into_bytes());
        self.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// A JSON body.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self.header("Content-Type", "application/json")
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request; any status is a response.
    pub fn send(self) -> Result<Response, HttpError> {
        let timeout_ms = u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX);
        let request = wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: Some(timeout_ms),
        };
        sys::send(&request)
    }

    /// Sends the request, turning capability failures into plugin errors that name
    /// the host: connection failures and timeouts are `Unreachable` (worth a retry),
    /// a refusal by the host is not.
    pub fn send_or_error(self) -> Result<Response, PluginError> {
        let (url, timeout) = (self.url.clone(), self.timeout);
        self.send().map_err(|e| plugin_error(&url, timeout, e))
    }
}

/// A capability failure as a plugin error naming the host it concerned.
pub fn plugin_error(url: &str, timeout: Duration, error: HttpError) -> PluginError {
    let host = host_of(url);
    match error {
        HttpError::Transport(m) => PluginError::Unreachable(format!("cannot reach {host}: {m}")),
        HttpError::Timeout(m) => {
            PluginError::Unreachable(format!("no complete answer from {host} within {} s: {m}", timeout.as_secs()))
        }
        HttpError::Denied(m) => PluginError::Other(format!("the host refused the request to {host}: {m}")),
        HttpError::TooLarge(cap) => {
            PluginError::BadResponse(format!("the response from {host} exceeded the host's cap of {cap} bytes"))
        }
        HttpError::InvalidRequest(m) => PluginError::Other(format!("invalid request to {host}: {m}")),
    }
}

impl Response {
    /// A header by case-insensitive name (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, or a `BadResponse` error quoting the start of the body.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::BadResponse(format!(
                "unreadable JSON ({e}) in a {} response: {}",
                self.status,
                excerpt(&self.body)
            ))
        })
    }

    /// The `rel="next"` target of an RFC 8288 `Link` header (GitHub, GitLab and
    /// others page this way), if any.
    pub fn next_link(&self) -> Option<String> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("link")).find_map(|(_, v)| next_link(v))
    }

    /// `Retry-After` in seconds, when given as seconds.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
    }
}

/// The `rel="next"` target in a `Link` header value.
pub fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|rel| rel.trim_matches('"').split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
                .unwrap_or(false)
        });
        is_next.then(|| target.to_owned())
    })
}

/// The host and port of a URL, for messages.
pub fn host_of(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[after_scheme..].find(['/', '?', '#']).map(|i| after_scheme + i).unwrap_or(url.len());
    &url[after_scheme..end]
}

/// Whether two URLs share scheme, host and port (a next link must not lead a
/// token elsewhere).
pub fn same_origin(a: &str, b: &str) -> bool {
    let origin = |u: &str| {
        let scheme = u.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        (scheme, host_of(u).to_ascii_lowercase())
    };
    origin(a) == origin(b)
}

/// A short, single-line excerpt of a body for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Percent-encoding for URL query values and form bodies (RFC 3986 unreserved kept).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(target_arch = "wasm32")]
mod sys {
    pub fn send(request: &super::wit::Request) -> Result<super::Response, super::HttpError> {
        super::wit::send(request)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    /// Natively (unit tests) there is no host to send through.
    pub fn send(request: &super::wit::Request) -> Result<super::Response, super::HttpError> {
        Err(super::HttpError::Denied(format!(
            "{}: no host in a native build (unit tests cannot reach the network)",
            request.url
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found_among_other_relations() {
        let v = r#"<https://api.github.com/orgs/o/dependabot/alerts?after=Y3Vy&per_page=2>; rel="next", <https://api.github.com/orgs/o/dependabot/alerts?before=X&per_page=2>; rel="prev""#;
        assert_eq!(next_link(v).unwrap(), "https://api.github.com/orgs/o/dependabot/alerts?after=Y3Vy&per_page=2");
        assert_eq!(next_link(r#"<https://x/a?page=1>; rel="first""#), None);
        assert_eq!(next_link("<https://x/b>; rel=\"last next\"").unwrap(), "https://x/b");
    }

    #[test]
    fn host_of_strips_scheme_and_path() {
        assert_eq!(host_of("https://api.x.com/api/machines?$top=1"), "api.x.com");
        assert_eq!(host_of("http://127.0.0.1:8080"), "127.0.0.1:8080");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(same_origin("https://api.x.com/a?b", "HTTPS://API.x.com/c"));
        assert!(!same_origin("https://api.x.com/a", "https://evil.com/a"));
        assert!(!same_origin("https://api.x.com/a", "http://api.x.com/a"));
        assert!(!same_origin("http://127.0.0.1:1/a", "http://127.0.0.1:2/a"));
    }

    #[test]
    fn forms_are_encoded_and_native_sends_refuse() {
        let r = Request::post("https://x/token").form(&[("a b", "c&d=é")]);
        assert_eq!(r.body.as_deref(), Some("a%20b=c%26d%3D%C3%A9".as_bytes()));
        let error = Request::get("https://x/").send().unwrap_err();
        assert!(matches!(error, HttpError::Denied(ref m) if m.contains("native build")), "{error:?}");
    }
}

/// Retrying transient failures: connection errors, timeouts, 408, 429 and 5xx, with
/// exponential backoff (doubling from `first_delay`, at most `max_delay`) and
/// `Retry-After` honoured when it asks for at most `max_delay`.
#[derive(Debug, Clone)]
pub struct Retry {
    pub max_retries: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { max_retries: 5, first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(60) }
    }
}

impl Retry {
    /// Sends `request` until it gets a response that is not transient, or the retries
    /// run out. `throttled` lets a source add its own signals (e.g. GitHub's 403 with
    /// `x-ratelimit-remaining: 0`): it returns how long to wait, if the response is one.
    pub fn send(
        &self,
        request: Request,
        throttled: impl Fn(&Response) -> Option<Duration>,
    ) -> Result<Response, PluginError> {
        let mut attempt = 0u32;
        loop {
            let result = request.clone().send_or_error();
            let wait = match &result {
                Err(PluginError::Unreachable(_)) => Some(self.backoff(attempt)),
                Ok(r) => throttled(r).or_else(|| match r.status {
                    429 => Some(r.retry_after().unwrap_or_else(|| self.backoff(attempt))),
                    408 | 500..=599 => Some(self.backoff(attempt)),
                    _ => None,
                }),
                Err(_) => None,
            };
            let Some(wait) = wait else { return result };
            let host = host_of(request.url());
            if wait > self.max_delay {
                return Err(PluginError::Throttled(format!(
                    "{host} asks to wait {} s, longer than the {} s allowed; run again later",
                    wait.as_secs(),
                    self.max_delay.as_secs()
                )));
            }
            if attempt >= self.max_retries {
                return match result {
                    Ok(r) if r.status == 429 || throttled(&r).is_some() => Err(PluginError::Throttled(format!(
                        "{host} throttled {} attempt(s) in a row (HTTP {})",
                        attempt + 1,
                        r.status
                    ))),
                    Ok(r) => Err(PluginError::BadResponse(format!(
                        "{host} answered HTTP {} {} time(s) in a row: {}",
                        r.status,
                        attempt + 1,
                        excerpt(&r.body)
                    ))),
                    Err(PluginError::Unreachable(m)) => {
                        Err(PluginError::Unreachable(format!("{m} (after {} attempts)", attempt + 1)))
                    }
                    other => other,
                };
            }
            attempt += 1;
            let why = match &result {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => format!("{e:?}"),
            };
            crate::warn!("{host}: {why}; retry {attempt} of {} in {:.1} s", self.max_retries, wait.as_secs_f64());
            crate::output::count(RETRIES, 1);
            std::thread::sleep(wait);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.first_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay)
    }
}

/// The counter [`Retry`] adds to for every retry.
pub const RETRIES: &str = "requests retried";
