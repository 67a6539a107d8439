//! The Microsoft Defender for Endpoint TVM connector, as a plugin of the
//! `vulnbridge:connector` contract (see `wit/`).
//!
//! `fetch` pages through active machines and then vulnerability rows; `%map` turns
//! each page into platform records (spec §5 and §6). The mapping is plain Rust in
//! `mapping`, unit-tested natively; everything that talks to the host is in this file,
//! `net`, `api`, `fetch` and `verify`.

wit_bindgen::generate!({
    world: "connector-plugin",
    path: "../wit",
});

pub mod api;
pub mod auth;
pub mod cloud;
pub mod fetch;
pub mod lenient;
pub mod mapping;
pub mod model;
pub mod net;
pub mod pacing;
pub mod settings;
pub mod timestamp;
pub mod verify;

use exports::vulnbridge::connector::connector::Guest;
use std::cell::RefCell;
use vulnbridge::connector::output;
use vulnbridge::connector::types::{Check, FieldError, Page, PluginError, PluginInfo, Setting};

/// Records are sent to the host in batches of this many, to bound guest memory.
const EMIT_BATCH: usize = 5_000;

/// One instance's state: its API client and where its run stands.
struct Instance {
    api: api::Api,
    stage: fetch::Stage,
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

fn with_instance<T>(f: impl FnOnce(&mut Instance) -> Result<T, PluginError>) -> Result<T, PluginError> {
    INSTANCE.with_borrow_mut(|slot| match slot {
        Some(instance) => f(instance),
        None => Err(PluginError::NotConfigured("`configure` has not succeeded on this instance".into())),
    })
}

struct DefenderConnector;

impl Guest for DefenderConnector {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "defender-tvm".into(),
            name: "Microsoft Defender for Endpoint TVM".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Imports active devices and their software vulnerabilities from Microsoft Defender for Endpoint (Threat & Vulnerability Management).".into(),
            scanner_type: "MS Defender TVM".into(),
            fields: settings::fields(),
        }
    }

    fn configure(settings: Vec<Setting>) -> Result<Vec<String>, Vec<FieldError>> {
        let parsed = settings::parse(&settings)?;
        // The sign-in host follows the cloud unless configured: declare it, so the
        // host allows it for this instance.
        let derived_origins = if parsed.login_derived { vec![parsed.login_base.clone()] } else { Vec::new() };
        INSTANCE.set(Some(Instance { api: api::Api::new(parsed), stage: fetch::Stage::start() }));
        Ok(derived_origins)
    }

    fn verify() -> Result<Vec<Check>, PluginError> {
        with_instance(|i| verify::verify(&mut i.api))
    }

    fn fetch() -> Result<Option<Page>, PluginError> {
        with_instance(|i| fetch::next_page(&mut i.api, &mut i.stage))
    }

    fn map(page: Page) -> Result<(), PluginError> {
        let (mapped, counter) = match page.kind.as_str() {
            fetch::MACHINES => (mapping::map_machines_page(&page.body), mapping::DEVICES_FETCHED),
            fetch::VULNERABILITIES => (mapping::map_vulnerabilities_page(&page.body), mapping::ROWS_FETCHED),
            fetch::EXPORT_FILE => (mapping::map_export_file(&page.body), mapping::ROWS_FETCHED),
            other => return Err(PluginError::Other(format!("unknown page kind `{other}`"))),
        };
        let mapped = mapped
            .map_err(|e| PluginError::BadResponse(format!("{} page {}: {}", page.kind, page.sequence + 1, e.0)))?;
        output::count(counter, mapped.rows);
        for (note, count) in &mapped.notes {
            output::count(note, *count);
        }
        for (reason, count) in &mapped.skipped {
            output::skip(reason, *count);
        }
        for batch in mapped.definitions.chunks(EMIT_BATCH) {
            output::emit_definitions(batch);
        }
        for batch in mapped.assets.chunks(EMIT_BATCH) {
            output::emit_assets(batch);
        }
        for batch in mapped.vulnerabilities.chunks(EMIT_BATCH) {
            output::emit_vulnerabilities(batch);
        }
        Ok(())
    }
}

// Exported only in the component: a native cdylib cannot carry the contract's
// `ns:pkg/iface@version#func` symbol names, and native builds exist for unit tests.
#[cfg(target_arch = "wasm32")]
export!(DefenderConnector);
