//! A run: configure the plugin, fetch and map every page, join, write KDI files,
//! deliver them to CVM. The data goes one way, and every step has its module here:
//!
//! ```text
//! fetch (one instance) -> page_queue -> %map (another instance) -> output capability
//!   -> collect (a collector thread; records kept in store/) -> join (a join thread)
//!   -> KDI text of each asset (kdi::KdiWriter::serialize_ahead, a serialize thread)
//!   -> this module: kdi::KdiWriter::add and cvm Snapshot::add, for each joined asset
//!   -> cvm::deliver (upload, one CVM run, its result)
//! ```
//!
//! Files are written only after every page was fetched and mapped: a run that fails
//! part-way writes nothing, so partial data can never tell CVM to close anything.

mod ahead;
pub(crate) mod collect;
pub(crate) mod join;
pub(crate) mod kdi;
mod page_queue;
pub(crate) mod store;

pub use join::UNKNOWN_ASSET;
pub use kdi::{DEFAULT_ASSETS_PER_FILE, DEFAULT_MAX_FILE_BYTES, FILE_PREFIX, SCHEMA};

use crate::config::ConnectorConfig;
use crate::cvm::{deliver, DeliveryOptions, Snapshot};
use crate::engine::Session;
use crate::engine::{Plugin, PluginHost, SessionOptions};
use crate::events::{emit, Event, EventSink};
use crate::summary::RunSummary;
use anyhow::{Context, Result};
use collect::RunOutput;
use kdi::{KdiWriter, WriteOptions};
use page_queue::{PageQueue, QUEUED_BYTES};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a run writes, and where.
#[derive(Clone)]
pub struct RunOptions {
    /// Where the KDI files go; earlier `kdi-*.json` files there are replaced.
    pub out_dir: PathBuf,
    /// The most assets in one file.
    pub assets_per_file: usize,
    /// The most bytes in one file (a single larger asset gets a file of its own).
    pub max_file_bytes: usize,
    /// How many instances map pages at once when the plugin declares independent
    /// pages; `None`: as many as the machine has cores (at most 4). A plugin that
    /// does not declare them always maps on one instance, in order.
    pub mapping_instances: Option<usize>,
    /// Where the run's events go (the plugin's progress, writing, delivering,
    /// finished or failed).
    pub events: Option<EventSink>,
    /// Where the run starts from (contract 0.4): the mode asked for and the state
    /// the plugin kept at the end of the last delivered run ([`crate::checkpoint`]).
    pub resume: Resume,
    /// Called with the files once they are written and before anything goes to CVM:
    /// a platform keeps them (the service puts them in its file store). Its error
    /// fails the run, so files that could not be kept are never delivered either.
    pub keep_files: Option<KeepFiles>,
}

/// Where a platform keeps a run's files ([`RunOptions::keep_files`]).
#[derive(Clone)]
pub struct KeepFiles(pub Arc<KeepFilesFn>);

/// What [`KeepFiles`] calls: the run's files, in the order written.
pub type KeepFilesFn = dyn Fn(&[PathBuf]) -> Result<()> + Send + Sync;

/// The mode a run asks the plugin for, and the state it starts from.
#[derive(Clone, Default)]
pub struct Resume {
    /// `Incremental` asks for changes since `state`; the plugin may still run full.
    pub(crate) mode: Mode,
    /// What the plugin's `finish` returned at the end of the last delivered run.
    pub(crate) state: Option<Vec<u8>>,
}

/// What a run covers: everything, or changes since the plugin's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A baseline: the complete picture; CVM closes what it does not report.
    #[default]
    Full,
    /// Changes only; CVM closes only what it reports fixed.
    Incremental,
}

impl Mode {
    fn to_contract(self) -> crate::types::RunMode {
        match self {
            Mode::Full => crate::types::RunMode::Full,
            Mode::Incremental => crate::types::RunMode::Incremental,
        }
    }

    fn from_contract(mode: crate::types::RunMode) -> Mode {
        match mode {
            crate::types::RunMode::Full => Mode::Full,
            crate::types::RunMode::Incremental => Mode::Incremental,
        }
    }

    /// `full` or `incremental`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("out_dir", &self.out_dir)
            .field("assets_per_file", &self.assets_per_file)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("mapping_instances", &self.mapping_instances)
            .field("events", &self.events.as_ref().map(|_| "a sink"))
            .field("mode", &self.resume.mode)
            .field("state_bytes", &self.resume.state.as_ref().map(Vec::len))
            .field("keep_files", &self.keep_files.as_ref().map(|_| "a keeper"))
            .finish()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out_dir: PathBuf::from("out"),
            assets_per_file: kdi::DEFAULT_ASSETS_PER_FILE,
            max_file_bytes: kdi::DEFAULT_MAX_FILE_BYTES,
            mapping_instances: None,
            events: None,
            resume: Resume::default(),
            keep_files: None,
        }
    }
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
    let events = options.events.clone();
    // Every log line of the run carries the plugin (and, in it, the stage).
    let _span = tracing::info_span!("run", plugin = %plugin.info.id).entered();
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
    let events = options.events.as_ref();
    let run_started = chrono::Utc::now();
    let resolved = config.resolve(&plugin.info).context("invalid configuration")?;
    // A run has a wall-clock limit even outside a platform: wasm is stopped at it and
    // HTTP waits are capped to the time left (`[limits] run_seconds`).
    let session = SessionOptions {
        time_limit: session.time_limit.or(Some(resolved.limits.run_time)),
        progress: session.progress.or_else(|| events.cloned().map(crate::events::progress_to)),
        ..session
    };
    // Files carry `[cvm] reset_tags` whether this run uploads them or not.
    let reset_tags = match (delivery, &config.cvm) {
        (Some(d), _) => d.cvm.reset_tags,
        (None, Some(cvm)) => crate::cvm::config::reset_tags(cvm).context("invalid configuration")?,
        (None, None) => false,
    };
    let output = RunOutput::new(resolved.limits.temp_disk_bytes);
    let mut fetcher = plugin.open_with_sink(host, &resolved, session.clone(), Arc::new(output.clone()))?;
    fetcher.configure(&resolved)?;
    // A plugin that does not run on changes is asked for full runs only.
    let asked = if plugin.info.incremental { options.resume.mode } else { Mode::Full };
    let plan = fetcher.start(asked.to_contract(), options.resume.state.clone())?;
    let mode = Mode::from_contract(plan.mode);
    if let Some(reason) = &plan.reason {
        tracing::info!("the plugin runs {}: {reason}", mode.as_str());
    }
    let instances = mapping_instances(plugin, options);
    let mut mappers = Vec::with_capacity(instances);
    for _ in 0..instances {
        let options = SessionOptions { progress: None, ..session.clone() };
        let mut mapper = plugin.open_with_sink(host, &resolved, options, Arc::new(output.clone()))?;
        mapper.configure(&resolved)?;
        mappers.push(mapper);
    }
    let egress = fetcher.effective_egress();
    let (pages, fetch_cpu, map_cpu) =
        tracing::info_span!("stage", stage = "fetch").in_scope(|| fetch_and_map(&mut fetcher, &mut mappers))?;
    let new_state = fetcher.finish()?;
    let sessions = std::iter::once(&fetcher).chain(&mappers);
    let warnings: Vec<String> = sessions.clone().flat_map(|s| s.warnings().iter().cloned()).collect();
    let (api_calls, throttled) = sessions.fold((0, 0), |(calls, throttled), s| {
        let (c, t) = s.http_counts();
        (calls + c, throttled + t)
    });
    // The instances' memory is not needed to write the files.
    drop((fetcher, mappers));
    tracing::debug!("fetched and mapped {pages} pages in {:.2} s", started.elapsed().as_secs_f64());

    emit(events, Event::Writing);
    let write_options = WriteOptions {
        scanner_type: plugin.info.scanner_type.clone(),
        assets_per_file: options.assets_per_file,
        max_file_bytes: options.max_file_bytes,
        run_started,
        reset_tags,
        skip_autoclose: mode == Mode::Incremental,
    };
    let Stored { written, closed, counts, snapshot, collect_cpu, write_cpu } =
        tracing::info_span!("stage", stage = "write")
            .in_scope(|| join_and_write(output, &options.out_dir, write_options, delivery.is_some()))?;
    let stage_cpu =
        [("fetch", fetch_cpu), ("map", map_cpu), ("collect", collect_cpu), ("join", counts.cpu), ("write", write_cpu)]
            .into_iter()
            .map(|(stage, cpu)| (stage.to_owned(), cpu))
            .collect();

    if let Some(keep) = &options.keep_files {
        (keep.0)(&written.files).context("the run's files could not be kept")?;
    }
    let delivered = match (delivery, snapshot.map(Snapshot::seal)) {
        (Some(d), Some(snapshot)) => Some({
            emit(events, Event::Delivering);
            let _stage = tracing::info_span!("stage", stage = "deliver").entered();
            deliver(&written.files, &snapshot, d).context("delivery to CVM failed")?
        }),
        _ => None,
    };
    let declared = |role| {
        let mut named = plugin.info.counters.iter().filter(move |c| c.role == role).peekable();
        named.peek().is_some().then(|| named.map(|c| counts.counters.get(&c.name).copied().unwrap_or(0)).sum())
    };
    let (source_rows, source_assets) =
        (declared(crate::types::CounterRole::SourceRows), declared(crate::types::CounterRole::SourceAssets));
    Ok(RunSummary {
        delivery: delivered,
        plugin: plugin.info.id.clone(),
        plugin_version: plugin.info.version.clone(),
        mode,
        mode_reason: plan.reason,
        state_bytes: new_state.as_ref().map(Vec::len),
        new_state,
        counter_labels: plugin.info.counters.iter().map(|c| (c.name.clone(), c.label.clone())).collect(),
        source_rows,
        source_assets,
        vulnerabilities_closed: closed,
        counters: counts.counters,
        skipped: counts.skipped,
        pages_fetched: pages,
        assets_written: written.assets,
        vulnerabilities_written: written.vulnerabilities,
        definitions_written: written.definitions,
        files_written: written.files,
        api_calls,
        throttled_responses: throttled,
        egress,
        stage_cpu,
        warnings,
        duration: started.elapsed(),
    })
}

/// What joining and writing a run left.
struct Stored {
    written: kdi::Written,
    /// Vulnerabilities written closed (fixed, in a run of changes).
    closed: usize,
    counts: join::JoinCounts,
    /// What CVM will be sent, when the files are delivered.
    snapshot: Option<Snapshot>,
    collect_cpu: Duration,
    write_cpu: Duration,
}

/// Joins the run's records and writes them: each joined asset goes to the KDI
/// writer and, when the files will be delivered, into the CVM snapshot that the
/// mass-close guard compares.
fn join_and_write(
    output: RunOutput,
    out_dir: &std::path::Path,
    options: WriteOptions,
    deliver: bool,
) -> Result<Stored> {
    let writing = Instant::now();
    let collector = output.take_collector();
    let sorting = crate::limits::thread_cpu_time();
    let collect_cpu = collector.cpu;
    let assets = collector.finish()?.read_ahead()?;
    let collect_cpu = collect_cpu + crate::limits::thread_cpu_time().saturating_sub(sorting);
    let write_started = crate::limits::thread_cpu_time();
    let changes_only = options.skip_autoclose;
    let mut writer = KdiWriter::create(out_dir, options, assets.catalog.clone())?;
    let mut assets = writer.serialize_ahead(assets)?;
    let mut snapshot = deliver.then(|| Snapshot { changes_only, ..Snapshot::default() });
    let mut closed = 0;
    while let Some(serialized) = assets.next()? {
        writer.add(&serialized)?;
        let asset = &serialized.asset;
        let (open, fixed): (Vec<_>, Vec<_>) = asset.vulnerabilities.iter().partition(|v| v.fixed.is_none());
        closed += fixed.len();
        if let Some(snapshot) = snapshot.as_mut() {
            snapshot.add(&asset.asset.key, open.iter().map(|v| v.identifier.as_str()));
            fixed.iter().for_each(|v| snapshot.add_fixed(&asset.asset.key, &v.identifier));
        }
    }
    let (counts, serialize_cpu) = assets.finish()?;
    let written = writer.finish()?;
    let write_cpu = crate::limits::thread_cpu_time().saturating_sub(write_started) + serialize_cpu;
    tracing::debug!("joined and wrote {} files in {:.2} s", written.files.len(), writing.elapsed().as_secs_f64());
    Ok(Stored { written, closed, counts, snapshot, collect_cpu, write_cpu })
}

/// How many instances map: one, unless the plugin declares that its pages map
/// independently; then as many as asked, or as the machine has cores (at most 4:
/// each instance holds its own copy of the plugin's memory).
fn mapping_instances(plugin: &Plugin, options: &RunOptions) -> usize {
    if !plugin.info.independent_pages {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    options.mapping_instances.unwrap_or(cores.min(4)).max(1)
}

/// Fetches on one instance while pages map on others, so the network and the
/// mapping overlap. With one mapping instance every page maps on it, in order (the
/// contract's guarantee); a plugin that declares independent pages maps on several
/// at once. The pages in between are bounded by bytes ([`PageQueue`]), so memory
/// stays bounded; the first error stops everything and is returned.
/// Returns the pages fetched, and the CPU time fetching and mapping took.
fn fetch_and_map(fetcher: &mut Session, mappers: &mut [Session]) -> Result<(u64, Duration, Duration)> {
    let queue = PageQueue::new(QUEUED_BYTES);
    let instances = mappers.len();
    let logging = LoggingContext::here();
    std::thread::scope(|scope| {
        let (queue, logging) = (&queue, &logging);
        let fetching = scope.spawn(move || {
            logging.enter(|| {
                let fetched = fetch_into(fetcher, queue);
                queue.finish();
                fetched
            })
        });
        let mapping: Vec<_> = mappers
            .iter_mut()
            .map(|mapper| {
                scope.spawn(move || {
                    logging.enter(|| {
                        let outcome = map_from(mapper, queue);
                        if outcome.is_err() {
                            // The first error stops the fetcher and the other mappers.
                            queue.abandon();
                        }
                        outcome
                    })
                })
            })
            .collect();
        let mut mapped = Ok(());
        let (mut busy, mut starved, mut map_cpu) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for thread in mapping {
            match thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)) {
                Ok((took, waited, cpu)) => {
                    busy += took;
                    starved += waited;
                    map_cpu += cpu;
                }
                Err(e) if mapped.is_ok() => mapped = Err(e),
                Err(_) => {}
            }
        }
        queue.abandon();
        let fetched = fetching.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        mapped?;
        let (count, held_up, fetch_cpu) = fetched?;
        // Which side of the pipeline held the other up: what to speed up next.
        tracing::debug!(
            "mapping took {:.2} s on {} instance(s) and waited {:.2} s for pages; fetching waited {:.2} s for room in the queue",
            busy.as_secs_f64(),
            instances,
            starved.as_secs_f64(),
            held_up.as_secs_f64()
        );
        Ok((count, fetch_cpu, map_cpu))
    })
}

/// Where a thread's log lines go: the dispatcher (an embedder's may be a run's own)
/// and the spans (plugin, stage) of the thread that started it.
struct LoggingContext {
    dispatch: tracing::Dispatch,
    span: tracing::Span,
}

impl LoggingContext {
    fn here() -> Self {
        LoggingContext {
            dispatch: tracing::dispatcher::get_default(tracing::Dispatch::clone),
            span: tracing::Span::current(),
        }
    }

    /// Runs `work` logging as the thread that took this context did.
    fn enter<T>(&self, work: impl FnOnce() -> T) -> T {
        tracing::dispatcher::with_default(&self.dispatch, || self.span.in_scope(work))
    }
}

/// Maps pages from the queue until it is empty and finished; returns the time spent
/// mapping, the time spent waiting for pages, and the thread's CPU time.
fn map_from(mapper: &mut Session, queue: &PageQueue) -> Result<(Duration, Duration, Duration)> {
    let cpu = crate::limits::thread_cpu_time();
    let (mut busy, mut starved) = (Duration::ZERO, Duration::ZERO);
    let mut waiting = Instant::now();
    while let Some(page) = queue.pop() {
        starved += waiting.elapsed();
        let started = Instant::now();
        mapper.map(&page)?;
        busy += started.elapsed();
        waiting = Instant::now();
    }
    Ok((busy, starved, crate::limits::thread_cpu_time().saturating_sub(cpu)))
}

/// Fetches every page into the queue; returns how many, how long the queue was
/// full, and the thread's CPU time. Stops early, without error, when the mapper stopped.
fn fetch_into(fetcher: &mut Session, queue: &PageQueue) -> Result<(u64, Duration, Duration)> {
    let cpu = crate::limits::thread_cpu_time();
    let (mut count, mut held_up) = (0, Duration::ZERO);
    while let Some(page) = fetcher.fetch()? {
        count += 1;
        let waiting = Instant::now();
        if queue.push(page).is_err() {
            break; // the mapper stopped on an error, which is the one reported
        }
        held_up += waiting.elapsed();
    }
    Ok((count, held_up, crate::limits::thread_cpu_time().saturating_sub(cpu)))
}
