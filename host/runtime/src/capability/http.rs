//! The `http` import: requests sent by the host on the plugin's behalf, through the
//! run's network policy, with a timeout and a response-size cap on every call.
//! Secret placeholders are replaced by their values only here, after the
//! destination was allowed; responses have echoed secrets masked.

use super::wire::{self, Refusal};
use crate::bindings::http::{Host, HttpError, Request, Response};
use crate::limits::LimitExceeded;
use crate::limits::{thread_cpu_time, SandboxLimits};
use crate::plugin_state::PluginState;
use crate::policy::{NetworkPolicy, NonPublicAddress};
use crate::redact::Redactor;
use crate::secrets::Secrets;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits on each call.
#[derive(Clone, Debug)]
pub(crate) struct HttpLimits {
    /// Used when the plugin gives no timeout.
    pub(crate) default_timeout: Duration,
    /// The longest timeout a plugin may ask for.
    pub(crate) max_timeout: Duration,
    /// The largest response body accepted.
    pub(crate) max_response_bytes: u64,
}

impl HttpLimits {
    pub(crate) fn from_sandbox(limits: &SandboxLimits) -> Self {
        HttpLimits {
            // A 50,000-row vulnerability page is about 50 MB: give it time.
            default_timeout: Duration::from_secs(300).min(limits.http_timeout),
            max_timeout: limits.http_timeout,
            max_response_bytes: limits.response_bytes,
        }
    }
}

/// Counts for the run summary.
#[derive(Default, Debug)]
pub(crate) struct HttpStats {
    pub(crate) calls: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) denied: AtomicU64,
}

/// The HTTP capability of one plugin instance.
pub(crate) struct HttpCapability {
    client: reqwest::blocking::Client,
    policy: NetworkPolicy,
    limits: HttpLimits,
    pub(crate) stats: Arc<HttpStats>,
    plugin_id: String,
    redactor: Arc<Redactor>,
    pub(crate) secrets: Secrets,
}

/// The session's client: redirects are never followed (each hop must be a request
/// the plugin makes, checked again), and DNS answers go through the policy's
/// address rules.
fn client(policy: &NetworkPolicy) -> anyhow::Result<reqwest::blocking::Client> {
    let builder = reqwest::blocking::Client::builder();
    // No proxy from the environment (HTTPS_PROXY, ALL_PROXY): a proxy resolves names
    // itself, past the address checks after DNS. Only the operator's explicit
    // `[network] proxy` is used (origins are still checked; addresses then are the
    // proxy's to check).
    let builder = match policy.proxy() {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy)?),
        None => builder.no_proxy(),
    };
    Ok(builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(20))
        .dns_resolver(Arc::new(policy.resolver()))
        .user_agent(concat!("connector-host/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl HttpCapability {
    pub(crate) fn new(
        policy: NetworkPolicy,
        limits: &SandboxLimits,
        plugin_id: String,
        redactor: Arc<Redactor>,
        secrets: Secrets,
    ) -> anyhow::Result<Self> {
        Ok(HttpCapability {
            client: client(&policy)?,
            policy,
            limits: HttpLimits::from_sandbox(limits),
            stats: Arc::default(),
            plugin_id,
            redactor,
            secrets,
        })
    }

    /// Allows an origin a contract 0.2 plugin derived at `configure` (the client's
    /// resolver depends only on the address rules, so the client stays as it is).
    pub(crate) fn allow_derived(&mut self, origin: &str) -> anyhow::Result<()> {
        self.policy.allow(origin)
    }

    /// Narrows the declared origins to those the plugin's `configure` says it uses.
    pub(crate) fn narrow(&mut self, origins: &[String]) -> anyhow::Result<()> {
        self.policy.narrow(origins)
    }

    /// The origins this instance may reach, for the operator to review.
    pub(crate) fn effective_egress(&self) -> Vec<String> {
        self.policy.effective()
    }

    /// Sends one request, or says why not, as a value.
    pub(crate) fn send(&self, request: Request) -> Result<Response, HttpError> {
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)).min(self.limits.max_timeout))
            .unwrap_or(self.limits.default_timeout);
        let shown_url = self.redactor.redact(&wire::shown(&request.url));
        // One form, checked and sent: see `wire`.
        let outgoing = match wire::prepare(request, &self.policy, &self.secrets) {
            Ok(outgoing) => outgoing,
            Err(Refusal::Invalid(why)) => return Err(HttpError::InvalidRequest(self.redactor.redact(&why))),
            Err(Refusal::Denied(why)) => {
                self.stats.denied.fetch_add(1, Ordering::Relaxed);
                let why = self.redactor.redact(&why);
                tracing::warn!(plugin = %self.plugin_id, "denied a request: {why}");
                return Err(HttpError::Denied(why));
            }
        };
        for name in &outgoing.dropped {
            tracing::debug!(plugin = %self.plugin_id, "dropped the plugin's `{}` header", wire::shown(name));
        }
        let url = outgoing.url;
        let mut builder = self.client.request(outgoing.method.clone(), url.clone()).timeout(timeout);
        for (name, value) in outgoing.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = outgoing.body {
            builder = builder.body(body);
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        // The URL may carry a secret now: log the one the plugin wrote, masked too.
        tracing::debug!(plugin = %self.plugin_id, "{} {shown_url}", outgoing.method);
        let mut response = builder.send().map_err(|e| self.transport_error(&url, e))?;
        let status = response.status().as_u16();
        if status == 429 {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        }
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(&self.secrets.mask(v.as_bytes().to_vec())).into_owned();
                (k.as_str().to_owned(), value)
            })
            .collect();
        let cap = self.limits.max_response_bytes;
        if response.content_length().is_some_and(|len| len > cap) {
            return Err(HttpError::TooLarge(cap));
        }
        // Sized from Content-Length when given: no regrowing copies of a large page.
        let mut body = body_buffer(response.content_length().unwrap_or(0).min(cap) as usize);
        (&mut response).take(cap + 1).read_to_end(&mut body).map_err(|e| self.read_error(&url, e))?;
        if body.len() as u64 > cap {
            return Err(HttpError::TooLarge(cap));
        }
        Ok(Response { status, headers, body: self.secrets.mask(body) })
    }

    fn transport_error(&self, url: &url::Url, e: reqwest::Error) -> HttpError {
        // reqwest's error repeats the URL, which may carry a secret now: leave it out.
        let e = e.without_url();
        let text = self.redactor.redact(&error_chain(&e));
        if let Some(refused) = find_cause::<NonPublicAddress>(&e) {
            self.stats.denied.fetch_add(1, Ordering::Relaxed);
            // The addresses go to the host's log; the plugin hears only "not public".
            tracing::warn!(plugin = %self.plugin_id, "denied a request: {}", refused.detail());
            return HttpError::Denied(refused.to_string());
        }
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

fn find_cause<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// An error and its sources on one line (reqwest's top-level text is often vague).
pub fn error_chain(e: &dyn std::error::Error) -> String {
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
    fn send(&mut self, mut request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        // A session with a time limit never waits on the network past it.
        if let Some((deadline, limit)) = self.deadline {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                let breach = LimitExceeded {
                    limit: format!("run time limit of {} s", limit.as_secs_f64()),
                    detail: "spent before an HTTP request".into(),
                };
                return Err(self.exceed(breach));
            }
            let left_ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
            request.timeout_ms = Some(request.timeout_ms.map_or(left_ms, |ms| ms.min(left_ms)));
        }
        // Time blocked on the network is not the plugin's CPU time, but the host's
        // work here (TLS, copying, masking) runs on this thread: exclude it.
        let started = thread_cpu_time();
        let result = self.http.send(request);
        self.cpu.add_host_time(thread_cpu_time().saturating_sub(started));
        Ok(result)
    }
}

/// A buffer for a response body of `capacity` bytes. A page of tens of megabytes is
/// a fresh mapping each time (glibc maps blocks that large on their own), faulted in
/// 4 KiB at a time: about 10,000 page faults a 40 MB page, three quarters of a run's.
/// Asking for transparent huge pages makes that a few dozen where the system allows
/// them (`madvise` mode, the usual default); elsewhere the advice changes nothing.
fn body_buffer(capacity: usize) -> Vec<u8> {
    let buffer = Vec::with_capacity(capacity);
    #[cfg(target_os = "linux")]
    if capacity >= 4 << 20 {
        const HUGE: usize = 2 << 20;
        let start = buffer.as_ptr() as usize;
        let (first, end) = (start.next_multiple_of(HUGE), start + capacity);
        if end > first {
            // SAFETY: advice on whole pages inside the buffer just allocated; it
            // changes how they are backed, never their contents.
            unsafe { libc::madvise(first as *mut libc::c_void, (end - first) / HUGE * HUGE, libc::MADV_HUGEPAGE) };
        }
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::SandboxLimits;

    fn capability(allow_insecure_loopback: bool) -> HttpCapability {
        let policy =
            NetworkPolicy::from_host_fields([("host", "https://localhost:9")], allow_insecure_loopback).unwrap();
        HttpCapability::new(policy, &SandboxLimits::default(), "test".into(), Arc::default(), Secrets::default())
            .unwrap()
    }

    use crate::bindings::http::Method;

    fn get(url: &str) -> Request {
        Request { method: Method::Get, url: url.into(), headers: vec![], body: None, timeout_ms: Some(2_000) }
    }

    #[test]
    fn a_name_that_resolves_to_a_non_public_address_is_refused_after_dns() {
        // `localhost` passes the origin check (it is granted) but resolves to loopback:
        // refused before any connection. The plugin hears that the name is not public,
        // not what it resolved to (internal addresses are the operator's to see).
        match capability(false).send(get("https://localhost:9/x")) {
            Err(HttpError::Denied(why)) => {
                assert!(why.contains("localhost resolves only to non-public addresses"), "{why}");
                assert!(why.contains("allow_private_ips"), "{why}");
                assert!(!why.contains("127.0.0.1") && !why.contains("::1"), "no address told: {why}");
            }
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn redirects_are_returned_to_the_plugin_not_followed() {
        use std::io::{Read, Write};
        // A one-shot server that redirects to a host the run does not allow.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 2048];
            let _ = stream.read(&mut request).unwrap();
            stream
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: https://evil.example/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
        });
        let policy = NetworkPolicy::from_host_fields([("host", &*format!("http://127.0.0.1:{port}"))], true).unwrap();
        let http =
            HttpCapability::new(policy, &SandboxLimits::default(), "test".into(), Arc::default(), Secrets::default())
                .unwrap();
        let response = http.send(get(&format!("http://127.0.0.1:{port}/start"))).unwrap();
        server.join().unwrap();
        assert_eq!(response.status, 302);
        let location = response.headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.as_str());
        assert_eq!(location, Some("https://evil.example/steal"));
        assert_eq!(http.stats.calls.load(Ordering::Relaxed), 1, "the redirect was not followed");
    }

    #[test]
    fn requests_outside_the_policy_never_leave_the_host() {
        let denied = capability(false).send(get("https://example.com/x"));
        assert!(
            matches!(denied, Err(HttpError::Denied(ref why)) if why.contains("not allowed for this run")),
            "{denied:?}"
        );
        let insecure = capability(false).send(get("http://localhost:9/x"));
        assert!(
            matches!(insecure, Err(HttpError::Denied(ref why)) if why.contains("--allow-insecure-loopback")),
            "{insecure:?}"
        );
    }
}
