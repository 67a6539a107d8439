//! Calls to Defender and Azure AD that behave like a seasoned integrator's:
//!
//! - paced per endpoint below the documented limits ([`crate::pacing`]);
//! - connection errors, timeouts, 408 and 5xx retried with exponential backoff and
//!   jitter, a bounded number of times, then a clear error;
//! - 429 waits as `Retry-After` says (seconds or an HTTP date), then retries;
//! - 401 gets a new token once; a second 401 is an error; tokens are renewed before
//!   they expire;
//! - 403 is never retried: the error names the missing permission.
//!
//! `verify` uses an impatient policy: no waiting, so an administrator hears at once
//! that a host is unreachable or throttling.

use crate::auth::{self, Token};
use crate::net;
use crate::settings::Settings;
use connector_sdk::http::{Method, Response};
use connector_sdk::log::{log, Level};
use connector_sdk::output;
use connector_sdk::types::PluginError;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// The longest single backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest single wait on `Retry-After`; longer asks end the run.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Counter names shown in the run summary.
pub const RETRIES: &str = "requests retried";
pub const PACING_SECONDS: &str = "seconds waited to respect rate limits";

/// One call: where, how long, and what to do with failures.
pub struct Call<'a> {
    pub method: Method,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// The pacing endpoint (`machines`, `vulnerabilities`, `export`), if paced.
    pub pace: Option<&'static str>,
    pub timeout: Duration,
}

/// The Defender API client of one connector instance.
pub struct Client {
    pub settings: Settings,
    token: Option<Token>,
    /// Whether to wait and retry (runs) or fail at once (verify).
    pub patient: bool,
}

impl Client {
    pub fn new(settings: Settings) -> Self {
        Client { settings, token: None, patient: true }
    }

    /// A valid token, requested when there is none or it is about to expire.
    pub fn token(&mut self) -> Result<&str, PluginError> {
        if !self.token.as_ref().is_some_and(Token::is_fresh) {
            let token = auth::request_token(self)?;
            self.token = Some(token);
        }
        Ok(&self.token.as_ref().expect("just set").value)
    }

    /// Keeps a token obtained elsewhere (verify asks for its own).
    pub fn set_token(&mut self, token: Token) {
        self.token = Some(token);
    }

    /// Sends a call, pacing it and retrying transient failures. Returns any response
    /// that is not a transient failure (the caller judges 2xx, 401, 403, 404...).
    pub fn send(&mut self, call: Call) -> Result<Response, PluginError> {
        let mut attempt = 0;
        loop {
            if let Some(endpoint) = call.pace {
                let waited = self.settings.pacer.wait(endpoint);
                if waited >= Duration::from_secs(1) {
                    output::count(PACING_SECONDS, waited.as_secs());
                }
            }
            let result = net::send(call.method, call.url, call.headers.clone(), call.body.clone(), call.timeout);
            if let Some(endpoint) = call.pace {
                self.settings.pacer.record(endpoint, std::time::Instant::now());
            }
            let retry_in = match &result {
                Err(PluginError::Unreachable(_)) => self.backoff(attempt),
                Ok(r) if r.status == 429 => match retry_after(r) {
                    Some(wait) if wait > MAX_RETRY_AFTER => {
                        return Err(PluginError::Throttled(format!(
                            "{} asks to wait {} s (Retry-After), longer than the {} s the connector waits",
                            endpoint(call.url),
                            wait.as_secs(),
                            MAX_RETRY_AFTER.as_secs()
                        )))
                    }
                    Some(wait) => wait,
                    None => self.backoff(attempt),
                },
                Ok(r) if r.status == 408 || (500..=599).contains(&r.status) => self.backoff(attempt),
                _ => return result,
            };
            if !self.patient || attempt >= self.settings.max_retries {
                return match result {
                    Ok(r) if r.status == 429 => Err(PluginError::Throttled(format!(
                        "{} answered 429 (too many requests){}",
                        endpoint(call.url),
                        if self.patient { format!(" {} times in a row", attempt + 1) } else { String::new() }
                    ))),
                    Ok(r) => Err(PluginError::BadResponse(format!(
                        "{} answered HTTP {} {} time(s) in a row ({})",
                        endpoint(call.url),
                        r.status,
                        attempt + 1,
                        api_message(&r)
                    ))),
                    Err(PluginError::Unreachable(m)) if self.patient => {
                        Err(PluginError::Unreachable(format!("{m} (after {} attempts)", attempt + 1)))
                    }
                    other => other,
                };
            }
            attempt += 1;
            let why = match &result {
                Ok(r) => format!("HTTP {}", r.status),
                Err(PluginError::Unreachable(m)) => m.clone(),
                Err(_) => "an error".into(),
            };
            log(
                Level::Warn,
                &format!(
                    "{}: {why}; retry {attempt} of {} in {:.1} s",
                    endpoint(call.url),
                    self.settings.max_retries,
                    retry_in.as_secs_f64()
                ),
            );
            output::count(RETRIES, 1);
            std::thread::sleep(retry_in);
        }
    }

    /// Exponential backoff with jitter: between half and all of
    /// `retry_delay x 2^attempt`, at most a minute.
    fn backoff(&self, attempt: u32) -> Duration {
        let full = self.settings.retry_delay.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
        let jitter = (random() % 1000) as f64 / 1000.0;
        full.mul_f64(0.5 + jitter / 2.0)
    }

    /// GETs `url` (absolute, on the API host) with the bearer token and returns the
    /// 200 body. `permission` names the permission the endpoint needs, for a 403.
    pub fn get(
        &mut self,
        url: &str,
        pace: &'static str,
        permission: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, PluginError> {
        match self.get_found(url, pace, permission, timeout)? {
            Found::Body(body) => Ok(body),
            Found::NotFound(message) if endpoint(url) == "/api/machines" => Err(PluginError::BadResponse(format!(
                "/api/machines answered 404: the tenant does not seem to be onboarded to Defender for Endpoint ({message})"
            ))),
            Found::NotFound(message) => {
                Err(PluginError::BadResponse(format!("{} answered HTTP 404 ({message})", endpoint(url))))
            }
        }
    }

    /// Like [`Client::get`], but a 404 is an answer, not an error: on a page of
    /// machines after the first, Defender's 404 means the list has ended.
    pub fn get_found(
        &mut self,
        url: &str,
        pace: &'static str,
        permission: &str,
        timeout: Duration,
    ) -> Result<Found, PluginError> {
        let mut refreshed = false;
        loop {
            let bearer = format!("Bearer {}", self.token()?);
            let response = self.send(Call {
                method: Method::Get,
                url,
                headers: vec![("authorization".into(), bearer), ("accept".into(), "application/json".into())],
                body: None,
                pace: Some(pace),
                timeout,
            })?;
            match response.status {
                200 => return Ok(Found::Body(response.body)),
                401 if !refreshed => {
                    refreshed = true;
                    self.token = None;
                    log(Level::Info, &format!("{} answered 401; getting a new token", endpoint(url)));
                }
                401 => {
                    return Err(PluginError::Authentication(format!(
                        "the Defender API rejected a fresh token for {} ({})",
                        endpoint(url),
                        api_message(&response)
                    )))
                }
                403 => {
                    return Err(PluginError::Permission(format!(
                        "missing permission {permission}: the application may not call {} ({}); add the WindowsDefenderATP application permission {permission} and grant admin consent",
                        endpoint(url),
                        api_message(&response)
                    )))
                }
                404 => return Ok(Found::NotFound(api_message(&response))),
                status => {
                    return Err(PluginError::BadResponse(format!(
                        "{} answered HTTP {status} ({})",
                        endpoint(url),
                        api_message(&response)
                    )))
                }
            }
        }
    }
}

/// A GET's answer when a 404 may mean something.
pub enum Found {
    Body(Vec<u8>),
    /// 404, with Defender's message.
    NotFound(String),
}

/// A random number from the guest's entropy (std seeds `RandomState` from WASI's
/// random source), for jitter.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// The path of a URL, for messages (no query: it can be long and opaque).
pub fn endpoint(url: &str) -> &str {
    let host = net::host_of(url);
    let start = url.find(host).map(|i| i + host.len()).unwrap_or(0);
    let rest = &url[start..];
    rest.split(['?', '#']).next().unwrap_or(rest)
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(response: &Response) -> Option<Duration> {
    parse_retry_after(net::header(response, "retry-after")?, SystemTime::now())
}

pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Defender's `{"error": {"code", "message"}}`, or a body excerpt.
pub fn api_message(response: &Response) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(&response.body) {
        Ok(e) => format!("{}: {}", e.error.code, e.error.message),
        Err(_) if response.body.is_empty() => format!("HTTP {}, empty body", response.status),
        Err(_) => net::excerpt(&response.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_the_path() {
        assert_eq!(endpoint("https://h.com/api/machines?$top=1"), "/api/machines");
        assert_eq!(endpoint("http://127.0.0.1:9/api/x"), "/api/x");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21T07:27:50Z
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
