//! The Microsoft Defender for Endpoint TVM connector, as a plugin of the
//! `vulnbridge:connector` contract, built on the connector SDK (`wit/`).
//!
//! `fetch` pages through active machines and then vulnerability rows; `%map` turns
//! each page into platform records (the README's "Mapping" table). The mapping is plain Rust in
//! `mapping`, unit-tested natively; what talks to the host goes through the SDK, in
//! `client` (with `auth`, `net` and `pacing`), `fetch` and `verify`. This file is the `Connector` implementation.

// The layout every plugin of this repository follows (wit/README.md, "Layout"):
pub mod client; // calls to the source: pacing, retries, tokens
pub mod fetch; // paging through a run, one raw page per call
pub mod mapping; // pages into records, plain Rust, tested natively
pub mod model; // the source's objects as serde reads them
pub mod settings; // the configuration fields and their validation
pub mod verify; // "Save and Verify"

// What the client and the mapping are built from.
pub mod auth;
pub mod catalogue;
pub mod cloud;
pub mod delta;
pub mod lenient;
pub mod net;
pub mod pacing;
pub mod rows;
pub mod scoping;
pub mod timestamp;

use connector_sdk::config::counter;
use connector_sdk::types::{Check, CounterRole, FieldError, Page, PluginError, PluginInfo, RunPlan, RunRequest};
use connector_sdk::{Config, Connector, Output};

/// One instance: its API client and where its run stands.
pub struct DefenderConnector {
    api: client::Client,
    stage: fetch::Stage,
    /// When this instance's run began (`start`): the state it saves.
    started: Option<chrono::DateTime<chrono::Utc>>,
    /// Identifiers whose definitions this instance's `map` already emitted: pages
    /// come in parts of a few thousand rows, and each would define them again.
    defined: mapping::Defined,
    /// Defender's vulnerability catalogue, read after the tenant's rows.
    catalogue: catalogue::Catalogue,
}

impl Connector for DefenderConnector {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "defender-tvm".into(),
            name: "Microsoft Defender for Endpoint TVM".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Imports active devices and their software vulnerabilities from Microsoft Defender for Endpoint (Threat & Vulnerability Management).".into(),
            scanner_type: "MS Defender TVM".into(),
            fields: settings::fields(),
            egress: settings::egress(),
            // Definitions already emitted are remembered per instance only to send
            // fewer; another instance sending them again changes no file.
            independent_pages: true,
            section: "Vulnerability Management".into(),
            counters: vec![
                counter(mapping::DEVICES_FETCHED, "Devices fetched", CounterRole::SourceAssets),
                counter(mapping::ROWS_FETCHED, "Vulnerability rows fetched", CounterRole::SourceRows),
                counter(mapping::UNREADABLE_LAST_SEEN, "Devices kept without their unreadable lastSeen", CounterRole::Other),
                counter(client::RETRIES, "Requests retried", CounterRole::Other),
                counter(client::PACING_SECONDS, "Seconds waited to respect rate limits", CounterRole::Other),
                counter(fetch::EXPORT_LISTS, "Export file lists requested", CounterRole::Other),
                counter(catalogue::RECORDS_READ, "Catalogue records read", CounterRole::Other),
                counter(catalogue::UNREADABLE, "Catalogue reads failed (definitions without Defender's text)", CounterRole::Other),
            ],
            incremental: true,
        }
    }

    fn configure(config: &mut Config) -> Result<Self, Vec<FieldError>> {
        let parsed = settings::from_config(config)?;
        Ok(DefenderConnector {
            api: client::Client::new(parsed),
            stage: fetch::Stage::start(None),
            started: None,
            defined: Default::default(),
            catalogue: catalogue::Catalogue::start(None, false),
        })
    }

    fn origins_in_use(&self) -> Vec<String> {
        // Of everything declared, what this instance's cloud and settings use: its API
        // host and the cloud's others (a nextLink may lead there), one sign-in host,
        // one export storage.
        let s = &self.api.settings;
        let mut origins = s.api_bases.clone();
        origins.push(s.login_base.clone());
        origins.push(match s.storage_host.contains("://") {
            true => s.storage_host.clone(),
            false => format!("https://{}", s.storage_host),
        });
        origins
    }

    fn verify(&mut self) -> Result<Vec<Check>, PluginError> {
        verify::verify(&mut self.api)
    }

    fn start(&mut self, request: RunRequest) -> Result<RunPlan, PluginError> {
        let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
        let (changes_since, plan) = delta::plan(&request, now);
        self.stage = fetch::Stage::start(changes_since);
        self.started = Some(now);
        // The catalogue read so far is kept whatever the mode: it does not depend on
        // the tenant's rows.
        let kept = request.state.as_deref().and_then(delta::State::parse).and_then(|s| s.catalogue);
        self.catalogue = catalogue::Catalogue::start(kept, self.api.settings.catalogue);
        Ok(plan)
    }

    fn finish(&mut self) -> Result<Option<Vec<u8>>, PluginError> {
        // Full or incremental, the next run reads the changes since this one began.
        Ok(self
            .started
            .map(|started| delta::State { catalogue: self.catalogue.kept(), ..delta::State::at(started) }.to_bytes()))
    }

    fn fetch(&mut self) -> Result<Option<Page>, PluginError> {
        match fetch::next_page(&mut self.api, &mut self.stage)? {
            Some(page) => Ok(Some(page)),
            None => self.catalogue.next_page(&mut self.api),
        }
    }

    fn map(&mut self, page: &Page, out: &mut Output) -> Result<(), PluginError> {
        let scoping = &self.api.settings.scoping;
        let (mapped, counter) = match page.kind.as_str() {
            fetch::MACHINES => (mapping::map_machines_page_scoped(&page.body, scoping), mapping::DEVICES_FETCHED),
            fetch::VULNERABILITIES => (
                mapping::map_vulnerabilities_page_defining(&page.body, &mut self.defined, scoping),
                mapping::ROWS_FETCHED,
            ),
            fetch::EXPORT_FILE => (mapping::map_export_file(&page.body), mapping::ROWS_FETCHED),
            fetch::EXPORT_LINES => {
                (mapping::map_export_lines_defining(&page.body, &mut self.defined, scoping), mapping::ROWS_FETCHED)
            }
            delta::CHANGES => {
                (mapping::map_changes_page_defining(&page.body, &mut self.defined, scoping), mapping::ROWS_FETCHED)
            }
            catalogue::DEFINITIONS => {
                let definitions = catalogue::map_definitions(&page.body)
                    .map_err(|e| PluginError::BadResponse(format!("{} page {}: {e}", page.kind, page.sequence + 1)))?;
                out.definitions(definitions);
                return Ok(());
            }
            other => return Err(PluginError::Other(format!("unknown page kind `{other}`"))),
        };
        let mapped = mapped
            .map_err(|e| PluginError::BadResponse(format!("{} page {}: {}", page.kind, page.sequence + 1, e.0)))?;
        out.count(counter, mapped.rows);
        for (note, count) in &mapped.notes {
            out.count(note, *count);
        }
        for (reason, count) in &mapped.skipped {
            out.skip(reason, *count);
        }
        out.definitions(mapped.definitions);
        out.assets(mapped.assets);
        out.vulnerabilities(mapped.vulnerabilities);
        Ok(())
    }
}

connector_sdk::export_connector!(DefenderConnector);
