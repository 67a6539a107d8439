//! OAuth2 client credentials against Azure AD (v2, or v1 as a fallback), and its
//! errors told apart.

use crate::client::{Call, Client};
use crate::net;
use crate::settings::{Settings, TokenEndpoint};
use connector_sdk::http::Method;
use connector_sdk::types::PluginError;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Renew this long before the stated expiry (at most a fifth of the lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// An access token and when to stop using it.
pub struct Token {
    pub value: String,
    refresh_at: Instant,
}

impl Token {
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// The token endpoint.
pub fn token_url(settings: &Settings) -> String {
    match settings.token_endpoint {
        TokenEndpoint::V2 => format!("{}/{}/oauth2/v2.0/token", settings.login_base, settings.tenant_id),
        TokenEndpoint::V1 => format!("{}/{}/oauth2/token", settings.login_base, settings.tenant_id),
    }
}

/// Gets a token with the client credentials, for the configured (or the cloud's
/// default) scope. When Azure AD does not know that audience, the error names the
/// cloud's other known scopes; `verify` tries them ([`find_accepted_scope`]).
pub fn request_token(api: &mut Client) -> Result<Token, PluginError> {
    let scope = api.settings.scope.clone();
    ask(api, &scope)?.map_err(|refusal| classify_failure(&api.settings, refusal.status, &refusal.body))
}

/// Azure AD's refusal of a token request.
pub struct Refusal {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Refusal {
    /// Whether Azure AD does not know the requested audience (the resource of the
    /// scope): AADSTS500011 `invalid_resource`, or AADSTS70011 `invalid_scope`.
    pub fn unknown_audience(&self) -> bool {
        let aad: AadError = serde_json::from_slice(&self.body).unwrap_or_default();
        aad.error == "invalid_resource"
            || aad.error == "invalid_scope"
            || aad.error_codes.iter().any(|c| *c == 500011 || *c == 70011)
    }
}

/// Asks for a token for `scope` (v2) or its resource (v1): a token, or Azure AD's
/// refusal as it came. Transport failures are errors.
pub fn ask(api: &mut Client, scope: &str) -> Result<Result<Token, Refusal>, PluginError> {
    let settings = &api.settings;
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &settings.client_id)
        .append_pair("client_secret", &settings.client_secret);
    match settings.token_endpoint {
        TokenEndpoint::V2 => form.append_pair("scope", scope),
        TokenEndpoint::V1 => form.append_pair("resource", resource_of(scope)),
    };
    let url = token_url(settings);
    let timeout = settings.request_timeout;
    let response = api.send(Call {
        method: Method::Post,
        url: &url,
        headers: vec![
            ("content-type".into(), "application/x-www-form-urlencoded".into()),
            ("accept".into(), "application/json".into()),
        ],
        body: Some(form.finish().into_bytes()),
        pace: None,
        timeout,
    })?;
    if response.status == 200 {
        return parse_token(&response.body).map(Ok);
    }
    Ok(Err(Refusal { status: response.status, body: response.body }))
}

/// The v1 `resource` of a v2 scope: the same without `/.default`.
pub fn resource_of(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

/// After Azure AD refused the configured scope's audience: tries the cloud's other
/// known scopes, and says which one this tenant accepts and how to pin it. Runs
/// never do this on their own: they use what is configured.
pub fn find_accepted_scope(api: &mut Client, refused: &Refusal) -> PluginError {
    let settings = &api.settings;
    let (cloud, first) = (settings.cloud, settings.scope.clone());
    let description = first_line(&refused.body);
    let candidates: Vec<&str> = cloud.scopes().iter().copied().filter(|s| *s != first).collect();
    let mut tried = vec![first.clone()];
    for candidate in candidates {
        match ask(api, candidate) {
            Ok(Ok(_)) => {
                return PluginError::Authentication(format!(
                    "Azure AD does not accept the token audience `{first}` ({description}); `{candidate}` works for this tenant ({cloud} cloud): set scope = \"{candidate}\" in the [connector] table to use it"
                ))
            }
            Ok(Err(refusal)) if refusal.unknown_audience() => tried.push(candidate.to_owned()),
            Ok(Err(refusal)) => return classify_failure(&api.settings, refusal.status, &refusal.body),
            Err(e) => return e,
        }
    }
    PluginError::Authentication(format!(
        "Azure AD accepts none of the token audiences known for the {cloud} cloud ({}): {description}; check `cloud`, `login_host` and `scope`",
        tried.join(", ")
    ))
}

/// The first line of Azure AD's `error_description` (the rest is trace ids).
fn first_line(body: &[u8]) -> String {
    let aad: AadError = serde_json::from_slice(body).unwrap_or_default();
    aad.error_description.lines().next().unwrap_or("").trim().to_owned()
}

#[derive(Deserialize)]
struct TokenResponse<'a> {
    access_token: Option<String>,
    #[serde(borrow, default, deserialize_with = "crate::lenient::text")]
    expires_in: Option<std::borrow::Cow<'a, str>>,
}

fn parse_token(body: &[u8]) -> Result<Token, PluginError> {
    let parsed: TokenResponse = serde_json::from_slice(crate::lenient::strip_bom(body))
        .map_err(|e| PluginError::BadResponse(format!("the token endpoint sent an unreadable answer: {e}")))?;
    let value = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| PluginError::BadResponse("the token endpoint answered without an access_token".into()))?;
    // v1 sends `expires_in` as a string; a missing value means the documented hour.
    let lifetime = parsed.expires_in.and_then(|s| s.parse::<u64>().ok()).unwrap_or(3600);
    let lifetime = Duration::from_secs(lifetime);
    let usable = lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 5));
    Ok(Token { value, refresh_at: Instant::now() + usable })
}

#[derive(Deserialize, Default)]
struct AadError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

/// Tells Azure AD's failures apart in words an administrator can act on.
pub fn classify_failure(settings: &Settings, status: u16, body: &[u8]) -> PluginError {
    let aad: AadError = serde_json::from_slice(body).unwrap_or_default();
    // The description's first line holds the message; the rest is trace ids.
    let description = aad.error_description.lines().next().unwrap_or("").trim().to_owned();
    let has = |code: u64| aad.error_codes.contains(&code) || description.starts_with(&format!("AADSTS{code}:"));
    let tenant = &settings.tenant_id;
    let client = &settings.client_id;
    if has(90002) || has(900023) || has(90013) {
        PluginError::Authentication(format!(
            "unknown tenant: tenant_id {tenant} was not found in Azure AD ({description})"
        ))
    } else if has(700016) {
        PluginError::Authentication(format!(
            "unknown client id: no application {client} in tenant {tenant}; check client_id and that the app is consented in this tenant ({description})"
        ))
    } else if has(7000222) {
        PluginError::Authentication(format!(
            "the client secret has expired; create a new one for application {client} ({description})"
        ))
    } else if has(7000215) || aad.error == "invalid_client" {
        PluginError::Authentication(format!("wrong client secret for application {client} ({description})"))
    } else if has(70011) || aad.error == "invalid_scope" || has(500011) || aad.error == "invalid_resource" {
        let others: Vec<&str> = settings.cloud.scopes().iter().copied().filter(|s| *s != settings.scope).collect();
        PluginError::Authentication(format!(
            "Azure AD does not accept the token audience `{}` ({description}); other scopes known for the {} cloud: {}; `connector-host verify` tries them and says which one to pin with `scope`",
            settings.scope,
            settings.cloud,
            others.join(", ")
        ))
    } else if aad.error.is_empty() {
        PluginError::BadResponse(format!("the token endpoint answered HTTP {status}: {}", net::excerpt(body)))
    } else {
        PluginError::Authentication(format!("the token endpoint refused: {} ({description})", aad.error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        crate::settings::for_tests(&[])
    }

    fn message(e: PluginError) -> String {
        match e {
            PluginError::Authentication(m) => format!("auth: {m}"),
            PluginError::BadResponse(m) => format!("bad: {m}"),
            _ => "other".into(),
        }
    }

    #[test]
    fn aad_errors_are_told_apart() {
        let s = settings();
        let tenant = br#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'x' not found.\r\nTrace ID: 1","error_codes":[90002]}"#;
        assert!(message(classify_failure(&s, 400, tenant)).starts_with("auth: unknown tenant"));
        let client = br#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application not found","error_codes":[700016]}"#;
        assert!(message(classify_failure(&s, 400, client)).starts_with("auth: unknown client id"));
        let secret = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
        assert!(message(classify_failure(&s, 401, secret)).starts_with("auth: wrong client secret"));
        let expired =
            br#"{"error":"invalid_client","error_description":"AADSTS7000222: expired","error_codes":[7000222]}"#;
        assert!(message(classify_failure(&s, 401, expired)).contains("expired"));
        assert!(message(classify_failure(&s, 502, b"<html>gateway</html>"))
            .starts_with("bad: the token endpoint answered HTTP 502"));
        let audience = br#"{"error":"invalid_resource","error_description":"AADSTS500011: The resource principal named https://api.securitycenter.microsoft.com was not found in the tenant.","error_codes":[500011]}"#;
        let text = message(classify_failure(&s, 400, audience));
        assert!(
            text.contains("does not accept the token audience `https://api.securitycenter.microsoft.com/.default`"),
            "{text}"
        );
        assert!(text.contains("https://securitycenter.onmicrosoft.com/windowsatpservice/.default"), "{text}");
        assert!(Refusal { status: 400, body: audience.to_vec() }.unknown_audience());
        assert!(!Refusal { status: 401, body: b"{\"error\":\"invalid_client\"}".to_vec() }.unknown_audience());
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        let short = parse_token(br#"{"expires_in":2,"access_token":"a"}"#).unwrap();
        assert!(short.refresh_at <= Instant::now() + Duration::from_millis(1600));
        let hour = parse_token(br#"{"expires_in":3599,"access_token":"a"}"#).unwrap();
        assert!(hour.refresh_at >= Instant::now() + Duration::from_secs(3290));
    }

    #[test]
    fn v1_string_expiry_is_accepted() {
        let t = parse_token(br#"{"token_type":"Bearer","expires_in":"3599","access_token":"abc"}"#).unwrap();
        assert_eq!(t.value, "abc");
        assert!(t.is_fresh());
        assert!(parse_token(br#"{"token_type":"Bearer"}"#).is_err());
    }
}
