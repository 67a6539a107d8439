//! The GitHub Dependabot alerts connector: a plugin of the `vulnbridge:connector`
//! contract, built only on the connector SDK (`wit/`).
//!
//! Assets are repositories, every one of the organization (also those without open
//! alerts, so that CVM closes what was fixed there); vulnerabilities are open
//! Dependabot alerts, one per advisory and repository (alerts of the same advisory
//! in several manifests merge in the host, keeping every manifest in the details).
//! `fetch` pages through `GET /orgs/{org}/repos`, then
//! `GET /orgs/{org}/dependabot/alerts`, by their `Link` headers; `map` is plain Rust
//! in `mapping`, tested natively on fixture files.

// The layout every plugin of this repository follows (wit/README.md, "Layout"):
pub mod client; // calls to GitHub: headers, retries, rate limits, errors
pub mod fetch; // paging through a run, one raw page per call
pub mod mapping; // pages into records, plain Rust, tested natively
pub mod model; // GitHub's objects as serde reads them
pub mod settings; // the configuration fields and their validation
pub mod verify; // "Save and Verify"

use connector_sdk::config::counter;
use connector_sdk::types::{
    Check, CounterRole, FieldError, Page, PluginError, PluginInfo, RunMode, RunPlan, RunRequest,
};
use connector_sdk::{Config, Connector, Output};
use std::collections::HashSet;

/// A page of alerts: a JSON array, as GitHub sent it.
pub const ALERTS: &str = "alerts";
/// A page of the organization's repositories: a JSON array, as GitHub sent it.
pub const REPOSITORIES: &str = "repositories";

/// One instance: its settings, where paging stands, and the repositories already
/// emitted (each repository becomes one asset, however many alerts it has).
pub struct DependabotConnector {
    settings: settings::Settings,
    paging: fetch::Paging,
    repositories_emitted: HashSet<String>,
    /// When this instance's run began (`start`): the state it saves.
    started: Option<i64>,
}

/// What the plugin keeps between runs: when the last delivered run began.
#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    version: u32,
    /// Seconds since the epoch.
    run_started: i64,
}

/// Alerts updated this long before the last run began are read again: GitHub's
/// clock and the host's may disagree. Reading an alert twice changes nothing.
const OVERLAP_SECONDS: i64 = 3600;

impl Connector for DependabotConnector {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "github-dependabot".into(),
            name: "GitHub Dependabot alerts".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Imports the open Dependabot alerts of a GitHub organization: repositories as assets, advisories as vulnerabilities.".into(),
            scanner_type: mapping::SCANNER_TYPE.into(),
            fields: settings::fields(),
            egress: vec![connector_sdk::config::egress("{host}", "the GitHub REST API")],
            // A repository already emitted is remembered only to send it once per
            // instance; the host merges one sent by several instances.
            independent_pages: true,
            section: "Application Security".into(),
            counters: vec![
                counter(mapping::ALERTS_FETCHED, "Alerts fetched", CounterRole::SourceRows),
                counter(mapping::REPOSITORIES_FETCHED, "Repositories fetched", CounterRole::SourceAssets),
            ],
            incremental: true,
        }
    }

    fn configure(config: &mut Config) -> Result<Self, Vec<FieldError>> {
        let settings = settings::from_config(config)?;
        let paging = fetch::Paging::start(&settings, None);
        Ok(DependabotConnector { settings, paging, repositories_emitted: HashSet::new(), started: None })
    }

    fn start(&mut self, request: RunRequest) -> Result<RunPlan, PluginError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        self.started = Some(now);
        let last =
            request.state.as_deref().and_then(|s| serde_json::from_slice::<State>(s).ok()).filter(|s| s.version == 1);
        let (since, plan) = match (request.mode, last) {
            (RunMode::Incremental, Some(last)) => {
                (Some(last.run_started - OVERLAP_SECONDS), RunPlan::as_asked(&request))
            }
            (RunMode::Incremental, None) => (None, RunPlan::full("no readable state of an earlier run")),
            (RunMode::Full, _) => (None, RunPlan::as_asked(&request)),
        };
        self.paging = fetch::Paging::start(&self.settings, since);
        Ok(plan)
    }

    fn finish(&mut self) -> Result<Option<Vec<u8>>, PluginError> {
        let state = self.started.map(|run_started| State { version: 1, run_started });
        Ok(state.map(|s| serde_json::to_vec(&s).expect("a state serializes")))
    }

    fn verify(&mut self) -> Result<Vec<Check>, PluginError> {
        verify::verify(&self.settings)
    }

    fn fetch(&mut self) -> Result<Option<Page>, PluginError> {
        fetch::next_page(&self.settings, &mut self.paging)
    }

    fn map(&mut self, page: &Page, out: &mut Output) -> Result<(), PluginError> {
        let (mapped, counter) = match page.kind.as_str() {
            ALERTS => (mapping::map_alerts_page(&page.body), mapping::ALERTS_FETCHED),
            REPOSITORIES => (mapping::map_repositories_page(&page.body), mapping::REPOSITORIES_FETCHED),
            other => return Err(PluginError::Other(format!("unknown page kind `{other}`"))),
        };
        let mapped =
            mapped.map_err(|e| PluginError::BadResponse(format!("{} page {}: {e}", page.kind, page.sequence + 1)))?;
        out.count(counter, if page.kind == ALERTS { mapped.alerts } else { mapped.assets.len() as u64 });
        for (reason, count) in &mapped.skipped {
            out.skip(reason, *count);
        }
        out.definitions(mapped.definitions);
        // A repository comes in the list and again with each of its alerts: emit it once.
        out.assets(mapped.assets.into_iter().filter(|a| self.repositories_emitted.insert(a.key.clone())));
        out.vulnerabilities(mapped.vulnerabilities);
        Ok(())
    }
}

connector_sdk::export_connector!(DependabotConnector);
