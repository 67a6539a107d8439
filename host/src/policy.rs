//! Which origins a run may reach over HTTP.
//!
//! The allowed set is derived from the plugin's configured values of kind `host`
//! (a bare host name means HTTPS on port 443; a URL keeps its scheme and port).
//! HTTPS only; plain HTTP only to loopback addresses, and only when the operator
//! passes `--allow-insecure-loopback`. Every request is checked, and since the host
//! never follows redirects, every hop is a request the plugin makes and is checked.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::net::IpAddr;
use url::Url;

/// A scheme, host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl Origin {
    /// The origin of a URL.
    pub fn of(url: &Url) -> Result<Origin> {
        let host = url.host_str().context("the URL has no host")?.to_ascii_lowercase();
        let port = url.port_or_known_default().context("the URL has no port and no default one")?;
        Ok(Origin { scheme: url.scheme().to_owned(), host, port })
    }

    /// Parses a configured value: `host`, `host:port` or `scheme://host[:port][/]`.
    /// The host may start with `*.` to match any subdomain (not the domain itself).
    pub fn parse_config_value(value: &str) -> Result<Origin> {
        let value = value.trim();
        let (scheme, rest) = match value.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("https", value),
        };
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let url = Url::parse(&format!("{scheme}://{rest}"))
            .with_context(|| format!("`{value}` is not a host name or URL"))?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            bail!("`{value}` has a path or query; give only the scheme, host and port");
        }
        if !url.username().is_empty() || url.password().is_some() {
            bail!("`{value}` carries credentials; put them in their own fields");
        }
        let mut origin = Origin::of(&url)?;
        if wildcard {
            if origin.host.parse::<IpAddr>().is_ok() || !origin.host.contains('.') {
                bail!("`{value}`: a wildcard needs a domain with at least two labels after `*.`");
            }
            origin.host = format!("*.{}", origin.host);
        }
        Ok(origin)
    }

    /// Whether this origin (possibly a `*.` pattern) admits `other`.
    pub fn admits(&self, other: &Origin) -> bool {
        if self.scheme != other.scheme || self.port != other.port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(domain) => {
                other.host.len() > domain.len() + 1
                    && other.host.ends_with(domain)
                    && other.host.as_bytes()[other.host.len() - domain.len() - 1] == b'.'
            }
            None => self.host == other.host,
        }
    }

    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// The network rules of one run.
#[derive(Clone, Debug, Default)]
pub struct NetworkPolicy {
    allowed: Vec<Origin>,
    allow_insecure_loopback: bool,
}

impl NetworkPolicy {
    /// No network at all (used to read a plugin's info).
    pub fn deny_all() -> Self {
        NetworkPolicy::default()
    }

    /// Builds the policy from `(field key, value)` pairs of kind `host`.
    pub fn from_host_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        allow_insecure_loopback: bool,
    ) -> Result<Self> {
        let mut policy = NetworkPolicy { allowed: Vec::new(), allow_insecure_loopback };
        for (key, value) in fields {
            policy.allow(value).with_context(|| format!("field `{key}`"))?;
        }
        Ok(policy)
    }

    /// Adds an origin (a configured value, or one the plugin declared at configure),
    /// under the same scheme rules.
    pub fn allow(&mut self, value: &str) -> Result<()> {
        let origin = Origin::parse_config_value(value)?;
        self.check_scheme(&origin)?;
        if !self.allowed.contains(&origin) {
            self.allowed.push(origin);
        }
        Ok(())
    }

    fn check_scheme(&self, origin: &Origin) -> Result<()> {
        match origin.scheme.as_str() {
            "https" => Ok(()),
            "http" if origin.is_loopback() && self.allow_insecure_loopback => Ok(()),
            "http" if origin.is_loopback() => {
                bail!("plain http to {origin} needs --allow-insecure-loopback")
            }
            "http" => bail!("plain http is refused for {origin}; use https (plain http is allowed only to loopback)"),
            other => bail!("scheme `{other}` is not supported; use https"),
        }
    }

    /// The allowed origins, for messages.
    pub fn allowed(&self) -> &[Origin] {
        &self.allowed
    }

    /// Whether a request to `url` may be sent; the error says why not and what
    /// would allow it.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        let origin = Origin::of(url).map_err(|e| format!("{url}: {e}"))?;
        self.check_scheme(&origin).map_err(|e| e.to_string())?;
        if self.allowed.iter().any(|allowed| allowed.admits(&origin)) {
            return Ok(());
        }
        let allowed: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
        Err(format!(
            "{origin} is not allowed for this run (allowed: {}); to reach it, set it as the value of one of the plugin's host fields",
            if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn bare_hosts_mean_https_443() {
        let p = NetworkPolicy::from_host_fields([("host", "api.securitycenter.microsoft.com")], false).unwrap();
        assert!(p.check(&url("https://api.securitycenter.microsoft.com/api/machines")).is_ok());
        assert!(p.check(&url("https://API.securitycenter.microsoft.com:443/x")).is_ok());
        assert!(p.check(&url("https://api.securitycenter.microsoft.com:8443/x")).is_err());
        assert!(p.check(&url("http://api.securitycenter.microsoft.com/x")).is_err());
        let denied = p.check(&url("https://evil.example/x")).unwrap_err();
        assert!(denied.contains("https://evil.example:443 is not allowed"), "{denied}");
        assert!(denied.contains("https://api.securitycenter.microsoft.com:443"), "{denied}");
    }

    #[test]
    fn plain_http_only_to_loopback_with_the_flag() {
        assert!(NetworkPolicy::from_host_fields([("host", "http://127.0.0.1:8080")], false)
            .unwrap_err()
            .chain()
            .any(|e| e.to_string().contains("--allow-insecure-loopback")));
        assert!(NetworkPolicy::from_host_fields([("host", "http://example.com")], true).is_err());
        let p = NetworkPolicy::from_host_fields([("host", "http://127.0.0.1:8080")], true).unwrap();
        assert!(p.check(&url("http://127.0.0.1:8080/api")).is_ok());
        assert!(p.check(&url("http://127.0.0.1:8081/api")).is_err());
        assert!(p.check(&url("http://127.0.0.2:8080/api")).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_field_name() {
        let err = NetworkPolicy::from_host_fields([("login_host", "https://h/path")], false).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "field `login_host`: `https://h/path` has a path or query; give only the scheme, host and port"
        );
        assert!(NetworkPolicy::from_host_fields([("host", "ftp://h")], false).is_err());
        assert!(NetworkPolicy::from_host_fields([("host", "https://u:p@h")], false).is_err());
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = NetworkPolicy::from_host_fields([("storage_host", "*.blob.core.windows.net")], false).unwrap();
        assert!(p.check(&url("https://tvmexportstrstgeus.blob.core.windows.net/tvm-export/x.json.gz?sig=1")).is_ok());
        assert!(p.check(&url("https://a.b.blob.core.windows.net/x")).is_ok());
        assert!(p.check(&url("https://blob.core.windows.net/x")).is_err());
        assert!(p.check(&url("https://evilblob.core.windows.net/x")).is_err());
        assert!(p.check(&url("https://x.blob.core.windows.net.evil.com/x")).is_err());
        assert!(p.check(&url("http://x.blob.core.windows.net/x")).is_err());
        assert!(NetworkPolicy::from_host_fields([("h", "*.com")], false).is_err());
        assert!(NetworkPolicy::from_host_fields([("h", "*.10.0.0.1")], false).is_err());
    }

    #[test]
    fn declared_origins_follow_the_same_rules() {
        let mut p = NetworkPolicy::from_host_fields([("host", "api.example.com")], false).unwrap();
        p.allow("https://login.microsoftonline.us").unwrap();
        assert!(p.check(&url("https://login.microsoftonline.us/t/oauth2/v2.0/token")).is_ok());
        assert!(p.allow("http://login.example.com").is_err());
    }

    #[test]
    fn deny_all_denies() {
        assert!(NetworkPolicy::deny_all().check(&url("https://a.b/")).unwrap_err().contains("allowed: none"));
    }
}
