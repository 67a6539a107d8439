//! Paging through a run: the organization's repositories, then its open Dependabot
//! alerts, both by their `Link` headers. Every repository is listed (100 a call) so
//! that a repository whose last alert was fixed is still sent, with no alerts: CVM
//! then closes what was open there.

use crate::client::{count_entries, get};
use crate::settings::Settings;
use crate::{ALERTS, REPOSITORIES};
use connector_sdk::http::same_origin;
use connector_sdk::output;
use connector_sdk::types::{Page, PluginError};

/// Where paging stands: the repositories first, then the alerts.
#[derive(Debug, Clone)]
pub struct Paging {
    /// The next page of repositories, until they are all read.
    repositories: Option<String>,
    /// The next page of alerts.
    alerts: Option<String>,
    sequence: u32,
    repositories_seen: u64,
    alerts_seen: u64,
}

impl Paging {
    pub fn start(settings: &Settings) -> Self {
        Paging {
            repositories: Some(repositories_url(settings, 100)),
            alerts: Some(first_page_url(settings, settings.page_size)),
            sequence: 0,
            repositories_seen: 0,
            alerts_seen: 0,
        }
    }
}

/// Every repository of the organization, `per_page` a page (GitHub allows 100).
pub fn repositories_url(settings: &Settings, per_page: u64) -> String {
    format!("{}/orgs/{}/repos?type=all&per_page={per_page}", settings.api_base, settings.organization)
}

/// The first page: open alerts, oldest first, `page_size` per page.
pub fn first_page_url(settings: &Settings, page_size: u64) -> String {
    format!(
        "{}/orgs/{}/dependabot/alerts?state=open&sort=created&direction=asc&per_page={page_size}",
        settings.api_base, settings.organization
    )
}

/// The next page, repositories then alerts, or `None` after the last one.
pub fn next_page(settings: &Settings, paging: &mut Paging) -> Result<Option<Page>, PluginError> {
    let (kind, slot) = match (&paging.repositories, &paging.alerts) {
        (Some(_), _) => (REPOSITORIES, &mut paging.repositories),
        (None, Some(_)) => (ALERTS, &mut paging.alerts),
        (None, None) => return Ok(None),
    };
    let url = slot.take().expect("matched above");
    let response = get(settings, &url)?;
    *slot = checked_next_link(settings, &url, response.next_link())?;
    let page = Page { kind: kind.into(), sequence: paging.sequence, body: response.body };
    paging.sequence += 1;
    let entries = count_entries(&page.body);
    if kind == REPOSITORIES {
        paging.repositories_seen += entries;
        output::progress("repositories", paging.repositories_seen, None);
    } else {
        paging.alerts_seen += entries;
        output::progress("alerts", paging.alerts_seen, None);
    }
    Ok(Some(page))
}

/// A next link, if it may be followed: a link elsewhere would carry the token to
/// another origin, and one to the page just read would never end.
fn checked_next_link(settings: &Settings, url: &str, next: Option<String>) -> Result<Option<String>, PluginError> {
    if let Some(next) = &next {
        if !same_origin(next, &settings.api_base) {
            return Err(PluginError::BadResponse(format!(
                "GitHub's next page link leads to another origin ({next}); refusing to follow it"
            )));
        }
        if next == url {
            return Err(PluginError::BadResponse(format!(
                "GitHub's next page link repeats the page just read ({url})"
            )));
        }
    }
    Ok(next)
}
