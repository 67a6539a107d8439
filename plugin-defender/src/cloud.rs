//! Which Microsoft cloud an API host belongs to, and what follows from it: the
//! sign-in host and the token audience (docs/defender-api.md §3.3, §4).
//!
//! Government scopes are not documented by Microsoft; the values here are the ones
//! integrators use, and the `scope` field overrides them.

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

    /// The token scope (v2) of the cloud; the v1 `resource` is the same without `/.default`.
    pub fn scope(self) -> &'static str {
        match self {
            Cloud::Commercial => "https://api.securitycenter.microsoft.com/.default",
            Cloud::Gcc => "https://api-gcc.securitycenter.microsoft.us/.default",
            Cloud::GccHigh | Cloud::Dod => "https://api-gov.securitycenter.microsoft.us/.default",
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

/// Documented commercial API hosts: global, legacy and regional.
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
}
