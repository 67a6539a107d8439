//! The configuration fields (those of CVM's "Add Connector" dialog, plus the optional ones real tenants need), and
//! their validation into typed settings.

use crate::cloud::{self, Cloud};
use crate::pacing::{self, Pacer};
use connector_sdk::config::{choice_field, egress as origin, field, secret_field, Config};
use connector_sdk::types::{ConfigField, Egress, FieldError, FieldKind, Setting};
use std::time::Duration;

pub const DEFAULT_API_HOST: &str = "api.securitycenter.microsoft.com";
/// Rows per vulnerability page: Defender's default; the documented maximum is 200,000.
pub const DEFAULT_PAGE_SIZE: u32 = 50_000;
pub const MAX_PAGE_SIZE: u32 = 200_000;
/// Machines per page: the documented maximum of `$top`.
pub const DEFAULT_MACHINES_PAGE_SIZE: u32 = 10_000;
/// Above this many devices, `auto` uses the file export (Microsoft's recommendation).
pub const DEFAULT_EXPORT_ABOVE_DEVICES: u64 = 100_000;

/// How the token is requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// `/{tenant}/oauth2/v2.0/token` with `scope`.
    V2,
    /// `/{tenant}/oauth2/token` with `resource` (the older endpoint, as a fallback).
    V1,
}

/// How vulnerabilities are fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiMode {
    /// JSON pages below `export_above_devices` devices, files above.
    Auto,
    /// `SoftwareVulnerabilitiesByMachine` pages.
    Json,
    /// `SoftwareVulnerabilitiesExport` files.
    Export,
}

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
    /// Whether the login host follows from the cloud (not configured).
    pub login_derived: bool,
    pub cloud: Cloud,
    /// How the cloud was decided, for verify's report.
    pub cloud_source: &'static str,
    /// The v2 scope; the v1 resource is the same without `/.default`.
    pub scope: String,
    /// Base URLs the bearer token may go to: the configured API host and, when it
    /// is a documented host, every documented API host of its cloud.
    pub api_bases: Vec<String>,
    /// Where export files are downloaded from (`*.` matches subdomains).
    pub storage_host: String,
    /// Whether the storage host follows from the cloud (not configured).
    pub storage_derived: bool,
    pub token_endpoint: TokenEndpoint,
    pub api_mode: ApiMode,
    pub export_above_devices: u64,
    pub page_size: u32,
    pub machines_page_size: u32,
    pub pacer: Pacer,
    pub request_timeout: Duration,
    pub page_timeout: Duration,
    pub max_retries: u32,
    pub retry_delay: Duration,
    /// Whether definitions get the text of Defender's vulnerability catalogue.
    pub catalogue: bool,
    /// Which devices and rows are reported, and which attributes become tags.
    pub scoping: crate::scoping::Scoping,
}

impl Settings {
    /// The v1 `resource` for the scope.
    pub fn resource(&self) -> &str {
        crate::auth::resource_of(&self.scope)
    }
}

/// Where the client secret may go: the sign-in hosts, never an API host or storage.
const SIGN_IN_ORIGINS: [&str; 3] =
    ["{login_host}", "https://login.microsoftonline.com", "https://login.microsoftonline.us"];

/// Every origin the plugin may contact, in every cloud: the configured hosts, the
/// sign-in hosts, every documented API host (a nextLink may lead from one to another
/// of the same cloud) and the export storage. `configure` narrows this to what the
/// configured cloud uses.
pub fn egress() -> Vec<Egress> {
    let mut egress = vec![
        origin("{host}", "the Defender API"),
        origin("{login_host}", "the configured Azure AD sign-in host"),
        origin(SIGN_IN_ORIGINS[1], "Azure AD sign-in (commercial, GCC)"),
        origin(SIGN_IN_ORIGINS[2], "Azure AD sign-in (GCC High, DoD)"),
        origin("{storage_host}", "the configured export storage"),
        origin("https://*.blob.core.windows.net", "export files, signed URLs without a token (commercial, GCC)"),
        origin("https://*.blob.core.usgovcloudapi.net", "export files, signed URLs without a token (GCC High, DoD)"),
    ];
    for cloud in [Cloud::Commercial, Cloud::Gcc, Cloud::GccHigh] {
        for host in cloud.api_hosts() {
            egress.push(origin(&format!("https://{host}"), &format!("a documented Defender API host ({cloud} cloud)")));
        }
    }
    egress
}

/// The fields the "Add Connector" dialog asks for, then the optional ones.
pub fn fields() -> Vec<ConfigField> {
    use FieldKind::*;
    vec![
        field("name", "Name", "A name for this connector instance.", Text, true, Some("MS Defender TVM")),
        field("client_id", "Client ID", "The Azure AD application (client) id, a GUID, of an app with the WindowsDefenderATP application permissions Machine.Read.All and Vulnerability.Read.All.", Text, true, None),
        secret_field("client_secret", "Client Secret", "A client secret of that application. Sent only to the Azure AD sign-in host; never printed, logged or written.", true, &SIGN_IN_ORIGINS),
        field("host", "Host", "The Defender API host: api.securitycenter.microsoft.com, api.security.microsoft.com, a regional host such as eu.api.security.microsoft.com, a government host (api-gcc.securitycenter.microsoft.us, api-gov.securitycenter.microsoft.us), or a full URL.", Host, true, Some(DEFAULT_API_HOST)),
        field("tenant_id", "Tenant ID", "The Azure AD tenant (directory) id, a GUID.", Text, true, None),
        field("login_host", "Login host", "The Azure AD sign-in host. By default it follows the cloud: login.microsoftonline.com (commercial, GCC) or login.microsoftonline.us (GCC High, DoD).", Host, false, None),
        choice_field("cloud", "Cloud", "auto (from the API host), commercial, gcc, gcc-high or dod. Decides the default sign-in host and token scope.", false, Some("auto"), &[("auto", "From the API host"), ("commercial", "Commercial"), ("gcc", "GCC"), ("gcc-high", "GCC High"), ("dod", "DoD")]),
        field("scope", "Token scope", "The OAuth2 scope (v2) or, without /.default, resource (v1). By default it follows the cloud: https://api.securitycenter.microsoft.com/.default for commercial hosts.", Text, false, None),
        choice_field("token_endpoint", "Token endpoint", "v2 (/oauth2/v2.0/token with scope) or v1 (/oauth2/token with resource), the older endpoint as a fallback.", false, Some("v2"), &[("v2", "v2 (scope)"), ("v1", "v1 (resource)")]),
        choice_field("api_mode", "API mode", "json (SoftwareVulnerabilitiesByMachine pages), export (SoftwareVulnerabilitiesExport files) or auto (export above export_above_devices devices).", false, Some("auto"), &[("auto", "Automatic"), ("json", "JSON pages"), ("export", "Export files")]),
        field("export_above_devices", "Export above devices", "With api_mode auto, use the file export when the tenant has more active devices than this.", Integer, false, Some("100000")),
        field("storage_host", "Export storage host", "Where export files are downloaded from (no token is sent there); a leading *. matches any subdomain. By default it follows the cloud: *.blob.core.windows.net, or *.blob.core.usgovcloudapi.net for GCC High and DoD.", Host, false, None),
        field("page_size", "Page size", "Vulnerability rows per page (1 to 200,000; about 1 KB each).", Integer, false, Some("50000")),
        field("machines_page_size", "Machines page size", "Devices per page of /api/machines (1 to 10,000).", Integer, false, Some("10000")),
        field("rate_limits", "Rate limits", "Calls allowed per endpoint and window, paced so Defender never has to throttle; `off` disables pacing.", Text, false, Some(pacing::DEFAULT_LIMITS)),
        field("request_timeout_seconds", "Request timeout", "Seconds allowed for a token, machines or export request.", Integer, false, Some("60")),
        field("page_timeout_seconds", "Page timeout", "Seconds allowed for one vulnerability page or export file (a 50,000-row page is about 50 MB).", Integer, false, Some("600")),
        field("max_retries", "Retries", "Retries of a call that failed on a connection error, a timeout, a 5xx or a 429, before the run stops.", Integer, false, Some("5")),
        field("catalogue", "Enrich from the catalogue", "Give each vulnerability definition the name, description, CVSS v3, EPSS and exploit facts of Defender's vulnerability catalogue (GET /api/vulnerabilities, permission Vulnerability.Read.All). Read whole once, then only what changed.", Boolean, false, Some("true")),
        field("device_groups", "Device groups", "Only devices in these device groups (RBAC groups), by name as Defender's Settings > Device groups shows them, separated by commas. Empty: every group. Devices without a group are in `Unassigned`.", Text, false, None),
        field("exclude_device_groups", "Excluded device groups", "Never devices in these device groups, by name, separated by commas.", Text, false, None),
        choice_field("min_severity", "Minimum severity", "Report vulnerabilities of this severity and above; rows below are skipped and counted (and CVM closes what an earlier run sent of them).", false, Some("all"), &[("all", "All"), ("low", "Low"), ("medium", "Medium"), ("high", "High"), ("critical", "Critical")]),
        field("min_severity_by_group", "Minimum severity by device group", "Per device group, a minimum severity that replaces the one above: `Servers EU=high; Kiosks=critical`.", Text, false, None),
        field("tag_exposure_level", "Tag exposure level", "Tag each asset with its device's exposure level (`exposureLevel: High`).", Boolean, false, Some("false")),
        field("tag_risk_score", "Tag risk score", "Tag each asset with its device's risk score (`riskScore: Medium`).", Boolean, false, Some("false")),
        field("tag_health_status", "Tag health status", "Tag each asset with its device's health status (`healthStatus: Active`).", Boolean, false, Some("false")),
        field("tag_onboarding_status", "Tag onboarding status", "Tag each asset with its device's onboarding status (`onboardingStatus: Onboarded`).", Boolean, false, Some("false")),
        field("tag_agent_version", "Tag agent version", "Tag each asset with its device's sensor version (`agentVersion: 10.8760.19041.1`).", Boolean, false, Some("false")),
        field("retry_delay_ms", "First retry delay", "Milliseconds before the first retry; each further retry waits twice as long (with jitter, at most 60 s).", Integer, false, Some("1000")),
    ]
}

/// Validates the settings the host passed, reporting every problem at once.
pub fn parse(settings: &[Setting]) -> Result<Settings, Vec<FieldError>> {
    from_config(&mut Config::new(&fields(), settings.to_vec()))
}

/// Validates a configuration read by the SDK (which has already refused unknown keys).
pub fn from_config(config: &mut Config) -> Result<Settings, Vec<FieldError>> {
    let client_id = config.text("client_id");
    if !is_guid(&client_id) {
        config.error(
            "client_id",
            &format!("expected a GUID such as 00000000-0000-0000-0000-000000000000, got `{client_id}`"),
        );
    }
    let tenant_id = config.text("tenant_id");
    if !is_guid(&tenant_id) {
        config.error(
            "tenant_id",
            &format!("expected a GUID such as 00000000-0000-0000-0000-000000000000, got `{tenant_id}`"),
        );
    }
    let client_secret = config.text("client_secret");
    if client_secret.is_empty() {
        config.error("client_secret", "a client secret is required");
    }
    let api_base = base_url(&config.text("host")).unwrap_or_else(|m| {
        config.error("host", &m);
        String::new()
    });
    let api_cloud = cloud::of_host(host_name(&api_base));
    let (cloud, cloud_source) = match config.text("cloud").to_ascii_lowercase().as_str() {
        "auto" => match api_cloud {
            Some(c) => (c, "from the API host"),
            None => (Cloud::Commercial, "assumed: the API host is not a documented Defender host"),
        },
        other => match Cloud::parse(other) {
            Some(c) => {
                let compatible = match (api_cloud, c) {
                    (None, _) => true,
                    (Some(Cloud::GccHigh), Cloud::Dod) => true,
                    (Some(api), c) => api == c,
                };
                if !compatible {
                    config.error(
                        "cloud",
                        &format!(
                            "`{other}` does not match host {} ({} cloud)",
                            host_name(&api_base),
                            api_cloud.unwrap()
                        ),
                    );
                }
                (c, "configured")
            }
            None => {
                config.error("cloud", &format!("expected auto, commercial, gcc, gcc-high or dod, got `{other}`"));
                (Cloud::Commercial, "configured")
            }
        },
    };
    let (login_base, login_derived) = match config.value("login_host") {
        Some(v) => (
            base_url(&v).unwrap_or_else(|m| {
                config.error("login_host", &m);
                String::new()
            }),
            false,
        ),
        None => (format!("https://{}", cloud.login_host()), true),
    };
    let scope = config.value("scope").unwrap_or_else(|| cloud.scope().to_owned());
    let (storage_host, storage_derived) = match config.value("storage_host") {
        Some(v) => (v, false),
        None => (cloud.storage_host().to_owned(), true),
    };
    let mut api_bases = vec![api_base.clone()];
    if api_cloud.is_some() {
        let others = cloud.api_hosts().iter().map(|h| format!("https://{h}"));
        api_bases.extend(others.filter(|b| *b != api_base));
    }
    if !scope.starts_with("https://") {
        config.error("scope", &format!("expected a URL such as {}, got `{scope}`", Cloud::Commercial.scope()));
    }
    let token_endpoint = match config.choice("token_endpoint", &["v2", "v1"]).as_str() {
        "v1" => TokenEndpoint::V1,
        _ => TokenEndpoint::V2,
    };
    let api_mode = match config.choice("api_mode", &["auto", "json", "export"]).as_str() {
        "json" => ApiMode::Json,
        "export" => ApiMode::Export,
        _ => ApiMode::Auto,
    };
    let mut number = |key: &str, min: u64, max: u64| config.integer(key, min, max);
    let export_above_devices = number("export_above_devices", 0, u64::MAX);
    let page_size = number("page_size", 1, u64::from(MAX_PAGE_SIZE)) as u32;
    let machines_page_size = number("machines_page_size", 1, u64::from(DEFAULT_MACHINES_PAGE_SIZE)) as u32;
    let request_timeout = Duration::from_secs(number("request_timeout_seconds", 1, 900));
    let page_timeout = Duration::from_secs(number("page_timeout_seconds", 1, 900));
    let max_retries = number("max_retries", 0, 20) as u32;
    let retry_delay = Duration::from_millis(number("retry_delay_ms", 1, 60_000));
    let catalogue = config.boolean("catalogue");
    let scoping = scoping_of(config);
    let pacer = Pacer::parse(&config.text("rate_limits")).unwrap_or_else(|m| {
        config.error("rate_limits", &m);
        Pacer::default()
    });
    config.finish()?;
    Ok(Settings {
        name: config.text("name"),
        client_id,
        client_secret,
        tenant_id,
        api_base,
        login_base,
        login_derived,
        cloud,
        cloud_source,
        scope,
        api_bases,
        storage_host,
        storage_derived,
        token_endpoint,
        api_mode,
        export_above_devices,
        page_size,
        machines_page_size,
        pacer,
        request_timeout,
        page_timeout,
        max_retries,
        retry_delay,
        catalogue,
        scoping,
    })
}

/// The scoping fields, every problem recorded on its field.
fn scoping_of(config: &mut Config) -> crate::scoping::Scoping {
    use crate::scoping::{parse_groups, parse_min_by_group, parse_severity, AttributeTags, Scoping};
    let min_score = match parse_severity(&config.choice("min_severity", &["all", "low", "medium", "high", "critical"]))
    {
        Ok(score) => score,
        Err(message) => {
            config.error("min_severity", &message);
            0
        }
    };
    let min_score_by_group = parse_min_by_group(&config.text("min_severity_by_group")).unwrap_or_else(|message| {
        config.error("min_severity_by_group", &message);
        Default::default()
    });
    Scoping {
        groups: parse_groups(&config.text("device_groups")),
        excluded_groups: parse_groups(&config.text("exclude_device_groups")),
        min_score,
        min_score_by_group,
        attribute_tags: AttributeTags {
            exposure_level: config.boolean("tag_exposure_level"),
            risk_score: config.boolean("tag_risk_score"),
            health_status: config.boolean("tag_health_status"),
            onboarding_status: config.boolean("tag_onboarding_status"),
            agent_version: config.boolean("tag_agent_version"),
        },
    }
}

/// `8-4-4-4-12` hex digits.
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The host name of a base URL (`https://host:port` gives `host`).
pub fn host_name(base: &str) -> &str {
    let rest = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    match rest.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => rest,
    }
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
        return Err(format!("expected a host name or an http(s) URL, got scheme `{scheme}`"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "expected a host name such as {DEFAULT_API_HOST} or a URL such as http://127.0.0.1:8080 without a path, got `{value}`"
        ));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// Valid settings with the given fields set, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn for_tests(fields: &[(&str, &str)]) -> Settings {
    let mut settings = vec![
        Setting { key: "client_id".into(), value: "11111111-2222-3333-4444-555555555555".into() },
        Setting { key: "client_secret".into(), value: "x".into() },
        Setting { key: "tenant_id".into(), value: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into() },
    ];
    settings.extend(fields.iter().map(|(key, value)| Setting { key: (*key).into(), value: (*value).into() }));
    parse(&settings).expect("valid test settings")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(key: &str, value: &str) -> Setting {
        Setting { key: key.into(), value: value.into() }
    }

    fn valid() -> Vec<Setting> {
        vec![
            setting("client_id", "11111111-2222-3333-4444-555555555555"),
            setting("client_secret", "s3cret"),
            setting("tenant_id", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
        ]
    }

    fn with(extra: &[(&str, &str)]) -> Vec<Setting> {
        let mut s = valid();
        s.extend(extra.iter().map(|(k, v)| setting(k, v)));
        s
    }

    #[test]
    fn defaults_apply() {
        let s = parse(&valid()).unwrap();
        assert_eq!(s.name, "MS Defender TVM");
        assert_eq!(s.api_base, "https://api.securitycenter.microsoft.com");
        assert_eq!(s.login_base, "https://login.microsoftonline.com");
        assert!(s.login_derived);
        assert_eq!((s.cloud, s.cloud_source), (Cloud::Commercial, "from the API host"));
        assert_eq!(s.scope, "https://api.securitycenter.microsoft.com/.default");
        assert_eq!(s.resource(), "https://api.securitycenter.microsoft.com");
        assert_eq!((s.page_size, s.machines_page_size), (50_000, 10_000));
        assert_eq!((s.token_endpoint, s.api_mode), (TokenEndpoint::V2, ApiMode::Auto));
        assert_eq!(s.page_timeout, Duration::from_secs(600));
        assert_eq!(s.pacer, Pacer::parse(pacing::DEFAULT_LIMITS).unwrap());
        assert_eq!((s.storage_host.as_str(), s.storage_derived), ("*.blob.core.windows.net", true));
        assert_eq!(s.api_bases[0], "https://api.securitycenter.microsoft.com");
        assert!(s.api_bases.contains(&"https://aea.api.security.microsoft.com".to_owned()));
        assert!(!s.api_bases.iter().any(|b| b.ends_with(".us")), "no host of another cloud");
    }

    #[test]
    fn government_hosts_follow_their_cloud() {
        let gov = parse(&with(&[("host", "api-gov.securitycenter.microsoft.us")])).unwrap();
        assert_eq!(gov.cloud, Cloud::GccHigh);
        assert_eq!(gov.login_base, "https://login.microsoftonline.us");
        assert_eq!(gov.scope, "https://api-gov.securitycenter.microsoft.us/.default");
        assert_eq!(gov.storage_host, "*.blob.core.usgovcloudapi.net");
        assert_eq!(gov.api_bases, ["https://api-gov.securitycenter.microsoft.us"]);
        let dod = parse(&with(&[("host", "api-gov.securitycenter.microsoft.us"), ("cloud", "dod")])).unwrap();
        assert_eq!(dod.cloud, Cloud::Dod);
        let gcc = parse(&with(&[("host", "api-gcc.securitycenter.microsoft.us")])).unwrap();
        assert_eq!((gcc.cloud, gcc.login_base.as_str()), (Cloud::Gcc, "https://login.microsoftonline.com"));
        assert_eq!(gcc.storage_host, "*.blob.core.windows.net");
        let local = parse(&with(&[("host", "http://127.0.0.1:9000"), ("cloud", "gcc-high")])).unwrap();
        assert_eq!(local.api_bases, ["http://127.0.0.1:9000"], "an undocumented host stands alone");
        let mismatch =
            parse(&with(&[("host", "api-gov.securitycenter.microsoft.us"), ("cloud", "commercial")])).unwrap_err();
        assert_eq!(mismatch[0].key, "cloud");
        let explicit = parse(&with(&[
            ("host", "api-gov.securitycenter.microsoft.us"),
            ("login_host", "https://login.example.us"),
            ("scope", "https://x/.default"),
        ]))
        .unwrap();
        assert_eq!(
            (explicit.login_base.as_str(), explicit.login_derived, explicit.scope.as_str()),
            ("https://login.example.us", false, "https://x/.default")
        );
    }

    #[test]
    fn hosts_accept_bare_names_and_urls() {
        assert_eq!(base_url("eu.api.security.microsoft.com").unwrap(), "https://eu.api.security.microsoft.com");
        assert_eq!(base_url("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("https://host/api").is_err());
        assert_eq!(host_name("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("https://api.x.com"), "api.x.com");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let errors = parse(&[
            setting("client_id", "nope"),
            setting("host", "https://h/x"),
            setting("page_size", "0"),
            setting("colour", "red"),
            setting("api_mode", "fast"),
            setting("rate_limits", "machines=1/fortnight"),
        ])
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["colour", "client_id", "tenant_id", "client_secret", "host", "api_mode", "page_size", "rate_limits"]
        );
        assert!(errors[1].message.contains("expected a GUID"));
    }

    #[test]
    fn field_table_matches_the_spec() {
        let f = fields();
        let required: Vec<&str> = f.iter().filter(|f| f.required).map(|f| f.key.as_str()).collect();
        assert_eq!(required, ["name", "client_id", "client_secret", "host", "tenant_id"]);
        assert!(matches!(f.iter().find(|f| f.key == "client_secret").unwrap().kind, FieldKind::Secret));
        assert_eq!(f.iter().find(|f| f.key == "host").unwrap().default_value.as_deref(), Some(DEFAULT_API_HOST));
        // Every default parses.
        let defaults: Vec<Setting> =
            f.iter().filter_map(|f| f.default_value.as_ref().map(|d| setting(&f.key, d))).collect();
        let mut all = valid();
        all.extend(defaults);
        assert!(parse(&all).is_ok());
    }
}
