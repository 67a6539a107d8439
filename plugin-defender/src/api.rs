//! Authenticated GETs against the Defender API, with the minimal resilience a run
//! needs: one token refresh on 401, waits on 429 as `Retry-After` says, a few
//! retries of 5xx, and errors that name the endpoint and the missing permission.

use crate::auth::{self, Token};
use crate::net;
use crate::settings::Settings;
use crate::vulnbridge::connector::http::{Method, Response};
use crate::vulnbridge::connector::log::{log, Level};
use crate::vulnbridge::connector::types::PluginError;
use std::time::Duration;

const MAX_THROTTLE_WAITS: u32 = 5;
const MAX_SERVER_RETRIES: u32 = 3;
/// Longest single wait on `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The Defender API client of one connector instance.
pub struct Api {
    pub settings: Settings,
    token: Option<Token>,
}

impl Api {
    pub fn new(settings: Settings) -> Self {
        Api {
            settings,
            token: None,
        }
    }

    /// A valid token, requested when there is none or it is about to expire.
    pub fn token(&mut self) -> Result<&str, PluginError> {
        if !self.token.as_ref().is_some_and(Token::is_fresh) {
            self.token = Some(auth::request_token(&self.settings)?);
        }
        Ok(&self.token.as_ref().expect("just set").value)
    }

    /// GETs `url` (absolute, on the API host) and returns the 200 body. `permission`
    /// names the application permission the endpoint needs, for a 403's message.
    pub fn get(&mut self, url: &str, permission: &str) -> Result<Vec<u8>, PluginError> {
        let mut refreshed = false;
        let mut throttle_waits = 0;
        let mut server_retries = 0;
        loop {
            let bearer = format!("Bearer {}", self.token()?);
            let response = net::send(
                Method::Get,
                url,
                vec![
                    ("authorization".into(), bearer),
                    ("accept".into(), "application/json".into()),
                ],
                None,
            )?;
            match response.status {
                200 => return Ok(response.body),
                401 if !refreshed => {
                    refreshed = true;
                    self.token = None;
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
                429 if throttle_waits < MAX_THROTTLE_WAITS => {
                    throttle_waits += 1;
                    let wait = retry_after(&response).unwrap_or(Duration::from_secs(10)).min(MAX_RETRY_AFTER);
                    log(Level::Warn, &format!("{} throttled (429); waiting {} s", endpoint(url), wait.as_secs()));
                    std::thread::sleep(wait);
                }
                429 => {
                    return Err(PluginError::Throttled(format!(
                        "{} kept answering 429 after {MAX_THROTTLE_WAITS} waits",
                        endpoint(url)
                    )))
                }
                408 | 500..=599 if server_retries < MAX_SERVER_RETRIES => {
                    server_retries += 1;
                    let wait = Duration::from_secs(1 << server_retries);
                    log(Level::Warn, &format!("{} answered {}; retrying in {} s", endpoint(url), response.status, wait.as_secs()));
                    std::thread::sleep(wait);
                }
                404 if endpoint(url) == "/api/machines" => {
                    return Err(PluginError::BadResponse(format!(
                        "/api/machines answered 404: the tenant does not seem to be onboarded to Defender for Endpoint ({})",
                        api_message(&response)
                    )))
                }
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

/// The path of a URL, for messages (no query: it can be long and opaque).
pub fn endpoint(url: &str) -> &str {
    let host = net::host_of(url);
    let start = url.find(host).map(|i| i + host.len()).unwrap_or(0);
    let rest = &url[start..];
    rest.split(['?', '#']).next().unwrap_or(rest)
}

fn retry_after(response: &Response) -> Option<Duration> {
    net::header(response, "retry-after")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Defender's `{"error": {"code", "message"}}`, or a body excerpt.
fn api_message(response: &Response) -> String {
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
        Err(_) if response.body.is_empty() => format!("HTTP {}", response.status),
        Err(_) => net::excerpt(&response.body),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoint_is_the_path() {
        assert_eq!(
            super::endpoint("https://h.com/api/machines?$top=1"),
            "/api/machines"
        );
        assert_eq!(super::endpoint("http://127.0.0.1:9/api/x"), "/api/x");
    }
}
