//! GitHub's REST API: the organization's repositories, then its Dependabot alerts,
//! both paged by `Link` headers. Every repository is listed (100 a call) so that a
//! repository whose last alert was fixed is still sent, with no alerts: CVM then
//! closes what was open there.
//!
//! Every call carries the token (a placeholder the host fills in), GitHub's JSON
//! media type and API version. Transient failures and rate limits are retried by the
//! SDK's [`Retry`](connector_sdk::http::Retry); GitHub also signals an exhausted
//! primary rate limit as 403 with `x-ratelimit-remaining: 0`, which waits until
//! `x-ratelimit-reset` when that is soon enough.

use crate::settings::Settings;
use crate::{ALERTS, REPOSITORIES};
use connector_sdk::http::{excerpt, same_origin, Request, Response};
use connector_sdk::output;
use connector_sdk::types::{Check, Page, PluginError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// GitHub's REST API version this plugin is written against.
pub const API_VERSION: &str = "2022-11-28";

/// Where paging stands: the repositories first, then the alerts.
#[derive(Debug, Clone)]
pub struct Paging {
    /// The next page of repositories, until they are all read.
    repositories: Option<String>,
    /// The next page of alerts.
    alerts: Option<String>,
    sequence: u32,
    repositories_seen: u64,
    alerts_seen: u64,
}

impl Paging {
    pub fn start(settings: &Settings) -> Self {
        Paging {
            repositories: Some(repositories_url(settings)),
            alerts: Some(first_page_url(settings, settings.page_size)),
            sequence: 0,
            repositories_seen: 0,
            alerts_seen: 0,
        }
    }
}

/// Every repository of the organization, 100 a page (GitHub's maximum).
pub fn repositories_url(settings: &Settings) -> String {
    format!("{}/orgs/{}/repos?type=all&per_page=100", settings.api_base, settings.organization)
}

/// The first page: open alerts, oldest first, `page_size` per page.
pub fn first_page_url(settings: &Settings, page_size: u64) -> String {
    format!(
        "{}/orgs/{}/dependabot/alerts?state=open&sort=created&direction=asc&per_page={page_size}",
        settings.api_base, settings.organization
    )
}

/// The next page, repositories then alerts, or `None` after the last one.
pub fn next_page(settings: &Settings, paging: &mut Paging) -> Result<Option<Page>, PluginError> {
    let (kind, slot) = match (&paging.repositories, &paging.alerts) {
        (Some(_), _) => (REPOSITORIES, &mut paging.repositories),
        (None, Some(_)) => (ALERTS, &mut paging.alerts),
        (None, None) => return Ok(None),
    };
    let url = slot.take().expect("matched above");
    let response = get(settings, &url)?;
    *slot = checked_next_link(settings, &url, response.next_link())?;
    let page = Page { kind: kind.into(), sequence: paging.sequence, body: response.body };
    paging.sequence += 1;
    let entries = count_entries(&page.body);
    if kind == REPOSITORIES {
        paging.repositories_seen += entries;
        output::progress("repositories", paging.repositories_seen, None);
    } else {
        paging.alerts_seen += entries;
        output::progress("alerts", paging.alerts_seen, None);
    }
    Ok(Some(page))
}

/// A next link, if it may be followed: a link elsewhere would carry the token to
/// another origin, and one to the page just read would never end.
fn checked_next_link(settings: &Settings, url: &str, next: Option<String>) -> Result<Option<String>, PluginError> {
    if let Some(next) = &next {
        if !same_origin(next, &settings.api_base) {
            return Err(PluginError::BadResponse(format!(
                "GitHub's next page link leads to another origin ({next}); refusing to follow it"
            )));
        }
        if next == url {
            return Err(PluginError::BadResponse(format!(
                "GitHub's next page link repeats the page just read ({url})"
            )));
        }
    }
    Ok(next)
}

/// Array entries in a page, counted cheaply for progress (mapping checks the rest).
fn count_entries(body: &[u8]) -> u64 {
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body).map(|v| v.len() as u64).unwrap_or(0)
}

/// One call with the token, checked: 2xx is returned, anything else is an error
/// saying what to fix.
fn get(settings: &Settings, url: &str) -> Result<Response, PluginError> {
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

/// Two small calls: the token works, the organization exists, its repositories
/// can be listed (every one is sent, so that CVM closes fixed alerts), and its
/// alerts can be read.
pub fn verify(settings: &Settings) -> Result<Vec<Check>, PluginError> {
    let listed =
        get(settings, &format!("{}/orgs/{}/repos?type=all&per_page=1", settings.api_base, settings.organization))?;
    let repositories = count_entries(&listed.body);
    let response = get(settings, &first_page_url(settings, 1))?;
    let sample = count_entries(&response.body);
    Ok(vec![
        Check {
            name: "GitHub API".into(),
            detail: format!("{} answers with API version {API_VERSION}", settings.api_base),
        },
        Check {
            name: "Repositories".into(),
            detail: format!(
                "the token lists `{}`'s repositories ({})",
                settings.organization,
                if repositories == 0 { "none visible" } else { "at least one" }
            ),
        },
        Check {
            name: "Dependabot alerts".into(),
            detail: format!(
                "the token reads `{}`'s alerts ({})",
                settings.organization,
                if sample == 0 { "none open" } else { "at least one open" }
            ),
        },
    ])
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
