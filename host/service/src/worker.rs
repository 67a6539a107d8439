//! Workers: they take queued runs from the job engine (apalis, on PostgreSQL or on
//! SQLite) and run each through the same library path as `connector-host run`.
//!
//! Exactly once: the job engine hands a run's job to one worker at a time, and a
//! worker claims the run in the `runs` table before it starts (a compare-and-set on
//! its status). When a worker stops heartbeating, the engine gives the job to
//! another worker after the lease (`--lease-seconds`); that worker takes the run over
//! only if its upload to CVM had not begun, and otherwise marks it failed: a CVM
//! upload is never repeated. Delivery is claimed in the database just before the
//! first byte goes to CVM (the library's upload gate), so a worker that lost its
//! run cannot upload it either.

use super::catalogue::Catalogue;
use super::connectors::Values;
use super::domain::RunStatus;
use super::files::{FileStore, Kept};
use super::incremental;
use super::run_log::RunLog;
use super::store::{now_ms, AfterRun, ConnectorRow, Db, Outcome, RunRow};
use super::trust;
use super::vault::Vault;
use anyhow::{anyhow, bail, Context, Result};
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use connector_host::checkpoint::Checkpoint;
use connector_host::cvm::baseline::PARTS;
use connector_host::cvm::{BaselineStore, DeliveryOptions, LastUpload, UploadGate};
use connector_host::engine::{FailureKind, Plugin, PluginFailure, PluginHost, SessionOptions, UnapprovedOrigin};
use connector_host::events::{Event, EventSink};
use connector_host::run::{self, KeepFiles, RunOptions};
use connector_host::summary::RunSummary;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument};

/// The job: which run to execute.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RunJob {
    /// The run's id.
    pub(crate) run: String,
}

/// The job engine's queue name.
const QUEUE: &str = "connector-runs";

/// How often an idle worker asks for a run (the engine's default backs off to many
/// seconds, which "Run now" would wait for).
const POLL: Duration = Duration::from_millis(500);

/// The queue on whichever database the service uses.
#[derive(Clone)]
pub(crate) enum Queue {
    /// apalis-sqlite, in a file beside the service's SQLite database.
    Sqlite(SqliteStorage<RunJob>),
    /// apalis-postgres, in the `apalis` schema of the service's database.
    Postgres(PostgresStorage<RunJob>),
}

impl Queue {
    /// Opens the queue (creating its tables), with `lease`: how long a silent worker
    /// keeps its jobs before they go to another.
    pub(crate) async fn open(db: &Db, sqlite_queue_url: Option<&str>, lease: Duration) -> Result<Queue> {
        // Heartbeat four times a lease: a worker is declared lost after four missed beats.
        let beat = (lease / 4).max(Duration::from_millis(250));
        match db {
            Db::Postgres(pool) => {
                PostgresStorage::setup(pool).await.context("cannot create the job queue's tables in PostgreSQL")?;
                let config = apalis_postgres::Config::default()
                    .queue(QUEUE)
                    .batch_size(1)
                    .heartbeat_interval(beat)
                    .missed_heartbeats(4);
                Ok(Queue::Postgres(PostgresStorage::new(pool).with_config(config)))
            }
            Db::Sqlite(_) => {
                let url = sqlite_queue_url.ok_or_else(|| anyhow!("no SQLite queue file"))?;
                let options = <apalis_sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)?
                    .create_if_missing(true)
                    .busy_timeout(Duration::from_secs(30));
                let pool = apalis_sqlite::SqlitePool::connect_with(options)
                    .await
                    .with_context(|| format!("cannot open the job queue {url}"))?;
                SqliteStorage::setup(&pool).await.context("cannot create the job queue's tables")?;
                let config = apalis_sqlite::Config::default()
                    .queue(QUEUE)
                    .batch_size(1)
                    .heartbeat_interval(beat)
                    .missed_heartbeats(4);
                Ok(Queue::Sqlite(SqliteStorage::new(&pool).with_config(config)))
            }
        }
    }

    /// Hands a run to the workers.
    pub(crate) async fn push(&self, run_id: &str) -> Result<()> {
        let job = RunJob { run: run_id.to_owned() };
        match self.clone() {
            Queue::Sqlite(mut storage) => storage.push(job).await.map_err(|e| anyhow!("{e}")),
            Queue::Postgres(mut storage) => storage.push(job).await.map_err(|e| anyhow!("{e}")),
        }
        .with_context(|| format!("cannot queue run {run_id}"))
    }
}

/// What every run of a worker shares.
pub(crate) struct WorkerShared {
    pub(crate) db: Db,
    pub(crate) vault: Vault,
    pub(crate) host: Arc<PluginHost>,
    pub(crate) catalogue: Arc<Catalogue>,
    /// This worker's name (unique: host, process, random).
    pub(crate) name: String,
    pub(crate) allow_insecure_loopback: bool,
    /// How long KDI files are kept.
    pub(crate) retention: Duration,
    /// Where runs write before their files go to the file store.
    pub(crate) scratch: PathBuf,
    /// Where the runs' files are kept.
    pub(crate) files: FileStore,
}

/// A name for this worker process: host, process id and a random part.
pub(crate) fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
    let mut random = [0u8; 3];
    getrandom::fill(&mut random).ok();
    format!("{host}-{}-{:02x}{:02x}{:02x}", std::process::id(), random[0], random[1], random[2])
}

/// Runs a worker until `stop` resolves, at most `concurrency` runs at once. On stop
/// it takes no new job, finishes the runs it holds, and returns.
pub(crate) async fn run_worker(
    shared: Arc<WorkerShared>,
    queue: Queue,
    concurrency: usize,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use apalis::layers::WorkerBuilderExt;
    let name = shared.name.clone();
    let stop = async move {
        stop.await;
        Ok::<(), std::io::Error>(())
    };
    tracing::info!(worker = %name, concurrency, "worker started");
    // The same worker on either engine's storage (their types differ).
    macro_rules! work {
        ($storage:expr) => {
            WorkerBuilder::new(name.as_str())
                .backend($storage.poll_with_interval(POLL))
                .data(shared)
                .concurrency(concurrency.max(1))
                .build(handle)
                .run_until(stop)
                .await
        };
    }
    let result = match queue {
        Queue::Sqlite(storage) => work!(storage),
        Queue::Postgres(storage) => work!(storage),
    };
    tracing::info!(worker = %name, "worker stopped");
    result.map_err(|e| anyhow!("worker {name}: {e}"))
}

/// The job handler: one run, exactly once.
async fn handle(job: RunJob, shared: Data<Arc<WorkerShared>>) -> Result<(), BoxDynError> {
    let shared: Arc<WorkerShared> = (*shared).clone();
    execute(&shared, &job.run).await.map_err(|e| {
        tracing::error!(run = %job.run, "{e:#}");
        BoxDynError::from(format!("{e:#}"))
    })
}

async fn execute(shared: &Arc<WorkerShared>, run_id: &str) -> Result<()> {
    let db = &shared.db;
    let Some(run) = db.run(run_id).await? else {
        // Deleted with its connector: nothing to do.
        return Ok(());
    };
    // Runs go with their connector, so it exists unless deleted a moment ago.
    let Some(connector) = db.connector(&run.connector_id).await? else { return Ok(()) };
    let attempt = match run.status() {
        Some(RunStatus::Queued) => db.claim_run(run_id, &shared.name).await?,
        Some(RunStatus::Running) => take_over(shared, &run).await?,
        _ => None, // already ended: the job was handed out again, and is done
    };
    let Some(attempt) = attempt else { return Ok(()) };
    // The run logs through a dispatcher that keeps its lines (and passes them on).
    let run_log = RunLog::default();
    let dispatch = run_log.dispatch(tracing::dispatcher::get_default(Dispatch::clone));
    let span = tracing::dispatcher::with_default(
        &dispatch,
        || tracing::info_span!("service_run", run = %run_id, connector = %run.connector_id, plugin = %connector.plugin_id, worker = %shared.name),
    );
    let started = Instant::now();
    let prepared = async {
        tracing::info!(attempt, triggered_by = %run.triggered_by, "run started");
        prepare(shared, connector).await
    }
    .instrument(span.clone())
    .with_subscriber(dispatch.clone())
    .await;
    let result = match prepared {
        Err(e) => Err(e),
        Ok(prepared) => {
            let (shared2, run2, handle) = (shared.clone(), run.clone(), Handle::current());
            let (connector, plugin) = (prepared.connector.clone(), prepared.plugin.clone());
            let (span2, dispatch2) = (span.clone(), dispatch.clone());
            let result = tokio::task::spawn_blocking(move || {
                tracing::dispatcher::with_default(&dispatch2, || {
                    span2.in_scope(|| run_blocking(&shared2, &run2, &prepared, attempt, &handle))
                })
            })
            .await
            .unwrap_or_else(|e| Err(anyhow!("the run stopped unexpectedly: {e}")));
            // A 0.2 plugin that derived an origin nobody approved waits for an admin.
            if let Some(unapproved) = result.as_ref().err().and_then(|e| e.downcast_ref::<UnapprovedOrigin>()) {
                let change = format!("derived origin {} was added", unapproved.origin);
                db.pause_connector(&connector.id, &trust::reason(&connector, &plugin, &[change])).await?;
            }
            result
        }
    };
    tracing::dispatcher::with_default(&dispatch, || {
        span.in_scope(|| match &result {
            Ok((summary, _)) => {
                if let Some(run) = summary.delivery.as_ref().and_then(|d| d.run.as_ref()) {
                    tracing::info!("CVM connector run {} ended: {}", run.run_id, run.counts_text());
                }
                tracing::info!(
                    assets = summary.assets_written,
                    vulnerabilities = summary.vulnerabilities_written,
                    files = summary.files_written.len(),
                    api_calls = summary.api_calls,
                    "run succeeded"
                )
            }
            Err(e) => tracing::warn!("run failed: {e:#}"),
        })
    });
    let (result, checkpoint) = match result {
        Ok((summary, checkpoint)) => (Ok(summary), Some(checkpoint)),
        Err(e) => (Err(e), None),
    };
    let outcome = outcome_of(result, started.elapsed());
    tokio::fs::remove_dir_all(shared.scratch.join(run_id)).await.ok();
    let lines = run_log.take();
    let stored = db.append_logs(run_id, &lines).await;
    // Delivered (its files stored and, with CVM, CVM's run ended well): only now does
    // the plugin's new state become where the next run starts, with the run's end.
    let commit = checkpoint.filter(|_| outcome.status == RunStatus::Succeeded).map(|c| incremental::to_row(&c));
    // A throttled run: the source's quota will have room again, so it runs again then,
    // without waiting for the schedule (or for someone to press Run now).
    let throttled = outcome.error_kind.as_deref() == Some(FailureKind::Throttled.as_str());
    let due_by = throttled.then(|| now_ms() + THROTTLED_RETRY.as_millis() as i64);
    let after = AfterRun { connector_id: &run.connector_id, checkpoint: commit.as_ref(), due_by };
    let finished = db.finish_run_committing(run_id, Some((&shared.name, attempt)), &outcome, Some(after)).await?;
    if !finished {
        tracing::warn!(run = %run_id, "another worker took this run over; its outcome here is not recorded");
    } else if throttled {
        tracing::info!(run = %run_id, "the source throttled the run; it runs again in {} minutes", THROTTLED_RETRY.as_secs() / 60);
    }
    stored
}

/// How long after a run the source throttled it runs again: Defender's quotas
/// count per minute and per hour, GitHub's per hour.
const THROTTLED_RETRY: Duration = Duration::from_secs(15 * 60);

/// The engine gave us a run another worker held: that worker was declared lost.
/// Take it over if nothing went to CVM yet; otherwise end it as failed.
async fn take_over(shared: &WorkerShared, run: &RunRow) -> Result<Option<i64>> {
    let previous = run.worker.clone().unwrap_or_default();
    if run.delivery_started == 0 {
        let taken = shared.db.take_over_run(&run.id, &shared.name, &previous, run.attempt).await?;
        if taken.is_some() {
            tracing::warn!(run = %run.id, lost = %previous, "took over a run from a worker that stopped answering");
        }
        return Ok(taken);
    }
    let outcome = Outcome {
        status: RunStatus::Failed,
        error: Some(format!(
            "worker {previous} stopped answering after its upload to CVM began; the run is not repeated, so nothing is uploaded twice. \
             Check the CVM connector's runs; the next run uploads everything again"
        )),
        ..Outcome::default()
    };
    shared.db.finish_run(&run.id, Some((&previous, run.attempt)), &outcome).await?;
    Ok(None)
}

/// The run's record: its summary and figures (its files are kept already), or its error.
fn outcome_of(result: Result<RunSummary>, took: Duration) -> Outcome {
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            let kind = e.chain().find_map(|cause| cause.downcast_ref::<PluginFailure>()).map(|f| f.kind);
            return Outcome {
                status: RunStatus::Failed,
                error: Some(format!("{e:#}")),
                error_kind: kind.map(|k| k.as_str().to_owned()),
                duration_ms: took.as_millis() as i64,
                ..Outcome::default()
            };
        }
    };
    let names: Vec<String> =
        summary.files_written.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    // The rows the plugin declared as its source rows (contract 0.4); an older plugin
    // declares none, and its counters that say "rows" stand in.
    let rows = summary
        .source_rows
        .unwrap_or_else(|| summary.counters.iter().filter(|(k, _)| k.contains("rows")).map(|(_, v)| *v).sum::<u64>());
    let cvm_result = summary.delivery.as_ref().and_then(|d| serde_json::to_string(d).ok());
    let mut json = serde_json::to_value(&summary).unwrap_or_default();
    // The worker's scratch paths mean nothing to a reader: the files by name.
    json["files_written"] = serde_json::json!(names);
    Outcome {
        status: RunStatus::Succeeded,
        summary: Some(json.to_string()),
        error: None,
        error_kind: None,
        cvm_result,
        duration_ms: took.as_millis() as i64,
        assets: summary.assets_written as i64,
        open_vulnerabilities: summary.vulnerabilities_written as i64,
        rows_read: rows as i64,
        api_calls: summary.api_calls as i64,
        throttled: summary.throttled_responses as i64,
    }
}

/// What a run needs from the database, read before it starts (asynchronously, so
/// the blocking run itself reaches the database only through its hooks: the
/// upload gate, its progress and the mass-close baseline).
struct Prepared {
    connector: ConnectorRow,
    plugin: Arc<Plugin>,
    checkpoint: Checkpoint,
}

/// The connector must not be paused, this worker must have the plugin the service
/// records, and that plugin must be the one an admin approved.
async fn prepare(shared: &WorkerShared, connector: ConnectorRow) -> Result<Prepared> {
    if let Some(reason) = &connector.paused_reason {
        bail!("the connector is {reason}");
    }
    let loaded = shared.catalogue.get(&connector.plugin_id).ok_or_else(|| {
        anyhow!(
            "plugin `{}` is not installed on worker {} (plugins directory {})",
            connector.plugin_id,
            shared.name,
            shared.catalogue.dir.display()
        )
    })?;
    let recorded = shared.db.plugin(&connector.plugin_id).await?;
    if let Some(recorded) = recorded.filter(|r| r.content_hash != loaded.row.content_hash) {
        bail!(
            "worker {} has plugin `{}` {} but the service records {} (another build); install the same plugin files on every worker",
            shared.name,
            loaded.row.id,
            loaded.row.version,
            recorded.version
        );
    }
    // Nothing of a plugin other than the one approved runs with the secrets.
    if let Some(reason) = trust::pause_reason(&connector, &loaded.plugin)? {
        shared.db.pause_connector(&connector.id, &reason).await?;
        bail!("the connector is {reason}");
    }
    // Where this run starts from: the state of the connector's last delivered run.
    let checkpoint = incremental::from_row(shared.db.checkpoint(&connector.id).await?);
    Ok(Prepared { connector, plugin: loaded.plugin.clone(), checkpoint })
}

/// The run itself, on a blocking thread: the connector's values opened, then
/// `run::run_and_deliver` (or `run::run`).
fn run_blocking(
    shared: &WorkerShared,
    run: &RunRow,
    prepared: &Prepared,
    attempt: i64,
    rt: &Handle,
) -> Result<(RunSummary, Checkpoint)> {
    let Prepared { connector, plugin, checkpoint } = prepared;
    let db = &shared.db;
    let approved_derived = Some(trust::approved(connector)?.derived.into_iter().collect());
    let values = Values::open(connector, &shared.vault)?;
    let config = values.config();

    let out_dir = shared.scratch.join(&run.id).join("out");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let events = progress_sink(db.clone(), run.id.clone(), rt.clone());
    let session = SessionOptions {
        allow_insecure_loopback: shared.allow_insecure_loopback,
        time_limit: None,
        approved_derived,
        progress: None,
    };
    let started = chrono::Utc::now();
    let next = incremental::next_run(connector, &plugin.info, checkpoint, started);
    tracing::info!(mode = next.mode.as_str(), "{}", next.why);
    let options = RunOptions {
        out_dir,
        events: Some(events),
        resume: checkpoint.resume(next.mode),
        keep_files: Some(keep_files(shared, rt.clone(), run.id.clone(), attempt)),
        ..RunOptions::default()
    };
    let result = match &values.cvm {
        None => run::run(&shared.host, plugin, &config, session, &options),
        Some(_) => {
            let mut delivery =
                DeliveryOptions::from_config(&config, shared.allow_insecure_loopback, None, false, false)?;
            delivery.baselines = Arc::new(DatabaseBaselines { db: db.clone(), rt: rt.clone() });
            delivery.upload_gate =
                Some(upload_gate(db.clone(), rt.clone(), run.id.clone(), shared.name.clone(), attempt));
            run::run_and_deliver(&shared.host, plugin, &config, session, &options, &delivery)
        }
    };
    // Committed by the caller once the run's files are stored (delivered).
    result.map(|summary| {
        let after = checkpoint.after(&summary, started);
        (summary, after)
    })
}

/// Puts the run's files in the file store, each streamed from the run's scratch
/// folder, then lists them in the database in one transaction: before anything goes
/// to CVM, so a store that refuses them fails the run undelivered. What was put
/// before a failure is deleted again: nothing half-kept is listed or left.
fn keep_files(shared: &WorkerShared, rt: Handle, run_id: String, attempt: i64) -> KeepFiles {
    let (db, files, retention, worker) =
        (shared.db.clone(), shared.files.clone(), shared.retention, shared.name.clone());
    KeepFiles(Arc::new(move |paths: &[PathBuf]| {
        rt.block_on(async {
            let mut kept: Vec<Kept> = Vec::with_capacity(paths.len());
            let holder = (worker.as_str(), attempt);
            let result = put_and_list(&db, &files, &run_id, holder, paths, retention, &mut kept).await;
            // Under this attempt's own keys: deleting them touches nobody else's.
            let stale = match &result {
                Ok(replaced) => replaced.clone(),
                Err(_) => kept.iter().map(|k| k.location.clone()).collect(),
            };
            for location in &stale {
                files.delete(location).await.ok();
            }
            result.map(|_| ())
        })?;
        tracing::info!(files = paths.len(), store = files.address(), "the run's files are kept");
        Ok(())
    }))
}

/// Puts each file, then lists them all; the locations of an earlier attempt's
/// files that this listing replaced.
async fn put_and_list(
    db: &Db,
    files: &FileStore,
    run_id: &str,
    holder: (&str, i64),
    paths: &[PathBuf],
    retention: Duration,
    kept: &mut Vec<Kept>,
) -> Result<Vec<String>> {
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let content = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        kept.push(files.put(&name, &FileStore::key(run_id, holder.1, &name), content).await?);
    }
    let expires_at = now_ms() + retention.as_millis() as i64;
    db.insert_files(run_id, holder, kept, expires_at).await
}

/// Claims the upload for this worker and attempt, or refuses it.
fn upload_gate(db: Db, rt: Handle, run_id: String, worker: String, attempt: i64) -> UploadGate {
    UploadGate(Arc::new(move || {
        if rt.block_on(db.mark_delivery_started(&run_id, &worker, attempt))? {
            Ok(())
        } else {
            bail!("worker {worker} no longer holds run {run_id} (another worker took it over); nothing was uploaded")
        }
    }))
}

/// The mass-close guard's baselines in the service's database, so every worker
/// sees the last upload of every connector. A baseline is kept as one JSON text:
/// each of its parts (`connector_cvm::baseline::PARTS`) by name, base64-encoded.
#[derive(Debug)]
struct DatabaseBaselines {
    db: Db,
    rt: Handle,
}

impl BaselineStore for DatabaseBaselines {
    fn load(&self, instance_key: &str) -> Result<Option<LastUpload>> {
        use base64::Engine as _;
        let Some(body) = self.rt.block_on(self.db.baseline(instance_key))? else { return Ok(None) };
        let place = format!("the database (instance {instance_key})");
        let damaged = || format!("the CVM baseline in {place} is damaged");
        let parts: BTreeMap<String, String> = serde_json::from_str(&body).with_context(damaged)?;
        let [meta, keys] = PARTS.map(|name| {
            let part = parts.get(name).ok_or_else(|| anyhow!("{}: {name} is missing", damaged()))?;
            base64::engine::general_purpose::STANDARD.decode(part).with_context(damaged)
        });
        LastUpload::decode(&meta?, &keys?, &place).map(Some)
    }

    fn save(&self, instance_key: &str, last: &LastUpload) -> Result<()> {
        use base64::Engine as _;
        let parts: BTreeMap<&str, String> = PARTS
            .into_iter()
            .zip(last.encode()?)
            .map(|(name, bytes)| (name, base64::engine::general_purpose::STANDARD.encode(bytes)))
            .collect();
        self.rt.block_on(self.db.set_baseline(instance_key, &serde_json::to_string(&parts)?))
    }
}

/// Progress for the API and the console, written at most twice a second.
fn progress_sink(db: Db, run_id: String, rt: Handle) -> EventSink {
    let last = Mutex::new((Instant::now() - Duration::from_secs(1), serde_json::Map::new()));
    Arc::new(move |event: &Event| {
        let mut last = last.lock().unwrap();
        // Stages go to the run's log as they begin; counts only to its progress.
        let stage = match event {
            Event::Progress { stage, done, total } => {
                if !last.1.contains_key(stage) {
                    tracing::info!("fetching {stage}");
                }
                last.1.insert(stage.clone(), serde_json::json!({"done": done, "total": total}));
                None
            }
            Event::Writing => {
                tracing::info!("every page fetched and mapped; writing the KDI files");
                Some("writing")
            }
            Event::Delivering => {
                tracing::info!("delivering the files to CVM");
                Some("delivering")
            }
            _ => return,
        };
        if let Some(stage) = stage {
            last.1.insert("stage".into(), stage.into());
        }
        if stage.is_none() && last.0.elapsed() < Duration::from_millis(500) {
            return;
        }
        last.0 = Instant::now();
        let text = serde_json::Value::Object(last.1.clone()).to_string();
        if let Err(e) = rt.block_on(db.set_progress(&run_id, &text)) {
            tracing::debug!("progress not stored: {e:#}");
        }
    })
}

/// Queued runs whose job never reached the queue are queued again (the process
/// stopped between the two); old files are deleted. Called now and then by `serve`.
pub(crate) async fn reconcile(db: &Db, queue: &Queue, files: &FileStore) -> Result<()> {
    for run in db.runs_not_enqueued(now_ms() - 30_000).await? {
        queue.push(&run).await?;
        db.mark_enqueued(&run).await?;
    }
    reap(db, now_ms()).await?;
    let expired = super::files::expire(db, files, now_ms()).await?;
    if expired > 0 {
        tracing::info!(files = expired, "deleted KDI files past their retention");
    }
    Ok(())
}

/// How long a run may wait for a worker before it is given up.
const QUEUED_AT_MOST: Duration = Duration::from_secs(24 * 3600);
/// Beyond a run's own limits, before it is given up.
const MARGIN: Duration = Duration::from_secs(30 * 60);

/// Ends, as failed, runs no worker can still be executing: running past the longest
/// a run may take (the sandbox's wall-clock limit, the connector's CVM run deadline,
/// a margin), or queued for a day. Otherwise such a run (its job lost or given up by
/// the job engine) would hold its connector's one active slot, and no schedule would
/// start it again. How many it ended.
pub(crate) async fn reap(db: &Db, now: i64) -> Result<usize> {
    let run_limit = connector_host::config::SandboxLimits::default().run_time;
    let shortest = (run_limit + MARGIN).as_millis() as i64;
    let mut ended = 0;
    for run in db.old_active_runs(now - shortest, now - QUEUED_AT_MOST.as_millis() as i64).await? {
        let error = if run.status() == Some(RunStatus::Queued) {
            format!(
                "no worker took this run within {} h of its queueing; are workers running (`connector-host worker`, or `serve` without --workers 0)?",
                QUEUED_AT_MOST.as_secs() / 3600
            )
        } else {
            let cvm_deadline = match db.connector(&run.connector_id).await? {
                Some(c) => c
                    .cvm
                    .as_deref()
                    .and_then(|cvm| serde_json::from_str::<std::collections::BTreeMap<String, String>>(cvm).ok())
                    .map(|cvm| {
                        let minutes = cvm
                            .get("run_deadline_minutes")
                            .and_then(|m| m.parse::<u64>().ok())
                            .unwrap_or(connector_host::cvm::config::DEFAULT_RUN_DEADLINE_MINUTES);
                        Duration::from_secs(minutes * 60)
                    })
                    .unwrap_or_default(),
                None => Duration::ZERO,
            };
            let longest = run_limit + cvm_deadline + MARGIN;
            if run.started_at.is_some_and(|t| now - t < longest.as_millis() as i64) {
                continue;
            }
            format!(
                "worker {} did not finish this run within {} min, the longest a run may take; it was given up (a lost worker whose job the engine did not hand out again)",
                run.worker.as_deref().unwrap_or("?"),
                longest.as_secs() / 60
            )
        };
        let outcome = Outcome { status: RunStatus::Failed, error: Some(error), ..Outcome::default() };
        if db.finish_run(&run.id, None, &outcome).await? {
            tracing::warn!(run = %run.id, connector = %run.connector_id, "a stale run was ended as failed");
            ended += 1;
        }
    }
    Ok(ended)
}
