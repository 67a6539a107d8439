//! A run: configure the plugin, fetch and map every page, join, write KDI files.
//!
//! Files are written only after every page was fetched and mapped: a run that fails
//! part-way writes nothing, so partial data can never tell CVM to close anything.

use crate::capability::output::RunOutput;
use crate::config::ConnectorConfig;
use crate::cvm::{deliver, DeliveryOptions, Snapshot};
use crate::engine::{Plugin, PluginHost, SessionOptions};
use crate::events::{emit, Event};
use crate::kdi::{self, WriteOptions};
use crate::page_queue::{PageQueue, QUEUED_BYTES};
use crate::session::Session;
use crate::summary::RunSummary;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a run writes, and where.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub assets_per_file: usize,
    pub max_file_bytes: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out_dir: PathBuf::from("out"),
            assets_per_file: kdi::DEFAULT_ASSETS_PER_FILE,
            max_file_bytes: kdi::DEFAULT_MAX_FILE_BYTES,
        }
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
    session.configure(&resolved)?;
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
    execute(host, plugin, config, session, options, None)
}

/// Runs the plugin, writes KDI files, and only then delivers them to CVM (or, in a
/// dry run, reports what would be delivered). A failed fetch delivers nothing.
pub fn run_and_deliver(
    host: &PluginHost,
    plugin: &Plugin,
    config: &ConnectorConfig,
    session: SessionOptions,
    options: &RunOptions,
    delivery: &DeliveryOptions,
) -> Result<RunSummary> {
    execute(host, plugin, config, session, options, Some(delivery))
}

/// Runs and reports the outcome as an event too ([`Event::Finished`] or [`Event::Failed`]).
fn execute(
    host: &PluginHost,
    plugin: &Plugin,
    config: &ConnectorConfig,
    session: SessionOptions,
    options: &RunOptions,
    delivery: Option<&DeliveryOptions>,
) -> Result<RunSummary> {
    let events = session.events.clone();
    let result = execute_quietly(host, plugin, config, session, options, delivery);
    match &result {
        Ok(summary) => emit(events.as_ref(), Event::Finished(Box::new(summary.clone()))),
        Err(e) => emit(events.as_ref(), Event::Failed(format!("{e:#}"))),
    }
    result
}

fn execute_quietly(
    host: &PluginHost,
    plugin: &Plugin,
    config: &ConnectorConfig,
    session: SessionOptions,
    options: &RunOptions,
    delivery: Option<&DeliveryOptions>,
) -> Result<RunSummary> {
    let started = Instant::now();
    let events = session.events.clone();
    let events = events.as_ref();
    let run_started = chrono::Utc::now();
    let resolved = config.resolve(&plugin.info).context("invalid configuration")?;
    // Files carry `[cvm] reset_tags` whether this run uploads them or not.
    let reset_tags = match (delivery, &config.cvm) {
        (Some(d), _) => d.cvm.reset_tags,
        (None, Some(cvm)) => crate::cvm::config::reset_tags(cvm).context("invalid configuration")?,
        (None, None) => false,
    };
    let output = RunOutput::default();
    let options_for = |events| SessionOptions { events, output: Some(output.clone()), ..session.clone() };
    let mut fetcher = plugin.open(host, &resolved, options_for(session.events.clone()))?;
    fetcher.configure(&resolved)?;
    let mut mapper = plugin.open(host, &resolved, options_for(None))?;
    mapper.configure(&resolved)?;
    let pages = fetch_and_map(&mut fetcher, &mut mapper)?;
    let (fetched, mapped) = (&fetcher.state().http.stats, &mapper.state().http.stats);
    let api_calls = fetched.calls.load(Ordering::Relaxed) + mapped.calls.load(Ordering::Relaxed);
    let throttled = fetched.throttled.load(Ordering::Relaxed) + mapped.throttled.load(Ordering::Relaxed);
    // The instances' memory is not needed to write the files.
    drop((fetcher, mapper));
    tracing::debug!("fetched and mapped {pages} pages in {:.2} s", started.elapsed().as_secs_f64());

    emit(events, Event::Writing);
    let writing = Instant::now();
    let mut joined = output.take_collector().finish()?;
    // The snapshot for CVM is taken while the files are written: one pass, one asset
    // in memory at a time.
    let mut snapshot = delivery.map(|_| Snapshot::default());
    let written = kdi::write_observed(
        &mut joined,
        &options.out_dir,
        &WriteOptions {
            scanner_type: plugin.info.scanner_type.clone(),
            assets_per_file: options.assets_per_file,
            max_file_bytes: options.max_file_bytes,
            run_started,
            reset_tags,
        },
        &mut |asset| {
            if let Some(s) = snapshot.as_mut() {
                s.add(asset)
            }
        },
    )?;
    tracing::debug!("joined and wrote {} files in {:.2} s", written.files.len(), writing.elapsed().as_secs_f64());
    let snapshot = snapshot.map(Snapshot::seal);
    let delivered = match (delivery, &snapshot) {
        (Some(d), Some(snapshot)) => Some({
            emit(events, Event::Delivering);
            deliver(&written.files, snapshot, d).context("delivery to CVM failed")?
        }),
        _ => None,
    };
    Ok(RunSummary {
        delivery: delivered,
        plugin: plugin.info.id.clone(),
        plugin_version: plugin.info.version.clone(),
        counters: joined.counters.clone(),
        skipped: joined.skipped.clone(),
        pages_fetched: pages,
        assets_written: written.assets,
        vulnerabilities_written: written.vulnerabilities,
        definitions_written: written.definitions,
        files_written: written.files,
        api_calls,
        throttled_responses: throttled,
        duration: started.elapsed(),
    })
}

/// Fetches on one instance while the previous pages map on another, so the network
/// and the mapping overlap on two cores. The contract allows it: `map` needs only
/// its page and the instance's settings, and every page maps on one instance, in
/// order. The pages in between are bounded by bytes ([`PageQueue`]), so memory stays
/// bounded; the first error stops both and is returned.
fn fetch_and_map(fetcher: &mut Session, mapper: &mut Session) -> Result<u64> {
    let queue = PageQueue::new(QUEUED_BYTES);
    std::thread::scope(|scope| {
        let queue = &queue;
        let fetching = scope.spawn(move || {
            let fetched = fetch_into(fetcher, queue);
            queue.finish();
            fetched
        });
        let (mut mapped, mut mapping, mut starved) = (Ok(()), Duration::ZERO, Duration::ZERO);
        let mut waiting = Instant::now();
        while let Some(page) = queue.pop() {
            starved += waiting.elapsed();
            let started = Instant::now();
            if let Err(e) = mapper.map(&page) {
                mapped = Err(e);
                break;
            }
            mapping += started.elapsed();
            waiting = Instant::now();
        }
        queue.abandon();
        let fetched = fetching.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        mapped?;
        let (count, held_up) = fetched?;
        // Which side of the pipeline held the other up: what to speed up next.
        tracing::debug!(
            "mapping took {:.2} s and waited {:.2} s for pages; fetching waited {:.2} s for room in the queue",
            mapping.as_secs_f64(),
            starved.as_secs_f64(),
            held_up.as_secs_f64()
        );
        Ok(count)
    })
}

/// Fetches every page into the queue; returns how many, and how long the queue
/// was full. Stops early, without error, when the mapper stopped.
fn fetch_into(fetcher: &mut Session, queue: &PageQueue) -> Result<(u64, Duration)> {
    let (mut count, mut held_up) = (0, Duration::ZERO);
    while let Some(page) = fetcher.fetch()? {
        count += 1;
        let waiting = Instant::now();
        if queue.push(page).is_err() {
            break; // the mapper stopped on an error, which is the one reported
        }
        held_up += waiting.elapsed();
    }
    Ok((count, held_up))
}
