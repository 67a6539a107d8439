//! The platform service: connectors, their secrets, schedules and runs kept in a
//! database (SQLite on one machine, PostgreSQL for many), a REST API (`serve`), and
//! workers that share the due runs through the database (`worker`, or in `serve`).
//!
//! ```text
//! serve:  REST API (api) ─┬─ store (sqlx: SQLite | PostgreSQL) ── vault (sealed secrets)
//!         scheduler ──────┤
//!                         └─ queue (apalis) ──> worker ──> run::run_and_deliver
//! worker: queue (apalis) ──> worker ──> run::run_and_deliver ──> files (file store: the KDI files,
//!                                                                   before delivery)
//!                                                              ──> store (file rows, log, summary)
//! ```
//!
//! Every run goes through the library's own path (sandbox, limits, join, KDI files,
//! delivery with the mass-close guard); the service adds where settings come from
//! and where results go.
//!
//! A run's log lines are caught from `tracing` by a dispatcher of the run's own,
//! which passes them on to whatever subscriber the embedding program installed, so
//! a program that embeds [`serve`] or [`worker`] gets run logs with nothing to add.

#![deny(dead_code)]

mod api;
mod auth;
mod catalogue;
mod connectors;
mod console;
mod domain;
mod files;
mod incremental;
mod metrics;
mod run_log;
mod schedule;
mod store;
mod trust;
mod vault;
mod worker;

pub use auth::ADMIN_TOKEN_ENV;
pub use vault::KEY_ENV as SECRET_KEY_ENV;

use anyhow::{Context, Result};
use catalogue::Catalogue;
use connector_host::engine::PluginHost;
use files::FileStore;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use store::{now_ms, Db};
use tokio::sync::watch;
use vault::{KeySource, Vault};
use worker::{Queue, WorkerShared};

/// Options shared by `serve` and `worker`.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// `postgres://...` or `sqlite://PATH`; `None`: SQLite in the state directory.
    pub database: Option<String>,
    /// Where plugins are; `None`: `<state-dir>/plugins`, else the ones this repository builds.
    pub plugins: Option<PathBuf>,
    /// Where the SQLite database, the secret key file and run scratch space live.
    pub state_dir: PathBuf,
    /// Allow `http://` to loopback addresses (simulators, local tests).
    pub allow_insecure_loopback: bool,
    /// Runs a worker executes at once (0 in `serve`: no worker in the process).
    pub concurrency: usize,
    /// How long a worker that stopped answering keeps its runs before another takes them.
    pub lease: Duration,
    /// How long KDI files are kept.
    pub retention: Duration,
    /// Where run files are kept: a directory, `s3://BUCKET/PREFIX`,
    /// `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX`; `None`: `<state-dir>/files`.
    pub files: Option<String>,
    /// An S3-compatible server's address, for `s3://` (MinIO, Ceph, ...).
    pub files_endpoint: Option<String>,
}

/// The database file `serve` uses when not told otherwise.
pub const DEFAULT_DATABASE_FILE: &str = "connector-host.db";

/// What `serve` and `worker` open at start.
struct Opened {
    db: Db,
    vault: Vault,
    host: Arc<PluginHost>,
    catalogue: Arc<Catalogue>,
    queue: Queue,
    files: FileStore,
}

/// The database `options` name: SQLite in the state directory unless told.
fn database_url(options: &ServiceOptions) -> String {
    let default = || format!("sqlite://{}", options.state_dir.join(DEFAULT_DATABASE_FILE).display());
    options.database.clone().unwrap_or_else(default)
}

/// Opens the database (schema up to date), the secret key (checked against the
/// database), the plugins and the queue.
async fn open(options: &ServiceOptions) -> Result<Opened> {
    let state = &options.state_dir;
    if !state.exists() {
        // It holds the database and the secret key: the owner's alone.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state)
            .with_context(|| format!("cannot create the state directory {}", state.display()))?;
    }
    let url = database_url(options);
    let db = Db::connect(&url).await?;
    db.migrate().await?;
    let vault = open_vault(&db, options).await?;
    let host = Arc::new(PluginHost::new()?);
    let (dir, built_only) = match &options.plugins {
        Some(dir) => (dir.clone(), false),
        None => catalogue::default_dir(state),
    };
    let host2 = host.clone();
    let catalogue = tokio::task::spawn_blocking(move || Catalogue::load(&host2, &dir, built_only)).await??;
    let queue_url = match &db {
        Db::Sqlite(_) => Some(match url.strip_suffix(".db") {
            Some(stem) => format!("{stem}-jobs.db"),
            None => format!("{url}-jobs"),
        }),
        Db::Postgres(_) => None,
    };
    let queue = Queue::open(&db, queue_url.as_deref(), options.lease).await?;
    let files = open_files(options, &db)?;
    Ok(Opened { db, vault, host, catalogue: Arc::new(catalogue), queue, files })
}

/// The file store; a word when a directory on this machine serves machines sharing
/// a PostgreSQL database (other machines cannot read it).
fn open_files(options: &ServiceOptions, db: &Db) -> Result<FileStore> {
    let files = FileStore::open(options.files.as_deref(), options.files_endpoint.as_deref(), &options.state_dir)?;
    if files.is_local() && matches!(db, Db::Postgres(_)) {
        tracing::warn!(
            "run files are kept in {} on this machine: `serve` and workers on other machines cannot read them; give them all --files s3://... (or one shared directory)",
            files.address()
        );
    }
    tracing::info!(files = files.address(), "run files are kept in the file store");
    Ok(files)
}

/// The secret key: refused when it is not the one the database's secrets were sealed
/// with, or missing once secrets exist; nothing is written before that check.
async fn open_vault(db: &Db, options: &ServiceOptions) -> Result<Vault> {
    const CHECK: &str = "secret_key_check";
    let check = db.meta(CHECK).await?;
    let env = std::env::var(vault::KEY_ENV).ok().filter(|v| !v.is_empty());
    let vault =
        Vault::open(KeySource::find(&options.state_dir, env, check.is_some())).context("cannot open the secret key")?;
    match check {
        Some(sealed) => vault.check_canary(&sealed)?,
        None => db.set_meta(CHECK, &vault.canary()?).await?,
    }
    Ok(vault)
}

/// A future that resolves on SIGTERM or Ctrl-C.
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn worker_shared(opened: &Opened, options: &ServiceOptions) -> Arc<WorkerShared> {
    Arc::new(WorkerShared {
        db: opened.db.clone(),
        vault: opened.vault.clone(),
        host: opened.host.clone(),
        catalogue: opened.catalogue.clone(),
        name: worker::worker_name(),
        allow_insecure_loopback: options.allow_insecure_loopback,
        retention: options.retention,
        scratch: options.state_dir.join("runs"),
        files: opened.files.clone(),
    })
}

/// Waits until `stop` changes.
async fn stopped(mut stop: watch::Receiver<bool>) {
    stop.changed().await.ok();
}

/// One of the commands below, as a future to run on a multi-threaded tokio runtime
/// (`block_on` it, or `.await` it in an async program). Boxed here, so that the
/// service's async code (sqlx, apalis, axum, object_store) is compiled once, in this
/// crate: a caller that polled the commands' own future types compiled all of it
/// again (about 40 s of CPU in the CLI's build).
pub type Command = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// `connector-host serve`: the API, the scheduler and (unless `concurrency` is 0) a
/// worker, until SIGTERM. Prints the address it listens on, and a first admin token
/// when it made one.
pub fn serve(options: ServiceOptions, listen: SocketAddr) -> Command {
    Box::pin(serve_until_stopped(options, listen))
}

async fn serve_until_stopped(options: ServiceOptions, listen: SocketAddr) -> Result<()> {
    let opened = open(&options).await?;
    opened.catalogue.record(&opened.db, &opened.vault).await?;
    let first_token =
        auth::bootstrap(&opened.db, std::env::var(ADMIN_TOKEN_ENV).ok().filter(|t| !t.is_empty())).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    println!("connector-host serve: listening on http://{address}");
    if let Some(token) = first_token {
        println!("first admin token (shown once; keep it, it is stored only hashed): {token}");
    }
    use std::io::Write;
    std::io::stdout().flush().ok();

    let (stop_tx, stop_rx) = watch::channel(false);
    let scheduler =
        tokio::spawn(schedule_loop(opened.db.clone(), opened.queue.clone(), opened.files.clone(), stop_rx.clone()));
    let in_process_worker = (options.concurrency > 0).then(|| {
        let shared = worker_shared(&opened, &options);
        tokio::spawn(worker::run_worker(shared, opened.queue.clone(), options.concurrency, stopped(stop_rx.clone())))
    });
    let app = Arc::new(api::App {
        db: opened.db.clone(),
        vault: opened.vault.clone(),
        host: opened.host.clone(),
        catalogue: opened.catalogue.clone(),
        queue: opened.queue.clone(),
        allow_insecure_loopback: options.allow_insecure_loopback,
        files: opened.files.clone(),
        retention: options.retention,
    });
    let served = axum::serve(listener, api::router(app)).with_graceful_shutdown(termination()).await;
    tracing::info!("stopping: no new runs are taken; runs in progress finish");
    stop_tx.send(true).ok();
    scheduler.await.ok();
    if let Some(worker) = in_process_worker {
        worker.await??;
    }
    served.context("the API server failed")
}

/// `connector-host worker`: only a worker, until SIGTERM.
pub fn worker(options: ServiceOptions) -> Command {
    Box::pin(work_until_stopped(options))
}

async fn work_until_stopped(options: ServiceOptions) -> Result<()> {
    let opened = open(&options).await?;
    let shared = worker_shared(&opened, &options);
    println!("connector-host worker {} started ({} runs at once)", shared.name, options.concurrency.max(1));
    use std::io::Write;
    std::io::stdout().flush().ok();
    worker::run_worker(shared, opened.queue.clone(), options.concurrency.max(1), termination()).await
}

/// `connector-host files migrate`: moves the run files kept in the database (by
/// versions before the file store) into the configured file store, one at a time;
/// run again after an interruption, it goes on where it stopped. Prints a line per
/// file and a total.
pub fn migrate_files(options: ServiceOptions) -> Command {
    Box::pin(migrate_files_to_store(options))
}

async fn migrate_files_to_store(options: ServiceOptions) -> Result<()> {
    let db = Db::connect(&database_url(&options)).await?;
    db.migrate().await?;
    let files = open_files(&options, &db)?;
    println!("moving run files from the database to {}", files.address());
    let moved = files::migrate(&db, &files, |run, kept| {
        println!("{run}/{}: {} bytes ({} kept) -> {}", kept.name, kept.bytes, kept.stored_bytes, kept.location)
    })
    .await?;
    println!("{moved} files moved; none is left in the database");
    if moved > 0 {
        println!("{}", db.compact_after_move().await?);
    }
    Ok(())
}

/// Starts due scheduled runs every second; requeues lost jobs and deletes old files
/// every half minute.
async fn schedule_loop(db: Db, queue: Queue, files: FileStore, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = start_due_runs(&db, &queue).await {
            tracing::warn!("scheduler: {e:#}");
        }
        if ticks.is_multiple_of(30) {
            if let Err(e) = worker::reconcile(&db, &queue, &files).await {
                tracing::warn!("reconcile: {e:#}");
            }
        }
        ticks += 1;
    }
}

/// Each due connector's schedule moves on (one scheduler wins, even with many), and
/// a run starts unless the connector's last one is still going.
async fn start_due_runs(db: &Db, queue: &Queue) -> Result<()> {
    let now = now_ms();
    for connector in db.due_connectors(now).await? {
        let Some(due) = connector.next_due_at else { continue };
        let next = connectors::next_due(connector.schedule.as_deref(), now);
        if !db.advance_schedule(&connector.id, due, next).await? {
            continue;
        }
        if let Err(active) = api::queue_run(db, queue, &connector.id, "schedule").await? {
            tracing::info!(connector = %connector.id, run = %active, "scheduled run not started: the previous run is still going");
        }
    }
    Ok(())
}
