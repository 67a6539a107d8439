//! A run: configure the plugin, fetch and map every page, join, write KDI files.
//!
//! Files are written only after every page was fetched and mapped: a run that fails
//! part-way writes nothing, so partial data can never tell CVM to close anything.

use crate::config::ConnectorConfig;
use crate::engine::{Plugin, PluginHost, SessionOptions};
use crate::kdi::{self, WriteOptions};
use crate::summary::RunSummary;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What a run writes, and where.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub assets_per_file: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { out_dir: PathBuf::from("out"), assets_per_file: kdi::DEFAULT_ASSETS_PER_FILE }
    }
}

/// Checks the configuration and runs the plugin's `verify`.
pub fn verify(
    host: &PluginHost,
    plugin: &Plugin,
    config: &ConnectorConfig,
    session: SessionOptions,
) -> Result<Vec<crate::bindings::types::Check>> {
    let resolved = config.resolve(&plugin.info).context("invalid configuration")?;
    let mut session = plugin.open(host, &resolved, session)?;
    session.configure(&resolved.settings)?;
    session.verify()
}

/// Runs the plugin end to end and writes KDI files.
pub fn run(
    host: &PluginHost,
    plugin: &Plugin,
    config: &ConnectorConfig,
    session: SessionOptions,
    options: &RunOptions,
) -> Result<RunSummary> {
    let started = Instant::now();
    let run_started = chrono::Utc::now();
    let resolved = config.resolve(&plugin.info).context("invalid configuration")?;
    let mut session = plugin.open(host, &resolved, session)?;
    session.configure(&resolved.settings)?;

    let mut pages = 0u64;
    while let Some(page) = session.fetch()? {
        pages += 1;
        session.map(&page)?;
    }

    let joined = session.take_collector().finish();
    let written = kdi::write(
        &joined,
        &options.out_dir,
        &WriteOptions {
            scanner_type: plugin.info.scanner_type.clone(),
            assets_per_file: options.assets_per_file,
            run_started,
        },
    )?;
    let state = session.state();
    Ok(RunSummary {
        plugin: plugin.info.id.clone(),
        plugin_version: plugin.info.version.clone(),
        counters: joined.counters.clone(),
        skipped: joined.skipped.clone(),
        pages_fetched: pages,
        assets_written: written.assets,
        vulnerabilities_written: written.vulnerabilities,
        definitions_written: written.definitions,
        files_written: written.files,
        api_calls: state.http.stats.calls.load(Ordering::Relaxed),
        throttled_responses: state.http.stats.throttled.load(Ordering::Relaxed),
        plugin_log_lines_dropped: state.log.dropped,
        duration: started.elapsed(),
    })
}
