//! The connector host: runs sandboxed WebAssembly connector plugins (the
//! `vulnbridge:connector` contract in `wit/`) and writes what they find as KDI files.
//!
//! Architecture, one module per concern:
//! - [`engine`]: the wasmtime Engine and Linker (built once), plugin loading with a
//!   contract-version check, and a fresh sandboxed Store per session; [`cache`]: the
//!   compiled-component cache.
//! - [`session`]: the contract's calls on one instance; traps and plugin errors
//!   become one-line messages with the plugin's panic text and no secrets.
//! - [`capability`]: what a plugin can reach: `http` (allow-listed, capped),
//!   `log` (masked, bounded) and `output` (records into the run's collector).
//! - [`policy`]: the network gates and address rules; [`secrets`]: placeholders
//!   instead of secret values; [`redact`]: secret masking in text; [`limits`]: memory,
//!   CPU, output and log limits.
//! - [`config`]: the operator's TOML, checked against the plugin's fields.
//! - [`join`]: the one place vulnerabilities are joined to assets and merged;
//!   [`spill`]: the on-disk sort that keeps that join's memory flat; [`compact`]:
//!   assets kept as bytes until they are written.
//! - [`kdi`]: the KDI v2 writer (and its JSON Schema); [`run`]: the run pipeline
//!   (fetch on one instance while another maps, pages between them in a
//!   [`page_queue`] bounded by bytes); [`summary`]: its report;
//!   [`events`]: what a run reports while it goes.
//! - [`platform`]: many connector instances in one run (`run-all`).
//! - [`cvm`]: delivery to Cisco Vulnerability Management, guarded against mass closing.
//!
//! ```no_run
//! use connector_host::{config::ConnectorConfig, engine::{PluginHost, SessionOptions}, run};
//! # fn main() -> anyhow::Result<()> {
//! let host = PluginHost::new()?;
//! let plugin = host.load("plugin_defender.wasm".as_ref())?;
//! let config = ConnectorConfig::load("defender.toml".as_ref())?;
//! let summary = run::run(&host, &plugin, &config, SessionOptions::default(), &run::RunOptions::default())?;
//! println!("{summary}");
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod cache;
pub mod capability;
pub mod compact;
pub mod config;
pub mod cvm;
pub mod engine;
pub mod events;
pub mod join;
pub mod kdi;
pub mod limits;
pub mod page_queue;
pub mod platform;
pub mod policy;
pub mod redact;
pub mod run;
pub mod secrets;
pub mod session;
pub mod spill;
pub mod state;
pub mod summary;
