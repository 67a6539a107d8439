//! Which origins a run may reach over HTTP: two gates.
//!
//! 1. The plugin declares what it needs: its configured values of kind `host` (a bare
//!    host name means HTTPS on port 443; a URL keeps its scheme and port; `*.` matches
//!    subdomains) and the origins it derives from its configuration at `configure`.
//! 2. The operator's `[network]` table may extend that set (`allow`) or narrow it
//!    (`only`: a request must also match one of these).
//!
//! HTTPS only; plain HTTP only to loopback addresses, and only when the operator
//! passes `--allow-insecure-loopback`. Every request is checked, and since the host
//! never follows redirects, every hop is a request the plugin makes and is checked.
//! Private, link-local and other non-public addresses are refused, as literals here
//! and after DNS in [`GuardedResolver`], unless `[network] allow_private_ips = true`
//! (loopback also with `--allow-insecure-loopback`).

use anyhow::{bail, Context, Result};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use url::Url;

/// The operator's gate: `[network]` in the configuration file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperatorGrants {
    /// Origins allowed beyond what the plugin declares.
    pub(crate) allow: Vec<String>,
    /// When not empty, a request must also match one of these.
    pub(crate) only: Vec<String>,
    /// Allow private, link-local and other non-public addresses.
    pub allow_private_ips: bool,
    /// An HTTP(S) proxy every plugin request goes through, when the operator's
    /// network needs one (environment proxies are never used).
    pub proxy: Option<String>,
}

impl OperatorGrants {
    /// Reads `[network]`: `allow` and `only` (lists of origins), `allow_private_ips`
    /// and `proxy`.
    pub(crate) fn from_table(table: &toml::Table) -> Result<OperatorGrants> {
        let (network, problems) = crate::config::table::read::<NetworkTable>(table, |key, keys| {
            format!("has no key `{key}` (keys: {})", keys.join(", "))
        });
        if let Some(problem) = problems.first() {
            bail!("[network] {problem}");
        }
        for (key, list) in [("allow", &network.allow), ("only", &network.only)] {
            for (i, text) in list.iter().enumerate() {
                Origin::parse_config_value(text).with_context(|| format!("[network] {key}[{i}]"))?;
            }
        }
        if let Some(url) = &network.proxy {
            let parsed = Url::parse(url).with_context(|| format!("[network] proxy `{url}` is not a URL"))?;
            if !["http", "https"].contains(&parsed.scheme()) || parsed.host_str().is_none() {
                bail!("[network] proxy must be an http:// or https:// URL with a host, such as \"http://proxy.corp.example:3128\"");
            }
        }
        Ok(OperatorGrants {
            allow: network.allow,
            only: network.only,
            allow_private_ips: network.allow_private_ips,
            proxy: network.proxy,
        })
    }
}

/// The `[network]` table as written, read with serde.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NetworkTable {
    #[serde(default, deserialize_with = "allow_list")]
    allow: Vec<String>,
    #[serde(default, deserialize_with = "only_list")]
    only: Vec<String>,
    #[serde(default)]
    allow_private_ips: bool,
    #[serde(default)]
    proxy: Option<String>,
}

fn allow_list<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    d.deserialize_any(Origins("allow"))
}

fn only_list<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    d.deserialize_any(Origins("only"))
}

/// A list of origins, with errors that say what to write.
struct Origins(&'static str);

impl<'de> serde::de::Visitor<'de> for Origins {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of origins, e.g. [\"https://proxy.example.com\"]")
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> std::result::Result<Vec<String>, E> {
        Err(E::custom(format!("{} must be a list of origins, e.g. [\"https://proxy.example.com\"]", self.0)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<String>, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element::<toml::Value>()? {
            match item {
                toml::Value::String(text) => list.push(text),
                _ => return Err(serde::de::Error::custom(format!("{}[{}] must be a string", self.0, list.len()))),
            }
        }
        Ok(list)
    }
}

/// Whether an address may be reached: public addresses always; loopback with
/// `allow_loopback`; private, link-local, shared, unspecified and every other
/// address that is not global only with `allow_private`. An IPv6 address that
/// carries an IPv4 one (mapped, IPv4-compatible, NAT64, 6to4) is judged by it.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool, allow_private: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback || allow_private;
    }
    let non_public = match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0.0/24
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return address_allowed(IpAddr::V4(v4), allow_loopback, allow_private);
            }
            let first = v6.segments()[0];
            v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || (first & 0xe000) != 0x2000 // outside global unicast 2000::/3
        }
    };
    !non_public || allow_private
}

/// The IPv4 address an IPv6 one carries, if it carries one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`,
/// `64:ff9b:1::/48`) and 6to4 (`2002::/16`).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let from = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(from(hi, lo)), // IPv4-compatible
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(from(hi, lo)),    // NAT64, well-known prefix
        [0x64, 0xff9b, 1, ..] => Some(from(s[6], s[7])),             // NAT64, local-use prefix
        [0x2002, hi, lo, ..] => Some(from(hi, lo)),                  // 6to4
        _ => None,
    }
}

/// A host name that resolves only to addresses the policy refuses.
#[derive(Debug)]
pub(crate) struct NonPublicAddress {
    pub(crate) host: String,
    pub(crate) addresses: Vec<IpAddr>,
}

impl fmt::Display for NonPublicAddress {
    /// What the plugin is told: that the name is not public, not what it resolved
    /// to (internal addresses are the operator's to see: [`NonPublicAddress::detail`]).
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} resolves only to non-public addresses; set `allow_private_ips = true` in the [network] table to allow them",
            self.host
        )
    }
}

impl NonPublicAddress {
    /// The refusal with the addresses the name resolved to, for the host's log.
    pub(crate) fn detail(&self) -> String {
        let list: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        format!("{self} (it resolved to {})", list.join(", "))
    }
}

impl std::error::Error for NonPublicAddress {}

/// DNS resolution that drops addresses the policy refuses (after DNS, so a public
/// name that points at an internal address is caught too).
pub struct GuardedResolver {
    pub allow_loopback: bool,
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (allow_loopback, allow_private) = (self.allow_loopback, self.allow_private);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|a| address_allowed(a.ip(), allow_loopback, allow_private)).collect();
            if allowed.is_empty() {
                let addresses = found.iter().map(|a| a.ip()).collect();
                return Err(Box::new(NonPublicAddress { host, addresses }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

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
    pub(crate) fn of(url: &Url) -> Result<Origin> {
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
    pub(crate) fn admits(&self, other: &Origin) -> bool {
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

    pub(crate) fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// The network rules of one run.
#[derive(Clone, Debug, Default)]
pub struct NetworkPolicy {
    /// What the plugin declared (its egress, as its `configure` narrowed it).
    allowed: Vec<Origin>,
    /// What the operator added (`[network] allow`).
    granted: Vec<Origin>,
    /// The operator's narrowing; empty means none.
    only: Vec<Origin>,
    allow_insecure_loopback: bool,
    allow_private_ips: bool,
    proxy: Option<String>,
}

impl NetworkPolicy {
    /// Builds the policy from `(field key, value)` pairs of kind `host`.
    pub fn from_host_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        allow_insecure_loopback: bool,
    ) -> Result<Self> {
        let mut policy = NetworkPolicy { allow_insecure_loopback, ..Default::default() };
        for (key, value) in fields {
            policy.allow(value).with_context(|| format!("field `{key}`"))?;
        }
        Ok(policy)
    }

    /// The plugin's declared origins, filled in, under the scheme rules.
    pub(crate) fn from_origins<'a>(
        origins: impl IntoIterator<Item = &'a Origin>,
        allow_insecure_loopback: bool,
    ) -> Result<Self> {
        let mut policy = NetworkPolicy { allow_insecure_loopback, ..Default::default() };
        for origin in origins {
            policy.check_scheme(origin)?;
            if !policy.allowed.contains(origin) {
                policy.allowed.push(origin.clone());
            }
        }
        Ok(policy)
    }

    /// Adds an origin (a configured value, or one a contract 0.2 plugin derived at
    /// configure), under the same scheme rules.
    pub(crate) fn allow(&mut self, value: &str) -> Result<()> {
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

    /// Keeps of the plugin's declared origins only those in `keep`, each of which a
    /// declared origin must cover: a plugin's `configure` can narrow its egress,
    /// never widen it. The operator's grants stay.
    pub(crate) fn narrow(&mut self, keep: &[String]) -> Result<()> {
        let mut narrowed = Vec::new();
        for value in keep {
            let origin = Origin::parse_config_value(value)?;
            let covered = self.allowed.iter().any(|declared| *declared == origin || declared.admits(&origin));
            if !covered {
                bail!("`{value}` is not among the origins the plugin declares in its info");
            }
            if !narrowed.contains(&origin) {
                narrowed.push(origin);
            }
        }
        self.allowed = narrowed;
        Ok(())
    }

    /// The origins an instance may reach, for the operator to review: the plugin's
    /// (as narrowed) and the operator's grants, within `only` when it is set.
    pub(crate) fn effective(&self) -> Vec<String> {
        let within_only =
            |o: &&Origin| self.only.is_empty() || self.only.iter().any(|only| only.admits(o) || only == *o);
        self.allowed.iter().chain(&self.granted).filter(within_only).map(ToString::to_string).collect()
    }

    /// Applies the operator's gate: extends with `allow`, narrows with `only`.
    pub(crate) fn apply(&mut self, grants: &OperatorGrants) -> Result<()> {
        for value in &grants.allow {
            let origin = Origin::parse_config_value(value).with_context(|| format!("[network] allow `{value}`"))?;
            self.check_scheme(&origin).with_context(|| format!("[network] allow `{value}`"))?;
            if !self.granted.contains(&origin) {
                self.granted.push(origin);
            }
        }
        for value in &grants.only {
            self.only.push(Origin::parse_config_value(value).with_context(|| format!("[network] only `{value}`"))?);
        }
        self.allow_private_ips = grants.allow_private_ips;
        self.proxy = grants.proxy.clone();
        Ok(())
    }

    /// The operator's proxy, if the `[network]` table names one.
    pub(crate) fn proxy(&self) -> Option<&str> {
        self.proxy.as_deref()
    }

    /// The resolver that enforces this policy's address rules after DNS.
    pub(crate) fn resolver(&self) -> GuardedResolver {
        GuardedResolver { allow_loopback: self.allow_insecure_loopback, allow_private: self.allow_private_ips }
    }

    /// Whether a request to `url` may be sent; the error says why not and what
    /// would allow it.
    pub(crate) fn check(&self, url: &Url) -> Result<(), String> {
        let origin = Origin::of(url).map_err(|e| format!("{url}: {e}"))?;
        self.check_scheme(&origin).map_err(|e| e.to_string())?;
        let literal = origin.host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        if let Some(ip) = literal {
            if !address_allowed(ip, self.allow_insecure_loopback, self.allow_private_ips) {
                return Err(format!(
                    "{origin} is a non-public address; set `allow_private_ips = true` in the [network] table to allow it"
                ));
            }
        }
        if !self.only.is_empty() && !self.only.iter().any(|o| o.admits(&origin)) {
            let only: Vec<String> = self.only.iter().map(ToString::to_string).collect();
            return Err(format!(
                "{origin} is outside the [network] `only` list ({}); to allow it, add \"{origin}\" to `only`",
                only.join(", ")
            ));
        }
        if self.allowed.iter().chain(&self.granted).any(|allowed| allowed.admits(&origin)) {
            return Ok(());
        }
        let allowed: Vec<String> = self.allowed.iter().chain(&self.granted).map(ToString::to_string).collect();
        Err(format!(
            "{origin} is not allowed for this run (allowed: {}); to allow it, add \"{origin}\" to `allow` in the [network] table of the configuration",
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
    fn addresses_that_carry_a_non_public_ipv4_or_are_not_global_are_refused() {
        let refused = |text: &str| !address_allowed(text.parse().unwrap(), false, false);
        for address in [
            "64:ff9b::a00:1",       // NAT64 of 10.0.0.1
            "64:ff9b:1::a9fe:a9fe", // local-use NAT64 of 169.254.169.254
            "::10.0.0.1",           // IPv4-compatible
            "2002:a00:1::1",        // 6to4 of 10.0.0.1
            "fec0::1",              // site-local
            "192.0.0.8",            // IETF assignments
            "2001:db8::1",          // documentation
            "100::1",               // discard-only, outside 2000::/3
            "::ffff:127.0.0.1",
        ] {
            assert!(refused(address), "{address} must be refused");
        }
        for address in ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111", "8.8.8.8"] {
            assert!(!refused(address), "{address} is public");
        }
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
    fn the_operator_extends_and_narrows() {
        let table: toml::Table = "allow = [\"https://proxy.example.com:8443\"]\nonly = [\"https://api.example.com\", \"https://proxy.example.com:8443\"]".parse().unwrap();
        let grants = OperatorGrants::from_table(&table).unwrap();
        let mut p =
            NetworkPolicy::from_host_fields([("host", "api.example.com"), ("login_host", "login.example.com")], false)
                .unwrap();
        p.apply(&grants).unwrap();
        assert!(p.check(&url("https://api.example.com/x")).is_ok());
        assert!(p.check(&url("https://proxy.example.com:8443/x")).is_ok(), "extended");
        let narrowed = p.check(&url("https://login.example.com/x")).unwrap_err();
        assert!(narrowed.contains("outside the [network] `only` list"), "{narrowed}");
        let denied = NetworkPolicy::from_host_fields([("host", "api.example.com")], false)
            .unwrap()
            .check(&url("https://evil.example/x"))
            .unwrap_err();
        assert!(denied.contains("add \"https://evil.example:443\" to `allow` in the [network] table"), "{denied}");
    }

    #[test]
    fn bad_network_entries_are_precise() {
        let bad = |text: &str| format!("{:#}", OperatorGrants::from_table(&text.parse().unwrap()).unwrap_err());
        assert!(bad("allow = [\"https://h/path\"]").contains("[network] allow[0]: `https://h/path` has a path"));
        assert!(bad("allow = \"https://h\"").contains("must be a list"));
        assert!(bad("allow = [3]").contains("allow[0] must be a string"));
        assert!(bad("deny = []").contains("no key `deny`"));
        assert!(bad("proxy = \"socks5://p:1080\"").contains("must be an http:// or https:// URL"));
        assert!(
            bad("allow_private_ips = 3").contains("`allow_private_ips`: invalid type: integer `3`, expected a boolean")
        );
        let grants =
            OperatorGrants::from_table(&"proxy = \"http://proxy.corp.example:3128\"".parse().unwrap()).unwrap();
        let mut policy = NetworkPolicy::default();
        policy.apply(&grants).unwrap();
        assert_eq!(policy.proxy(), Some("http://proxy.corp.example:3128"));
    }

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!address_allowed(ip(private), true, false), "{private}");
            assert!(address_allowed(ip(private), false, true), "{private} with allow_private_ips");
        }
        assert!(!address_allowed(ip("127.0.0.1"), false, false));
        assert!(address_allowed(ip("127.0.0.1"), true, false));
        assert!(address_allowed(ip("20.190.160.1"), false, false));
        let p = NetworkPolicy::from_host_fields([("host", "https://169.254.169.254")], false).unwrap();
        assert!(p.check(&url("https://169.254.169.254/latest/meta-data")).unwrap_err().contains("non-public address"));
    }

    #[test]
    fn deny_all_denies() {
        assert!(NetworkPolicy::default().check(&url("https://a.b/")).unwrap_err().contains("allowed: none"));
    }
}
