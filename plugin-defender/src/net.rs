//! Defender's use of the SDK's HTTP helpers: one send path whose errors name the
//! setting to change.

use connector_sdk::http::{plugin_error, HttpError, Method, Request, Response};
use connector_sdk::types::PluginError;
use std::time::Duration;

pub use connector_sdk::http::{excerpt, host_of};

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
    let mut request = Request::new(method, url).timeout(timeout);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    request.send().map_err(|e| match e {
        HttpError::TooLarge(cap) => PluginError::BadResponse(format!(
            "the response from {} exceeded the host's cap of {cap} bytes; lower `page_size`",
            host_of(url)
        )),
        other => plugin_error(url, timeout, other),
    })
}

/// A response header, by case-insensitive name.
pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.header(name)
}
