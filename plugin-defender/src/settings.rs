//! The configuration fields (spec §2 plus the optional ones real tenants need), and
//! their validation into typed settings.

use crate::vulnbridge::connector::types::{ConfigField, FieldError, FieldKind, Setting};

pub const DEFAULT_API_HOST: &str = "api.securitycenter.microsoft.com";
pub const DEFAULT_LOGIN_HOST: &str = "login.microsoftonline.com";
/// Rows per vulnerability page: Defender's default; the documented maximum is 200,000.
pub const DEFAULT_PAGE_SIZE: u32 = 50_000;
pub const MAX_PAGE_SIZE: u32 = 200_000;
/// Machines per page: the documented maximum of `$top`.
pub const DEFAULT_MACHINES_PAGE_SIZE: u32 = 10_000;

/// Validated settings of one connector instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub tenant_id: String,
    /// Base URL of the Defender API, without a trailing slash.
    pub api_base: String,
    /// Base URL of the Azure AD login host, without a trailing slash.
    pub login_base: String,
    pub page_size: u32,
    pub machines_page_size: u32,
}

fn field(
    key: &str,
    label: &str,
    help: &str,
    kind: FieldKind,
    required: bool,
    default: Option<&str>,
) -> ConfigField {
    ConfigField {
        key: key.into(),
        label: label.into(),
        help: help.into(),
        kind,
        required,
        default_value: default.map(Into::into),
    }
}

/// The fields the "Add Connector" dialog asks for.
pub fn fields() -> Vec<ConfigField> {
    let page_size_default = DEFAULT_PAGE_SIZE.to_string();
    let machines_default = DEFAULT_MACHINES_PAGE_SIZE.to_string();
    vec![
        field("name", "Name", "A name for this connector instance.", FieldKind::Text, true, Some("MS Defender TVM")),
        field("client_id", "Client ID", "The Azure AD application (client) id, a GUID, of an app with the WindowsDefenderATP application permissions Machine.Read.All and Vulnerability.Read.All.", FieldKind::Text, true, None),
        field("client_secret", "Client Secret", "A client secret of that application. Never printed, logged or written.", FieldKind::Secret, true, None),
        field("host", "Host", "The Defender API host, e.g. api.securitycenter.microsoft.com, a regional host such as eu.api.security.microsoft.com, or a full URL.", FieldKind::Host, true, Some(DEFAULT_API_HOST)),
        field("tenant_id", "Tenant ID", "The Azure AD tenant (directory) id, a GUID.", FieldKind::Text, true, None),
        field("login_host", "Login host", "The Azure AD sign-in host: login.microsoftonline.com (commercial, GCC) or login.microsoftonline.us (GCC High, DoD), or a full URL.", FieldKind::Host, false, Some(DEFAULT_LOGIN_HOST)),
        field("page_size", "Page size", "Vulnerability rows per page (1 to 200,000; about 1 KB each).", FieldKind::Integer, false, Some(&page_size_default)),
        field("machines_page_size", "Machines page size", "Devices per page of /api/machines (1 to 10,000).", FieldKind::Integer, false, Some(&machines_default)),
    ]
}

/// Validates the settings the host passed, reporting every problem at once.
pub fn parse(settings: &[Setting]) -> Result<Settings, Vec<FieldError>> {
    let mut errors = Vec::new();
    let value = |key: &str| -> Option<String> {
        settings
            .iter()
            .rev()
            .find(|s| s.key == key)
            .map(|s| s.value.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut error = |key: &str, message: String| {
        errors.push(FieldError {
            key: key.into(),
            message,
        })
    };

    for s in settings {
        if !fields().iter().any(|f| f.key == s.key) {
            error(&s.key, "unknown field for this connector".into());
        }
    }
    let name = value("name").unwrap_or_else(|| "MS Defender TVM".into());
    let client_id = value("client_id").unwrap_or_default();
    if !is_guid(&client_id) {
        error(
            "client_id",
            format!(
                "expected a GUID such as 00000000-0000-0000-0000-000000000000, got `{client_id}`"
            ),
        );
    }
    let tenant_id = value("tenant_id").unwrap_or_default();
    if !is_guid(&tenant_id) {
        error(
            "tenant_id",
            format!(
                "expected a GUID such as 00000000-0000-0000-0000-000000000000, got `{tenant_id}`"
            ),
        );
    }
    let client_secret = value("client_secret").unwrap_or_default();
    if client_secret.is_empty() {
        error("client_secret", "a client secret is required".into());
    }
    let api_base = base_url(&value("host").unwrap_or_else(|| DEFAULT_API_HOST.into()))
        .unwrap_or_else(|m| {
            error("host", m);
            String::new()
        });
    let login_base = base_url(&value("login_host").unwrap_or_else(|| DEFAULT_LOGIN_HOST.into()))
        .unwrap_or_else(|m| {
            error("login_host", m);
            String::new()
        });
    let page_size =
        bounded(value("page_size"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE).unwrap_or_else(|m| {
            error("page_size", m);
            DEFAULT_PAGE_SIZE
        });
    let machines_page_size = bounded(
        value("machines_page_size"),
        DEFAULT_MACHINES_PAGE_SIZE,
        DEFAULT_MACHINES_PAGE_SIZE,
    )
    .unwrap_or_else(|m| {
        error("machines_page_size", m);
        DEFAULT_MACHINES_PAGE_SIZE
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Settings {
        name,
        client_id,
        client_secret,
        tenant_id,
        api_base,
        login_base,
        page_size,
        machines_page_size,
    })
}

fn bounded(value: Option<String>, default: u32, max: u32) -> Result<u32, String> {
    let Some(text) = value else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {max}, got `{text}`"
        )),
    }
}

/// `8-4-4-4-12` hex digits.
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A bare host name means HTTPS on the default port; a full URL keeps its scheme and
/// port. The result has no trailing slash, e.g. `https://api.security.microsoft.com`.
pub fn base_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_owned(), value),
    };
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "expected a host name or an http(s) URL, got scheme `{scheme}`"
        ));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "expected a host name such as {DEFAULT_API_HOST} or a URL such as http://127.0.0.1:8080 without a path, got `{value}`"
        ));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(key: &str, value: &str) -> Setting {
        Setting {
            key: key.into(),
            value: value.into(),
        }
    }

    fn valid() -> Vec<Setting> {
        vec![
            setting("client_id", "11111111-2222-3333-4444-555555555555"),
            setting("client_secret", "s3cret"),
            setting("tenant_id", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
        ]
    }

    #[test]
    fn defaults_apply() {
        let s = parse(&valid()).unwrap();
        assert_eq!(s.name, "MS Defender TVM");
        assert_eq!(s.api_base, "https://api.securitycenter.microsoft.com");
        assert_eq!(s.login_base, "https://login.microsoftonline.com");
        assert_eq!(s.page_size, 50_000);
        assert_eq!(s.machines_page_size, 10_000);
    }

    #[test]
    fn hosts_accept_bare_names_and_urls() {
        assert_eq!(
            base_url("eu.api.security.microsoft.com").unwrap(),
            "https://eu.api.security.microsoft.com"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("https://host/api").is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let errors = parse(&[
            setting("client_id", "nope"),
            setting("host", "https://h/x"),
            setting("page_size", "0"),
            setting("colour", "red"),
        ])
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "colour",
                "client_id",
                "tenant_id",
                "client_secret",
                "host",
                "page_size"
            ]
        );
        assert!(errors[1].message.contains("expected a GUID"));
    }

    #[test]
    fn field_table_matches_the_spec() {
        let f = fields();
        let required: Vec<&str> = f
            .iter()
            .filter(|f| f.required)
            .map(|f| f.key.as_str())
            .collect();
        assert_eq!(
            required,
            ["name", "client_id", "client_secret", "host", "tenant_id"]
        );
        assert!(matches!(
            f.iter().find(|f| f.key == "client_secret").unwrap().kind,
            FieldKind::Secret
        ));
        assert_eq!(
            f.iter()
                .find(|f| f.key == "host")
                .unwrap()
                .default_value
                .as_deref(),
            Some(DEFAULT_API_HOST)
        );
    }
}
