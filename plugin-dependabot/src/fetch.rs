//! Paging through a run: the organization's repositories, then its open Dependabot
//! alerts, both by their `Link` headers. Every repository is listed (100 a call) so
//! that a repository whose last alert was fixed is still sent, with no alerts: CVM
//! then closes what was open there.
//!
//! An incremental run (contract 0.4) lists the repositories the same way, then the
//! alerts of every state, most recently updated first, and stops after the page
//! that reaches back before the time it reads changes from. GitHub's alert list has
//! no `since` parameter; its order by `updated` is what makes the read short.

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
    /// An incremental run: alerts updated since this time (seconds since the epoch).
    changes_since: Option<i64>,
    /// Repositories where an alert was fixed or dismissed among the changes, still
    /// to recheck: another manifest may still have the same advisory open.
    closed_in: std::collections::BTreeSet<String>,
    /// The next page of open alerts of the repository being rechecked.
    recheck: Option<String>,
}

impl Paging {
    /// A full run, or with `changes_since` the changes since then.
    pub fn start(settings: &Settings, changes_since: Option<i64>) -> Self {
        let alerts = match changes_since {
            None => first_page_url(settings, settings.page_size),
            Some(_) => changes_url(settings, settings.page_size),
        };
        Paging {
            repositories: Some(repositories_url(settings, 100)),
            alerts: Some(alerts),
            sequence: 0,
            repositories_seen: 0,
            alerts_seen: 0,
            changes_since,
            closed_in: Default::default(),
            recheck: None,
        }
    }
}

/// The first page of an incremental run: alerts of every state, most recently
/// updated first.
pub fn changes_url(settings: &Settings, page_size: u64) -> String {
    format!(
        "{}/orgs/{}/dependabot/alerts?state=open,fixed,dismissed,auto_dismissed&sort=updated&direction=desc&per_page={page_size}",
        settings.api_base, settings.organization
    )
}

/// Skip reason: an incremental run's page also holds alerts that did not change.
pub const UNCHANGED: &str = "alert not updated since the last run";

/// Of a page of alerts (newest first), those updated at or after `since` (and any
/// whose time cannot be read, for the mapping to judge), as a page; how many were
/// older; and whether the page reached back before `since`. The repositories of the
/// kept alerts that are no longer open go into `closed_in`. A page that is not a
/// list is returned whole, for the mapping to report.
fn changed_since(
    body: Vec<u8>,
    since: i64,
    closed_in: &mut std::collections::BTreeSet<String>,
) -> (Vec<u8>, u64, bool) {
    #[derive(serde::Deserialize)]
    struct Updated {
        updated_at: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Closed {
        state: Option<String>,
        repository: Option<crate::model::Repository>,
    }
    let Ok(alerts) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&body) else {
        return (body, 0, false);
    };
    let updated = |alert: &serde_json::value::RawValue| {
        let alert: Updated = serde_json::from_str(alert.get()).ok()?;
        alert.updated_at.as_deref().and_then(crate::mapping::datetime).map(|t| t.seconds)
    };
    let (kept, older): (Vec<&serde_json::value::RawValue>, Vec<_>) =
        alerts.into_iter().partition(|a| updated(a).is_none_or(|t| t >= since));
    for alert in &kept {
        let Ok(alert) = serde_json::from_str::<Closed>(alert.get()) else { continue };
        if alert.state.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("open")) {
            closed_in.extend(alert.repository.and_then(|r| r.full_name));
        }
    }
    let page = format!("[{}]", kept.iter().map(|a| a.get()).collect::<Vec<_>>().join(","));
    (page.into_bytes(), older.len() as u64, !older.is_empty())
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

/// The next page, repositories then alerts (in an incremental run, then the open
/// alerts of each repository where one was closed), or `None` after the last one.
pub fn next_page(settings: &Settings, paging: &mut Paging) -> Result<Option<Page>, PluginError> {
    if paging.repositories.is_none() && paging.alerts.is_none() && paging.recheck.is_none() {
        // One advisory in two manifests is two alerts: when one is fixed, the other
        // may still be open, and only a look at the repository tells.
        match paging.closed_in.pop_first() {
            Some(repository) => {
                let url = format!("{}/repos/{repository}/dependabot/alerts?state=open&per_page=100", settings.api_base);
                paging.recheck = Some(url);
            }
            None => return Ok(None),
        }
    }
    // `changes`: a page of the organization's alerts (not a recheck).
    let (kind, changes, slot) = if paging.repositories.is_some() {
        (REPOSITORIES, false, &mut paging.repositories)
    } else if paging.alerts.is_some() {
        (ALERTS, true, &mut paging.alerts)
    } else {
        (ALERTS, false, &mut paging.recheck)
    };
    let url = slot.take().expect("chosen above");
    let response = get(settings, &url)?;
    *slot = checked_next_link(settings, &url, response.next_link())?;
    let mut body = response.body;
    // Changes only: the alerts are newest first, so a page that reaches back before
    // the time changes are read from is the last one needed, and its older alerts
    // are counted and left out.
    if let (true, Some(since)) = (changes, paging.changes_since) {
        let (changed, older, reached_back) = changed_since(body, since, &mut paging.closed_in);
        body = changed;
        if older > 0 {
            output::count(crate::mapping::ALERTS_FETCHED, older);
            output::skip(UNCHANGED, older);
        }
        if reached_back {
            paging.alerts = None;
        }
    }
    let page = Page { kind: kind.into(), sequence: paging.sequence, body };
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
