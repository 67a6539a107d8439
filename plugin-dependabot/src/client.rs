//! GitHub's REST API, one call at a time: every call carries the token (a
//! placeholder the host fills in), GitHub's JSON media type and API version.
//! Transient failures and rate limits are retried by the SDK's
//! [`Retry`](connector_sdk::http::Retry); GitHub also signals an exhausted primary
//! rate limit as 403 with `x-ratelimit-remaining: 0`, which waits until
//! `x-ratelimit-reset` when that is soon enough. The facts: docs/github-dependabot.md.

use crate::settings::Settings;
use connector_sdk::http::{excerpt, Request, Response};
use connector_sdk::types::PluginError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// GitHub's REST API version this plugin is written against.
pub const API_VERSION: &str = "2022-11-28";

/// One call with the token, checked: 2xx is returned, anything else is an error
/// saying what to fix.
pub fn get(settings: &Settings, url: &str) -> Result<Response, PluginError> {
    let request = Request::get(url)
        .bearer(&settings.token)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", API_VERSION)
        .header("User-Agent", concat!("vulnbridge-dependabot/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.timeout);
    let response = settings.retry.send(request, rate_limit_wait)?;
    if response.is_success() {
        return Ok(response);
    }
    let message = github_message(&response);
    let org = &settings.organization;
    Err(match response.status {
        401 => PluginError::Authentication(format!("GitHub refused the token (401): {message}")),
        403 => PluginError::Permission(format!(
            "the token may not read Dependabot alerts of `{org}` (403: {message}); it needs \"Dependabot alerts: read\" (fine-grained) or the security_events scope (classic), and Dependabot alerts must be enabled"
        )),
        404 => PluginError::NotConfigured(format!(
            "organization `{org}` not found, or the token cannot see it (404: {message})"
        )),
        status => PluginError::BadResponse(format!("GitHub answered HTTP {status}: {message}")),
    })
}

/// GitHub's primary rate limit: 403 or 429 with `x-ratelimit-remaining: 0` means
/// wait until `x-ratelimit-reset` (epoch seconds); a secondary limit sends
/// `retry-after`.
pub fn rate_limit_wait(response: &Response) -> Option<Duration> {
    if response.status != 403 && response.status != 429 {
        return None;
    }
    if let Some(wait) = response.retry_after() {
        return Some(wait);
    }
    if response.header("x-ratelimit-remaining").map(str::trim) != Some("0") {
        return None;
    }
    let reset = response.header("x-ratelimit-reset")?.trim().parse::<u64>().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// GitHub's `message` field, or the start of the body.
fn github_message(response: &Response) -> String {
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| excerpt(&response.body))
}

/// Array entries in a page, counted cheaply for progress (mapping checks the rest).
pub fn count_entries(body: &[u8]) -> u64 {
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body).map(|v| v.len() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn github_rate_limits_are_recognised_and_permission_errors_are_not() {
        assert_eq!(rate_limit_wait(&response(429, &[("Retry-After", "3")])), Some(Duration::from_secs(3)));
        let soon = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 30;
        let wait = rate_limit_wait(&response(
            403,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &soon.to_string())],
        ));
        assert!(wait.is_some_and(|w| w <= Duration::from_secs(30) && w >= Duration::from_secs(28)), "{wait:?}");
        assert_eq!(rate_limit_wait(&response(403, &[("x-ratelimit-remaining", "4999")])), None);
        assert_eq!(rate_limit_wait(&response(500, &[("Retry-After", "3")])), None);
    }
}
