//! Thin helpers over the host's `http` capability.

use crate::vulnbridge::connector::http::{self, HttpError, Method, Request, Response};
use crate::vulnbridge::connector::types::PluginError;
use std::time::Duration;

/// Sends a request through the host, turning capability failures into plugin errors
/// that name the host. Connection failures and timeouts are `Unreachable` (the
/// caller may retry them); a refusal by the host is not.
pub fn send(
    method: Method,
    url: &str,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, PluginError> {
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let request = Request { method, url: url.to_owned(), headers, body, timeout_ms: Some(timeout_ms) };
    http::send(&request).map_err(|e| match e {
        HttpError::Transport(m) => PluginError::Unreachable(format!("cannot reach {}: {m}", host_of(url))),
        HttpError::Timeout(m) => PluginError::Unreachable(format!(
            "no complete answer from {} within {} s: {m}",
            host_of(url),
            timeout.as_secs()
        )),
        HttpError::Denied(m) => PluginError::Other(format!("the host refused the request to {}: {m}", host_of(url))),
        HttpError::TooLarge(cap) => PluginError::BadResponse(format!(
            "the response from {} exceeded the host's cap of {cap} bytes; lower `page_size`",
            host_of(url)
        )),
        HttpError::InvalidRequest(m) => PluginError::Other(format!("invalid request to {}: {m}", host_of(url))),
    })
}

/// The host and port of a URL, for messages.
pub fn host_of(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[after_scheme..].find(['/', '?', '#']).map(|i| after_scheme + i).unwrap_or(url.len());
    &url[after_scheme..end]
}

/// A response header, by case-insensitive name.
pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A short, safe excerpt of a body for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_strips_scheme_and_path() {
        assert_eq!(super::host_of("https://api.x.com/api/machines?$top=1"), "api.x.com");
        assert_eq!(super::host_of("http://127.0.0.1:8080"), "127.0.0.1:8080");
    }
}
