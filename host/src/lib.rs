#![warn(missing_docs)]
#![deny(dead_code)]
//! The connector host: runs sandboxed WebAssembly connector plugins (the
//! `vulnbridge:connector` contract in `wit/`) and writes what they find as KDI files.
//! The sandbox itself is the crate `connector-runtime` (`host/runtime/`); this crate
//! is the run pipeline on it, and re-exports the sandbox's [`engine`], [`config`] and
//! [`types`].
//!
//! What the library offers an embedding platform:
//! - [`engine`]: [`engine::PluginHost`] (one wasmtime Engine for the process) loads
//!   [`engine::Plugin`]s, checking their contract version, and opens sandboxed sessions.
//! - [`config`]: the operator's configuration of one connector, checked against the
//!   plugin's fields; [`types`]: the contract's records and plugin info.
//! - [`verify`]: "Save and Verify", the plugin's checks and CVM's.
//! - [`run`]: a run end to end: fetch, map, collect, join, KDI files, delivery.
//! - [`cvm`] (the crate connector-cvm): delivery to Cisco Vulnerability Management,
//!   guarded against mass closing.
//! - [`platform`]: many connector instances in one run (`run-all`).
//! - [`events`]: what a run reports while it goes; [`summary`]: what it reports at the end.
//!
//! Beneath them, in connector-runtime and not part of this API: the contract's
//! bindings, the capabilities lent to a plugin (`http`, `log`, `output`), the network
//! policy, secret placeholders and masking, the sandbox's limits, and the
//! compiled-component cache. Where a new piece goes: a capability under
//! `host/runtime/src/capability/`, a step of the data path under `run/`, a CVM option
//! in the crate connector-cvm (`host/cvm/src/config.rs`), a plugin in its own `plugin-*` crate.
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

// What an embedding platform uses: the sandbox's parts from connector-runtime,
// the pipeline's from here.
pub use connector_runtime::{config, engine, types};
pub mod checkpoint;
pub use connector_cvm as cvm;
pub mod events;
pub mod platform;
pub mod run;
pub mod summary;
pub mod verify;

// The sandbox's interface to the pipeline (connector-runtime), under the names the
// pipeline's modules use.
use connector_runtime::{bindings, capability, limits, redact};

/// One bound for every log line the host writes or keeps: the run log's, and the
/// CLI's lines on stderr.
pub mod log_line {
    pub use crate::redact::{cap_line, MAX_LOG_LINE_BYTES};
}

/// Internals the criterion benchmarks in `tests/bench` measure directly. Not part of
/// the library's API: it may change in any release.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::run::collect::Collector;
    pub use crate::run::kdi::{write, WriteOptions, Written};

    /// A session whose records go to a run's collector, as a run's do (the mapping
    /// benchmark measures the wasm mapping with the host's handling of its records).
    pub fn open_collecting(
        plugin: &crate::engine::Plugin,
        host: &crate::engine::PluginHost,
        config: &crate::config::ResolvedConfig,
        options: crate::engine::SessionOptions,
    ) -> anyhow::Result<crate::engine::Session> {
        let output = crate::run::collect::RunOutput::new(config.limits.temp_disk_bytes);
        plugin.open_with_sink(host, config, options, std::sync::Arc::new(output))
    }
}
