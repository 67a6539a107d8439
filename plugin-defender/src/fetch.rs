//! Paging through a run: every page of active machines, then every page of
//! vulnerability rows. `fetch` returns one raw page per call; the host maps it.

use crate::api::Api;
use crate::lenient::strip_bom;
use crate::model::PageEnvelope;
use crate::vulnbridge::connector::output;
use crate::vulnbridge::connector::types::{Page, PluginError};
use std::collections::HashSet;

pub const MACHINES: &str = "machines";
pub const VULNERABILITIES: &str = "vulnerabilities";

/// A sanity cap on pages of one kind: 200,000 rows x 100,000 pages is far beyond any
/// tenant, so reaching it means the paging is broken, not that the tenant is large.
const MAX_PAGES: u32 = 100_000;

/// Where a run stands.
pub enum Stage {
    /// Listing active machines with `$top`/`$skip`.
    Machines {
        skip: u64,
        sequence: u32,
    },
    /// Following `@odata.nextLink` through the vulnerability rows.
    Vulnerabilities {
        next: String,
        sequence: u32,
        seen: HashSet<String>,
        rows: u64,
    },
    Done,
}

impl Stage {
    pub fn start() -> Self {
        Stage::Machines {
            skip: 0,
            sequence: 0,
        }
    }
}

/// Fetches the next page and advances the stage.
pub fn next_page(api: &mut Api, stage: &mut Stage) -> Result<Option<Page>, PluginError> {
    match stage {
        Stage::Machines { skip, sequence } => {
            let top = api.settings.machines_page_size;
            let url = machines_url(&api.settings.api_base, top, *skip);
            let body = api.get(&url, "Machine.Read.All")?;
            let count = envelope(&body, "/api/machines", *sequence)?.value as u64;
            let page = Page {
                kind: MACHINES.into(),
                sequence: *sequence,
                body,
            };
            *skip += count;
            output::progress("devices", *skip, None);
            // Offset paging ends at the first short page (nextLink is not reliable here).
            if count < u64::from(top) {
                *stage = Stage::Vulnerabilities {
                    next: vulnerabilities_url(&api.settings.api_base, api.settings.page_size),
                    sequence: 0,
                    seen: HashSet::new(),
                    rows: 0,
                };
            } else if *sequence + 1 >= MAX_PAGES {
                return Err(PluginError::BadResponse(format!(
                    "/api/machines returned more than {MAX_PAGES} full pages"
                )));
            } else {
                *sequence += 1;
            }
            Ok(Some(page))
        }
        Stage::Vulnerabilities {
            next,
            sequence,
            seen,
            rows,
        } => {
            let endpoint = "/api/machines/SoftwareVulnerabilitiesByMachine";
            let body = api.get(next, "Vulnerability.Read.All")?;
            let envelope = envelope(&body, endpoint, *sequence)?;
            let page = Page {
                kind: VULNERABILITIES.into(),
                sequence: *sequence,
                body,
            };
            *rows += envelope.value as u64;
            output::progress("vulnerability rows", *rows, None);
            match envelope.next_link {
                None => *stage = Stage::Done,
                Some(link) => {
                    check_next_link(&api.settings.api_base, &link, seen, *sequence)?;
                    seen.insert(link.clone());
                    *next = link;
                    *sequence += 1;
                }
            }
            Ok(Some(page))
        }
        Stage::Done => Ok(None),
    }
}

fn envelope(body: &[u8], endpoint: &str, sequence: u32) -> Result<PageEnvelope, PluginError> {
    serde_json::from_slice(strip_bom(body)).map_err(|e| {
        PluginError::BadResponse(format!(
            "{endpoint} page {} is not a readable OData page: {e}",
            sequence + 1
        ))
    })
}

/// A nextLink must stay on the configured API host (the bearer token goes with it),
/// and must not repeat (a loop would never end).
fn check_next_link(
    api_base: &str,
    link: &str,
    seen: &HashSet<String>,
    sequence: u32,
) -> Result<(), PluginError> {
    let same_origin = link
        .get(..api_base.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(api_base))
        && link[api_base.len()..].starts_with('/');
    if !same_origin {
        return Err(PluginError::BadResponse(format!(
            "page {} of the vulnerabilities has a nextLink to another host ({}); refusing to send the token there",
            sequence + 1,
            crate::net::host_of(link)
        )));
    }
    if seen.contains(link) || sequence + 1 >= MAX_PAGES {
        return Err(PluginError::BadResponse(format!(
            "page {} of the vulnerabilities links back to a page already fetched; paging would never end",
            sequence + 1
        )));
    }
    Ok(())
}

pub fn machines_url(api_base: &str, top: u32, skip: u64) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("$filter", "healthStatus eq 'Active'")
        .append_pair("$top", &top.to_string())
        .append_pair("$skip", &skip.to_string())
        .finish();
    format!("{api_base}/api/machines?{query}")
}

pub fn vulnerabilities_url(api_base: &str, page_size: u32) -> String {
    format!("{api_base}/api/machines/SoftwareVulnerabilitiesByMachine?pageSize={page_size}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_query_filters_active_and_pages_by_offset() {
        assert_eq!(
            machines_url("https://h", 10000, 20000),
            "https://h/api/machines?%24filter=healthStatus+eq+%27Active%27&%24top=10000&%24skip=20000"
        );
    }

    #[test]
    fn vulnerabilities_query_uses_page_size_never_top() {
        let url = vulnerabilities_url("https://h", 50000);
        assert!(url.ends_with("?pageSize=50000"));
        assert!(!url.contains("$top"));
    }

    #[test]
    fn next_links_to_other_hosts_or_seen_before_are_refused() {
        let mut seen = HashSet::new();
        assert!(check_next_link(
            "https://api.x.com",
            "https://api.x.com/api/m?$skiptoken=a",
            &seen,
            0
        )
        .is_ok());
        assert!(check_next_link(
            "https://api.x.com",
            "https://api.x.com.evil.net/api/m",
            &seen,
            0
        )
        .is_err());
        assert!(check_next_link("https://api.x.com", "https://other.net/api/m", &seen, 0).is_err());
        assert!(check_next_link("https://api.x.com", "http://api.x.com/api/m", &seen, 0).is_err());
        seen.insert("https://api.x.com/api/m?$skiptoken=a".to_string());
        assert!(check_next_link(
            "https://api.x.com",
            "https://api.x.com/api/m?$skiptoken=a",
            &seen,
            1
        )
        .is_err());
    }
}
