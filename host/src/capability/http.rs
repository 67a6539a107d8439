//! The `http` import: requests sent by the host on the plugin's behalf, through the
//! run's network policy, with a timeout and a response-size cap on every call.

use crate::bindings::http::{Host, HttpError, Method, Request, Response};
use crate::policy::NetworkPolicy;
use crate::redact::Redactor;
use crate::state::PluginState;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits on each call.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Used when the plugin gives no timeout.
    pub default_timeout: Duration,
    /// The longest timeout a plugin may ask for.
    pub max_timeout: Duration,
    /// The largest response body accepted.
    pub max_response_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            // A 50,000-row vulnerability page is about 50 MB: give it time.
            default_timeout: Duration::from_secs(300),
            max_timeout: Duration::from_secs(900),
            max_response_bytes: 512 << 20,
        }
    }
}

/// Counts for the run summary.
#[derive(Default, Debug)]
pub struct HttpStats {
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    pub denied: AtomicU64,
}

/// The HTTP capability of one plugin instance.
pub struct HttpCapability {
    client: reqwest::blocking::Client,
    policy: NetworkPolicy,
    limits: HttpLimits,
    pub stats: Arc<HttpStats>,
    plugin_id: String,
    redactor: Arc<Redactor>,
}

/// The shared client: connection pools are reused across runs, redirects are
/// never followed (each hop must be a request the plugin makes, checked again).
pub fn shared_client() -> anyhow::Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(20))
        .user_agent(concat!("connector-host/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl HttpCapability {
    pub fn new(
        client: reqwest::blocking::Client,
        policy: NetworkPolicy,
        limits: HttpLimits,
        plugin_id: String,
        redactor: Arc<Redactor>,
    ) -> Self {
        HttpCapability { client, policy, limits, stats: Arc::default(), plugin_id, redactor }
    }

    /// Allows an origin the plugin declared at `configure`, under the policy's rules.
    pub fn allow_declared(&mut self, origin: &str) -> anyhow::Result<()> {
        self.policy.allow(origin)
    }

    /// Sends one request, or says why not, as a value.
    pub fn send(&self, request: Request) -> Result<Response, HttpError> {
        let url = url::Url::parse(&request.url).map_err(|e| {
            HttpError::InvalidRequest(format!("`{}` is not a URL: {e}", self.redactor.redact(&request.url)))
        })?;
        if let Err(why) = self.policy.check(&url) {
            self.stats.denied.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(plugin = %self.plugin_id, "denied a request: {why}");
            return Err(HttpError::Denied(why));
        }
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)).min(self.limits.max_timeout))
            .unwrap_or(self.limits.default_timeout);
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
        };
        let mut builder = self.client.request(method.clone(), url.clone()).timeout(timeout);
        for (name, value) in &request.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::InvalidRequest(format!("invalid header name `{name}`")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| HttpError::InvalidRequest(format!("invalid value for header `{name}`")))?;
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        // Paths and queries carry no secrets here, but mask them anyway: a plugin
        // could put anything in a URL.
        tracing::debug!(plugin = %self.plugin_id, "{method} {}", self.redactor.redact(url.as_str()));
        let mut response = builder.send().map_err(|e| self.transport_error(&url, e))?;
        let status = response.status().as_u16();
        if status == 429 {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        }
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let cap = self.limits.max_response_bytes;
        if response.content_length().is_some_and(|len| len > cap) {
            return Err(HttpError::TooLarge(cap));
        }
        let mut body = Vec::new();
        (&mut response).take(cap + 1).read_to_end(&mut body).map_err(|e| self.read_error(&url, e))?;
        if body.len() as u64 > cap {
            return Err(HttpError::TooLarge(cap));
        }
        Ok(Response { status, headers, body })
    }

    fn transport_error(&self, url: &url::Url, e: reqwest::Error) -> HttpError {
        let text = self.redactor.redact(&error_chain(&e));
        if e.is_timeout() {
            HttpError::Timeout(text)
        } else {
            HttpError::Transport(format!("{}: {text}", url.host_str().unwrap_or("?")))
        }
    }

    fn read_error(&self, url: &url::Url, e: std::io::Error) -> HttpError {
        let text = self.redactor.redact(&error_chain(&e));
        let timed_out = e.kind() == std::io::ErrorKind::TimedOut
            || e.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()).is_some_and(|r| r.is_timeout());
        if timed_out {
            HttpError::Timeout(text)
        } else {
            HttpError::Transport(format!("reading the response from {}: {text}", url.host_str().unwrap_or("?")))
        }
    }
}

/// An error and its sources on one line (reqwest's top-level text is often vague).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

impl Host for PluginState {
    fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        Ok(self.http.send(request))
    }
}
