//! The configuration fields and their validation.

use connector_sdk::config::{field, secret_field, Config};
use connector_sdk::http::Retry;
use connector_sdk::types::{ConfigField, FieldError, FieldKind};
use std::time::Duration;

/// The most alerts GitHub returns per page.
pub const MAX_PAGE_SIZE: u64 = 100;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The REST API's base URL, e.g. `https://api.github.com` or, for GitHub
    /// Enterprise Server, `https://github.example.com/api/v3`.
    pub api_base: String,
    pub organization: String,
    /// A secret placeholder; the host puts the token in on the way out.
    pub token: String,
    pub page_size: u64,
    pub timeout: Duration,
    pub retry: Retry,
}

pub fn fields() -> Vec<ConfigField> {
    use FieldKind::*;
    vec![
        field("organization", "Organization", "The GitHub organization whose Dependabot alerts are imported (its login, e.g. octo-org).", Text, true, None),
        secret_field("token", "Token", "A fine-grained token with \"Dependabot alerts: read\" on the organization's repositories, or a classic token with the security_events scope (repo for private repositories). Sent only to the API host; never printed, logged or written.", true, &["{host}"]),
        field("host", "API host", "The REST API host: api.github.com, or the host of a GitHub Enterprise Server (then set api_path to /api/v3).", Host, true, Some("api.github.com")),
        field("api_path", "API path", "A path before the API routes: empty for github.com, /api/v3 for GitHub Enterprise Server.", Text, false, Some("")),
        field("page_size", "Page size", "Alerts per page (1 to 100).", Integer, false, Some("100")),
        field("request_timeout_seconds", "Request timeout", "Seconds allowed for one page.", Integer, false, Some("60")),
        field("max_retries", "Retries", "Retries of a page that failed on a connection error, a timeout, a 5xx or a rate limit.", Integer, false, Some("5")),
        field("retry_delay_ms", "First retry delay", "Milliseconds before the first retry; each further retry waits twice as long.", Integer, false, Some("1000")),
        field("max_wait_seconds", "Longest wait", "The longest wait for a rate limit to reset (Retry-After or x-ratelimit-reset) before the run stops.", Integer, false, Some("120")),
    ]
}

pub fn from_config(config: &mut Config) -> Result<Settings, Vec<FieldError>> {
    let organization = config.required("organization");
    if !organization.is_empty()
        && !organization.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        config.error("organization", &format!("expected an organization login such as octo-org, got `{organization}`"));
    }
    let token = config.required("token");
    let host = config.base_url("host");
    let path = config.text("api_path");
    let path = path.trim_end_matches('/');
    if !path.is_empty() && (!path.starts_with('/') || path.contains(['?', '#', ' '])) {
        config.error("api_path", &format!("expected a path such as /api/v3, got `{path}`"));
    }
    let page_size = config.integer("page_size", 1, MAX_PAGE_SIZE);
    let timeout = Duration::from_secs(config.integer("request_timeout_seconds", 1, 900));
    let retry = Retry {
        max_retries: config.integer("max_retries", 0, 20) as u32,
        first_delay: Duration::from_millis(config.integer("retry_delay_ms", 1, 60_000)),
        max_delay: Duration::from_secs(config.integer("max_wait_seconds", 1, 3_600)),
    };
    config.finish()?;
    Ok(Settings { api_base: format!("{host}{path}"), organization, token, page_size, timeout, retry })
}

#[cfg(test)]
mod tests {
    use crate::DependabotConnector;
    use connector_sdk::testing::configure;

    #[test]
    fn defaults_apply_and_enterprise_paths_join_the_host() {
        let c = configure::<DependabotConnector>(&[("organization", "octo-org"), ("token", "t")]).unwrap();
        assert_eq!(c.settings.api_base, "https://api.github.com");
        assert_eq!(c.settings.page_size, 100);
        let c = configure::<DependabotConnector>(&[
            ("organization", "o"),
            ("token", "t"),
            ("host", "ghe.corp"),
            ("api_path", "/api/v3/"),
        ])
        .ok()
        .unwrap();
        assert_eq!(c.settings.api_base, "https://ghe.corp/api/v3");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let errors = configure::<DependabotConnector>(&[
            ("organization", "octo org"),
            ("page_size", "500"),
            ("api_path", "api"),
        ])
        .err()
        .unwrap();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["organization", "token", "api_path", "page_size"]);
    }
}
