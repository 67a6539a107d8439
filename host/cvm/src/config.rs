//! The `[cvm]` table of a configuration file.
//!
//! ```toml
//! [cvm]
//! api_host = "api.kennasecurity.com"        # or api.eu.kennasecurity.com, ... or a URL
//! api_key = { env = "CVM_API_KEY" }          # sent only as X-Risk-Token, never printed
//! connector_id = 123456
//! ```

use anyhow::{anyhow, bail, Result};
use connector_runtime::policy::{NetworkPolicy, Origin};
use std::collections::BTreeMap;
use std::time::Duration;

/// CVM's global API host.
pub(crate) const DEFAULT_API_HOST: &str = "api.kennasecurity.com";
/// How long a CVM run is awaited unless `run_deadline_minutes` says otherwise.
pub const DEFAULT_RUN_DEADLINE_MINUTES: u64 = 120;

/// Where and how to deliver.
#[derive(Clone)]
pub struct CvmConfig {
    /// `https://api.kennasecurity.com` (or a loopback URL in tests).
    pub base_url: String,
    /// The API key, sent only as `X-Risk-Token`.
    pub(crate) api_key: String,
    /// The file-based connector the files go to.
    pub connector_id: u64,
    /// Between two status polls of a running connector (the toolkit uses 20 s).
    pub(crate) poll_interval: Duration,
    /// How long a connector run may take before the host gives up waiting.
    pub(crate) run_deadline: Duration,
    /// Retries of an upload or a read that failed transiently.
    pub(crate) max_retries: u32,
    /// The first retry's delay; each later one waits twice as long.
    pub(crate) retry_delay: Duration,
    /// Files set `reset_tags`: CVM replaces each sent asset's tags with the file's
    /// instead of adding them. Off by default, because CVM then also removes tags
    /// that other connectors or people put on the asset.
    pub reset_tags: bool,
    /// The address rules and proxy of requests to CVM: the same as a plugin's.
    pub(crate) network: CvmNetwork,
}

/// Where the CVM client may connect: as plugin requests, no proxy from the
/// environment (only the operator's `[network] proxy`), and no non-public address
/// unless allowed (loopback with `--allow-insecure-loopback`, private addresses with
/// `[network] allow_private_ips`), checked after DNS too.
#[derive(Clone, Debug, Default)]
pub(crate) struct CvmNetwork {
    /// Loopback addresses allowed (`--allow-insecure-loopback`: simulators, tests).
    pub(crate) allow_loopback: bool,
    /// Private and other non-public addresses allowed (`[network] allow_private_ips`).
    pub(crate) allow_private_ips: bool,
    /// The operator's proxy (`[network] proxy`).
    pub(crate) proxy: Option<String>,
}

impl CvmConfig {
    /// Applies the operator's `[network]` grants (proxy, private addresses).
    pub fn with_grants(mut self, grants: &connector_runtime::policy::OperatorGrants) -> Self {
        self.network.allow_private_ips = grants.allow_private_ips;
        self.network.proxy = grants.proxy.clone();
        self
    }
}

impl std::fmt::Debug for CvmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("CvmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[REDACTED]")
            .field("connector_id", &self.connector_id)
            .finish()
    }
}

/// One key of the `[cvm]` table, as a form shows it: the service serves these to the
/// console (`GET /api/cvm`), so the table's keys are written down here only.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CvmField {
    /// The key (`api_host`).
    pub(crate) key: &'static str,
    /// What a form calls it.
    pub(crate) label: &'static str,
    /// `host`, `secret`, `integer`, `boolean`: as a plugin's fields.
    pub(crate) kind: &'static str,
    /// The value used when none is given.
    pub(crate) default: Option<&'static str>,
    /// What to enter.
    pub(crate) help: &'static str,
    /// Rarely changed: a form may keep it out of sight.
    pub(crate) advanced: bool,
}

/// Every key of the `[cvm]` table (a test keeps the list and the table alike).
pub const FIELDS: [CvmField; 8] = [
    CvmField {
        key: "api_host",
        label: "CVM API host",
        kind: "host",
        default: Some(DEFAULT_API_HOST),
        help: "Your CVM API host (api.kennasecurity.com, api.eu.kennasecurity.com, …).",
        advanced: false,
    },
    CvmField {
        key: "api_key",
        label: "CVM API key",
        kind: "secret",
        default: None,
        help: "A CVM API key (Settings > API Keys); sent only to the CVM API host.",
        advanced: false,
    },
    CvmField {
        key: "connector_id",
        label: "CVM connector ID",
        kind: "integer",
        default: None,
        help: "The id of the file-based connector in CVM that receives the files.",
        advanced: false,
    },
    CvmField {
        key: "poll_interval_ms",
        label: "Status poll interval (ms)",
        kind: "integer",
        default: Some("20000"),
        help: "How often the status of the CVM connector run is read.",
        advanced: true,
    },
    CvmField {
        key: "run_deadline_minutes",
        label: "Run deadline (minutes)",
        kind: "integer",
        default: Some("120"),
        help: "How long the CVM connector run is awaited before the delivery gives up waiting.",
        advanced: true,
    },
    CvmField {
        key: "max_retries",
        label: "Retries",
        kind: "integer",
        default: Some("5"),
        help: "Retries of an upload or a read that failed transiently.",
        advanced: true,
    },
    CvmField {
        key: "retry_delay_ms",
        label: "First retry delay (ms)",
        kind: "integer",
        default: Some("1000"),
        help: "The first retry's delay; each later one waits twice as long.",
        advanced: true,
    },
    CvmField {
        key: "reset_tags",
        label: "Reset tags",
        kind: "boolean",
        default: Some("false"),
        help: "CVM replaces each sent asset's tags with the file's, also removing tags others set.",
        advanced: true,
    },
];

/// The `[cvm]` table as written (values already read from their references), read
/// with serde; [`CvmConfig::from_values`] checks it into a [`CvmConfig`].
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CvmTable {
    api_host: Option<String>,
    api_key: Option<String>,
    connector_id: Option<String>,
    poll_interval_ms: Option<String>,
    run_deadline_minutes: Option<String>,
    max_retries: Option<String>,
    retry_delay_ms: Option<String>,
    reset_tags: Option<String>,
}

impl CvmConfig {
    /// Checks the `[cvm]` values (already read from the environment where asked).
    pub fn from_values(values: &BTreeMap<String, String>, allow_insecure_loopback: bool) -> Result<CvmConfig> {
        let written: toml::Table = values.iter().map(|(k, v)| (k.clone(), toml::Value::String(v.clone()))).collect();
        let (table, mut problems) = connector_runtime::config::table::read::<CvmTable>(&written, |key, keys| {
            format!("`{key}` is not a [cvm] key (keys: {})", keys.join(", "))
        });
        // A blank value counts as none.
        let given =
            |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let host = given(&table.api_host).unwrap_or_else(|| DEFAULT_API_HOST.to_owned());
        let base_url = match Origin::parse_config_value(&host).and_then(|origin| {
            NetworkPolicy::from_host_fields([("api_host", host.as_str())], allow_insecure_loopback)?;
            Ok(origin)
        }) {
            Ok(o) if o.host.starts_with("*.") => {
                problems.push(format!("`api_host`: `{host}` is a pattern, not a host"));
                String::new()
            }
            Ok(o) => match (o.scheme.as_str(), o.port) {
                ("https", 443) | ("http", 80) => format!("{}://{}", o.scheme, o.host),
                _ => format!("{}://{}:{}", o.scheme, o.host, o.port),
            },
            Err(e) => {
                problems.push(format!("`api_host`: {e:#}"));
                String::new()
            }
        };
        let api_key = given(&table.api_key).unwrap_or_default();
        if api_key.is_empty() {
            problems.push("`api_key` is required: a CVM API key (Settings > API Keys), sent as X-Risk-Token".into());
        }
        let mut number = |key: &str, value: &Option<String>, default: Option<u64>| -> u64 {
            match (given(value), default) {
                (None, Some(d)) => d,
                (None, None) => {
                    problems.push(format!("`{key}` is required"));
                    0
                }
                (Some(v), _) => v.parse().unwrap_or_else(|_| {
                    problems.push(format!("`{key}`: expected a whole number, got `{v}`"));
                    0
                }),
            }
        };
        let connector_id = number("connector_id", &table.connector_id, None);
        let poll_interval = Duration::from_millis(number("poll_interval_ms", &table.poll_interval_ms, Some(20_000)));
        let run_deadline = Duration::from_secs(
            60 * number("run_deadline_minutes", &table.run_deadline_minutes, Some(DEFAULT_RUN_DEADLINE_MINUTES)),
        );
        let max_retries = number("max_retries", &table.max_retries, Some(5)) as u32;
        let retry_delay = Duration::from_millis(number("retry_delay_ms", &table.retry_delay_ms, Some(1_000)));
        let reset_tags = flag("reset_tags", table.reset_tags.as_deref()).unwrap_or_else(|e| {
            problems.push(e.to_string());
            false
        });
        if !problems.is_empty() {
            bail!("[cvm]: {}", problems.join("; "));
        }
        Ok(CvmConfig {
            base_url,
            api_key,
            connector_id,
            poll_interval,
            run_deadline,
            max_retries,
            retry_delay,
            reset_tags,
            network: CvmNetwork { allow_loopback: allow_insecure_loopback, ..CvmNetwork::default() },
        })
    }

    /// The state key of this connector instance, safe as a directory name.
    pub(crate) fn instance_key(&self) -> String {
        let host = self.base_url.split_once("://").map(|(_, h)| h).unwrap_or(&self.base_url);
        let safe: String =
            host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        format!("{safe}-connector-{}", self.connector_id)
    }
}

/// `reset_tags` of a `[cvm]` table: off unless `true`.
pub fn reset_tags(values: &BTreeMap<String, String>) -> Result<bool> {
    flag("reset_tags", values.get("reset_tags").map(String::as_str))
}

fn flag(key: &str, value: Option<&str>) -> Result<bool> {
    match value.map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => bail!("`{key}`: expected true or false, got `{other}`"),
    }
}

/// An error if no `[cvm]` table was given.
pub(crate) fn require(config: Option<&BTreeMap<String, String>>) -> Result<&BTreeMap<String, String>> {
    config
        .ok_or_else(|| anyhow!("--upload needs a [cvm] table with api_key and connector_id in the configuration file"))
}

#[cfg(test)]
mod field_tests {
    #[test]
    fn the_served_fields_are_the_tables_keys() {
        let served: Vec<&str> = super::FIELDS.iter().map(|f| f.key).collect();
        assert_eq!(served, connector_runtime::config::table::fields_of::<super::CvmTable>());
        assert_eq!(super::FIELDS[0].default, Some(super::DEFAULT_API_HOST));
        let deadline = super::DEFAULT_RUN_DEADLINE_MINUTES.to_string();
        assert_eq!(super::FIELDS[4].default, Some(deadline.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_and_regional_hosts() {
        let c = CvmConfig::from_values(&values(&[("api_key", "k"), ("connector_id", "7")]), false).unwrap();
        assert_eq!(c.base_url, "https://api.kennasecurity.com");
        assert_eq!(c.poll_interval, Duration::from_secs(20));
        assert_eq!(c.instance_key(), "api.kennasecurity.com-connector-7");
        let eu = CvmConfig::from_values(
            &values(&[("api_host", "api.eu.kennasecurity.com"), ("api_key", "k"), ("connector_id", "7")]),
            false,
        )
        .unwrap();
        assert_eq!(eu.base_url, "https://api.eu.kennasecurity.com");
        assert!(!format!("{eu:?}").contains("\"k\""), "the key is not in Debug output");
    }

    #[test]
    fn loopback_needs_the_flag_and_problems_are_listed() {
        let local = values(&[("api_host", "http://127.0.0.1:9000"), ("api_key", "k"), ("connector_id", "7")]);
        assert!(CvmConfig::from_values(&local, false).unwrap_err().to_string().contains("--allow-insecure-loopback"));
        assert_eq!(CvmConfig::from_values(&local, true).unwrap().base_url, "http://127.0.0.1:9000");
        let err =
            CvmConfig::from_values(&values(&[("connector_id", "x"), ("apikey", "k")]), false).unwrap_err().to_string();
        assert!(err.contains("`apikey` is not a [cvm] key"), "{err}");
        assert!(err.contains("`api_key` is required"), "{err}");
        assert!(err.contains("`connector_id`: expected a whole number, got `x`"), "{err}");
    }

    #[test]
    fn reset_tags_is_off_unless_asked_for() {
        let base = [("api_key", "k"), ("connector_id", "7")];
        assert!(!CvmConfig::from_values(&values(&base), false).unwrap().reset_tags);
        let on = values(&[base[0], base[1], ("reset_tags", "true")]);
        assert!(CvmConfig::from_values(&on, false).unwrap().reset_tags);
        let bad = values(&[base[0], base[1], ("reset_tags", "yes")]);
        let err = CvmConfig::from_values(&bad, false).unwrap_err().to_string();
        assert!(err.contains("`reset_tags`: expected true or false, got `yes`"), "{err}");
    }
}
