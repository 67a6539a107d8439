//! Which Microsoft cloud an API host belongs to, and what follows from it: the
//! sign-in host, the token audience, the other API hosts a nextLink may lead to,
//! and where export files are stored (docs/defender-api.md, "Clouds and hosts").
//!
//! Government scopes are not documented by Microsoft; the values here are the ones
//! public integrations use, the first of each cloud's list is the default, and the
//! `scope` field overrides them. `verify` tries the others when Azure AD does not
//! know the default.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    Commercial,
    Gcc,
    GccHigh,
    Dod,
}

impl Cloud {
    pub fn parse(text: &str) -> Option<Cloud> {
        match text.trim().to_ascii_lowercase().as_str() {
            "commercial" => Some(Cloud::Commercial),
            "gcc" => Some(Cloud::Gcc),
            "gcc-high" | "gcchigh" | "gcc_high" => Some(Cloud::GccHigh),
            "dod" => Some(Cloud::Dod),
            _ => None,
        }
    }

    /// The Azure AD sign-in host of the cloud.
    pub fn login_host(self) -> &'static str {
        match self {
            Cloud::Commercial | Cloud::Gcc => "login.microsoftonline.com",
            Cloud::GccHigh | Cloud::Dod => "login.microsoftonline.us",
        }
    }

    /// The default token scope (v2) of the cloud; the v1 `resource` is the same
    /// without `/.default`.
    pub fn scope(self) -> &'static str {
        self.scopes()[0]
    }

    /// Every scope known to work in some tenant of the cloud, the default first.
    /// Microsoft documents the commercial ones; the government ones come from
    /// public clients (Microsoft's samples, XSOAR's Microsoft API module).
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Cloud::Commercial => &[
                "https://api.securitycenter.microsoft.com/.default",
                "https://securitycenter.onmicrosoft.com/windowsatpservice/.default",
            ],
            Cloud::Gcc => &[
                "https://api-gcc.securitycenter.microsoft.us/.default",
                "https://securitycenter.onmicrosoft.com/windowsatpservice/.default",
            ],
            Cloud::GccHigh | Cloud::Dod => &[
                "https://api-gov.securitycenter.microsoft.us/.default",
                "https://api.securitycenter.microsoft.us/.default",
                "https://securitycenter.onmicrosoft.us/windowsatpservice/.default",
            ],
        }
    }

    /// The documented API hosts of the cloud: the bearer token may go to these,
    /// and only these (a nextLink can lead from one to another).
    pub fn api_hosts(self) -> &'static [&'static str] {
        match self {
            Cloud::Commercial => COMMERCIAL_HOSTS,
            Cloud::Gcc => &["api-gcc.securitycenter.microsoft.us"],
            Cloud::GccHigh | Cloud::Dod => &["api-gov.securitycenter.microsoft.us"],
        }
    }

    /// Where the export's files are stored: Azure Storage of the cloud (Azure
    /// Government for GCC High and DoD; GCC tenants live in commercial Azure).
    pub fn storage_host(self) -> &'static str {
        match self {
            Cloud::Commercial | Cloud::Gcc => "*.blob.core.windows.net",
            Cloud::GccHigh | Cloud::Dod => "*.blob.core.usgovcloudapi.net",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Cloud::Commercial => "commercial",
            Cloud::Gcc => "GCC",
            Cloud::GccHigh => "GCC High",
            Cloud::Dod => "DoD",
        })
    }
}

/// Documented commercial API hosts: global, regional (Microsoft's current list:
/// us, eu, uk, au, swa, ina, aea), and the older regional names still answered.
pub const COMMERCIAL_HOSTS: &[&str] = &[
    "api.security.microsoft.com",
    "api.securitycenter.microsoft.com",
    "api.securitycenter.windows.com",
    "us.api.security.microsoft.com",
    "eu.api.security.microsoft.com",
    "uk.api.security.microsoft.com",
    "au.api.security.microsoft.com",
    "swa.api.security.microsoft.com",
    "ina.api.security.microsoft.com",
    "aea.api.security.microsoft.com",
    "api-us.securitycenter.microsoft.com",
    "api-eu.securitycenter.microsoft.com",
    "api-uk.securitycenter.microsoft.com",
    "api-au.securitycenter.microsoft.com",
    "api-eu3.securitycenter.microsoft.com",
    "api-us.security.microsoft.com",
    "api-eu.security.microsoft.com",
    "api-uk.security.microsoft.com",
];

/// The cloud of an API host name, if it is a documented one. GCC High and DoD share
/// their API host; it reads as GCC High unless the `cloud` field says DoD.
pub fn of_host(host: &str) -> Option<Cloud> {
    let host = host.to_ascii_lowercase();
    if COMMERCIAL_HOSTS.contains(&host.as_str()) {
        Some(Cloud::Commercial)
    } else if host == "api-gcc.securitycenter.microsoft.us" {
        Some(Cloud::Gcc)
    } else if host == "api-gov.securitycenter.microsoft.us" {
        Some(Cloud::GccHigh)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_their_cloud() {
        assert_eq!(of_host("api.securitycenter.microsoft.com"), Some(Cloud::Commercial));
        assert_eq!(of_host("EU.api.security.microsoft.com"), Some(Cloud::Commercial));
        assert_eq!(of_host("aea.api.security.microsoft.com"), Some(Cloud::Commercial));
        assert_eq!(of_host("api-gcc.securitycenter.microsoft.us"), Some(Cloud::Gcc));
        assert_eq!(of_host("api-gov.securitycenter.microsoft.us"), Some(Cloud::GccHigh));
        assert_eq!(of_host("127.0.0.1"), None);
    }

    #[test]
    fn sign_in_and_scope_follow_the_cloud() {
        assert_eq!(Cloud::Commercial.login_host(), "login.microsoftonline.com");
        assert_eq!(Cloud::Gcc.login_host(), "login.microsoftonline.com");
        assert_eq!(Cloud::GccHigh.login_host(), "login.microsoftonline.us");
        assert_eq!(Cloud::Dod.login_host(), "login.microsoftonline.us");
        assert_eq!(Cloud::Commercial.scope(), "https://api.securitycenter.microsoft.com/.default");
        assert_eq!(Cloud::parse("GCC-High"), Some(Cloud::GccHigh));
        assert_eq!(Cloud::parse("moon"), None);
    }

    #[test]
    fn every_cloud_lists_its_default_scope_first_and_its_storage() {
        for cloud in [Cloud::Commercial, Cloud::Gcc, Cloud::GccHigh, Cloud::Dod] {
            assert_eq!(cloud.scope(), cloud.scopes()[0]);
            assert!(cloud.scopes().iter().all(|s| s.starts_with("https://") && s.ends_with("/.default")));
            assert!(cloud.api_hosts().iter().all(|h| of_host(h).is_some()));
        }
        assert_eq!(Cloud::GccHigh.scopes().len(), 3);
        assert!(Cloud::Gcc.scopes().contains(&"https://securitycenter.onmicrosoft.com/windowsatpservice/.default"));
        assert_eq!(Cloud::Dod.storage_host(), "*.blob.core.usgovcloudapi.net");
        assert_eq!(Cloud::Gcc.storage_host(), "*.blob.core.windows.net");
    }
}
