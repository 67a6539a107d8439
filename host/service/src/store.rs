//! The service's database: SQLite (one file in the state directory) or PostgreSQL,
//! through sqlx, with one set of migrations (`host/service/migrations/`) and one text for
//! every query (`$1` parameters read the same in both).

use super::domain::RunStatus;
use super::files::Kept;
use anyhow::{bail, Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The database, whichever it is.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    /// An embedded SQLite file.
    Sqlite(SqlitePool),
    /// A PostgreSQL server.
    Postgres(PgPool),
}

/// Runs the same statement on whichever database it is: the query text and its
/// bindings are the same, sqlx's types differ.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// Due again by `$2` (ms), unless due sooner.
const DUE_BY: &str =
    "UPDATE connectors SET next_due_at = $2 WHERE id = $1 AND (next_due_at IS NULL OR next_due_at > $2)";

/// What a run's end changes for its connector ([`Db::finish_run_committing`]).
pub(crate) struct AfterRun<'a> {
    pub(crate) connector_id: &'a str,
    /// A delivered run's checkpoint: where the connector's next run starts.
    pub(crate) checkpoint: Option<&'a CheckpointRow>,
    /// Due again by this time (ms), unless due sooner.
    pub(crate) due_by: Option<i64>,
}

const UPSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (connector_id, state, state_from, last_baseline, updated_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (connector_id) DO UPDATE SET state = excluded.state, state_from = excluded.state_from,
      last_baseline = excluded.last_baseline, updated_at = excluded.updated_at";

/// Milliseconds since the Unix epoch, UTC: how every time is kept.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A random identifier with a prefix that says what it names (`c_` connector, `r_` run).
pub(crate) fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).expect("randomness for an identifier");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// A stored plugin.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PluginRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) contract: String,
    pub(crate) description: String,
    pub(crate) scanner_type: String,
    pub(crate) fields: String,
    pub(crate) egress: String,
    pub(crate) content_hash: String,
    pub(crate) file_name: String,
}

/// A stored connector (secrets sealed).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ConnectorRow {
    pub(crate) id: String,
    pub(crate) plugin_id: String,
    pub(crate) name: String,
    pub(crate) settings: String,
    pub(crate) secrets: String,
    pub(crate) cvm: Option<String>,
    pub(crate) schedule: Option<String>,
    pub(crate) next_due_at: Option<i64>,
    pub(crate) enabled: i64,
    pub(crate) trust: String,
    pub(crate) trusted_version: String,
    pub(crate) paused_reason: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    /// Days between full baselines (`None`: weekly).
    pub(crate) baseline_days: Option<i64>,
}

/// Where a connector's next run starts from (see `connector_host::checkpoint`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    pub(crate) state: Option<Vec<u8>>,
    pub(crate) state_from: Option<i64>,
    pub(crate) last_baseline: Option<i64>,
}

/// A stored run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub(crate) id: String,
    pub(crate) connector_id: String,
    pub(crate) triggered_by: String,
    pub(crate) status: String,
    pub(crate) queued_at: i64,
    pub(crate) started_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
    pub(crate) worker: Option<String>,
    pub(crate) attempt: i64,
    pub(crate) delivery_started: i64,
    pub(crate) progress: Option<String>,
    pub(crate) summary: Option<String>,
    pub(crate) error: Option<String>,
    /// The kind of a failure the plugin reported (`FailureKind::as_str`).
    pub(crate) error_kind: Option<String>,
    pub(crate) cvm_result: Option<String>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) assets: Option<i64>,
    pub(crate) open_vulnerabilities: Option<i64>,
}

impl RunRow {
    /// Its status; `None` for a value no version of the service writes.
    pub(crate) fn status(&self) -> Option<RunStatus> {
        RunStatus::parse(&self.status)
    }
}

/// A run's outcome, with the figures metrics add up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub(crate) status: RunStatus,
    pub(crate) summary: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) error_kind: Option<String>,
    pub(crate) cvm_result: Option<String>,
    pub(crate) duration_ms: i64,
    pub(crate) assets: i64,
    pub(crate) open_vulnerabilities: i64,
    pub(crate) rows_read: i64,
    pub(crate) api_calls: i64,
    pub(crate) throttled: i64,
}

/// A log line of a run.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub(crate) struct LogRow {
    pub(crate) at: i64,
    pub(crate) level: String,
    pub(crate) message: String,
}

/// A KDI file of a run, without its content.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct FileRow {
    pub(crate) run_id: String,
    pub(crate) name: String,
    pub(crate) bytes: i64,
    /// SHA-256 of the content; none for a file written before the file store.
    pub(crate) sha256: Option<String>,
}

/// A worker lists a run's files only while it holds the run ([`Db::insert_files`]).
#[derive(Debug)]
pub(crate) struct NotHolder {
    run: String,
    worker: String,
}

impl std::fmt::Display for NotHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "worker {} no longer holds run {} (another worker took it over); its files are not listed",
            self.worker, self.run
        )
    }
}

impl std::error::Error for NotHolder {}

/// Where a run's file is ([`Db::file_place`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct FilePlace {
    /// Its size as a client reads it.
    pub(crate) bytes: i64,
    /// In the file store.
    pub(crate) location: Option<String>,
    /// Gzipped in the database: a file written before the file store.
    pub(crate) content: Option<Vec<u8>>,
}

/// A stored API token (its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct TokenRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) created_at: i64,
}

/// Per connector and status: how many runs, and what they added up to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RunTotals {
    pub(crate) connector_id: String,
    pub(crate) connector_name: String,
    pub(crate) status: String,
    pub(crate) runs: i64,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) rows_read: Option<i64>,
    pub(crate) api_calls: Option<i64>,
    pub(crate) throttled: Option<i64>,
}

/// Whether a statement failed on a uniqueness rule (a second active run, a name taken).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// An insert that may meet a uniqueness rule.
pub(crate) enum Inserted {
    /// Inserted.
    Yes,
    /// A row with the same unique value exists.
    Conflict,
}

impl Db {
    /// Connects: `sqlite://PATH` (created if missing) or `postgres://...`.
    pub(crate) async fn connect(url: &str) -> Result<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(url)))?;
            Ok(Db::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("`{url}` is not a SQLite URL"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open the SQLite database {url}"))?;
            Ok(Db::Sqlite(pool))
        } else {
            bail!("`{}` is not a database URL: use sqlite://PATH or postgres://USER@HOST/DB", redact_url(url))
        }
    }

    /// Creates or updates the schema (the same migrations for both databases; their
    /// table is named for this service, apart from the job engine's).
    pub(crate) async fn migrate(&self) -> Result<()> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.dangerous_set_table_name("connector_host_migrations");
        on_db!(self, pool => migrator.run(pool).await).context("cannot create or update the database schema")
    }

    // --- meta ---

    pub(crate) async fn meta(&self, key: &str) -> Result<Option<String>> {
        let q = "SELECT value FROM meta WHERE key = $1";
        Ok(on_db!(self, p => sqlx::query_scalar(q).bind(key).fetch_optional(p).await)?)
    }

    pub(crate) async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let q = "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        on_db!(self, p => sqlx::query(q).bind(key).bind(value).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // --- tokens ---

    pub(crate) async fn insert_token(&self, id: &str, name: &str, role: &str, hash: &str) -> Result<()> {
        let q = "INSERT INTO tokens (id, name, role, hash, created_at) VALUES ($1, $2, $3, $4, $5)";
        on_db!(self, p => sqlx::query(q).bind(id).bind(name).bind(role).bind(hash).bind(now_ms()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub(crate) async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        let q = "SELECT id, name, role, created_at FROM tokens WHERE hash = $1";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(hash).fetch_optional(p).await)?)
    }

    pub(crate) async fn tokens(&self) -> Result<Vec<TokenRow>> {
        let q = "SELECT id, name, role, created_at FROM tokens ORDER BY created_at";
        Ok(on_db!(self, p => sqlx::query_as(q).fetch_all(p).await)?)
    }

    pub(crate) async fn count_admin_tokens(&self) -> Result<i64> {
        let q = "SELECT COUNT(*) FROM tokens WHERE role = 'admin'";
        Ok(on_db!(self, p => sqlx::query_scalar(q).fetch_one(p).await)?)
    }

    pub(crate) async fn delete_token(&self, id: &str) -> Result<bool> {
        let done = on_db!(self, p => sqlx::query("DELETE FROM tokens WHERE id = $1").bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    // --- plugins ---

    pub(crate) async fn upsert_plugin(&self, row: &PluginRow) -> Result<()> {
        let q = "INSERT INTO plugins (id, name, version, contract, description, scanner_type, fields, egress, content_hash, file_name, loaded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version, contract = excluded.contract,
                   description = excluded.description, scanner_type = excluded.scanner_type, fields = excluded.fields,
                   egress = excluded.egress, content_hash = excluded.content_hash, file_name = excluded.file_name,
                   loaded_at = excluded.loaded_at";
        on_db!(self, p => sqlx::query(q)
            .bind(&row.id).bind(&row.name).bind(&row.version).bind(&row.contract).bind(&row.description)
            .bind(&row.scanner_type).bind(&row.fields).bind(&row.egress).bind(&row.content_hash)
            .bind(&row.file_name).bind(now_ms())
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub(crate) async fn plugins(&self) -> Result<Vec<PluginRow>> {
        let q = "SELECT id, name, version, contract, description, scanner_type, fields, egress, content_hash, file_name FROM plugins ORDER BY name";
        Ok(on_db!(self, p => sqlx::query_as(q).fetch_all(p).await)?)
    }

    pub(crate) async fn plugin(&self, id: &str) -> Result<Option<PluginRow>> {
        let q = "SELECT id, name, version, contract, description, scanner_type, fields, egress, content_hash, file_name FROM plugins WHERE id = $1";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(id).fetch_optional(p).await)?)
    }

    // --- connectors ---

    const CONNECTOR_COLUMNS: &'static str = "id, plugin_id, name, settings, secrets, cvm, schedule, next_due_at, enabled, trust, trusted_version, paused_reason, created_at, updated_at, baseline_days";

    /// Inserts a connector, or reports that its name is taken.
    pub(crate) async fn insert_connector(&self, c: &ConnectorRow) -> Result<Inserted> {
        let q = format!(
            "INSERT INTO connectors ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            Self::CONNECTOR_COLUMNS
        );
        let done = on_db!(self, p => sqlx::query(sqlx::AssertSqlSafe(q.as_str()))
            .bind(&c.id).bind(&c.plugin_id).bind(&c.name).bind(&c.settings).bind(&c.secrets).bind(&c.cvm)
            .bind(&c.schedule).bind(c.next_due_at).bind(c.enabled).bind(&c.trust).bind(&c.trusted_version)
            .bind(&c.paused_reason).bind(c.created_at).bind(c.updated_at).bind(c.baseline_days)
            .execute(p).await.map(|r| r.rows_affected()));
        match done {
            Ok(_) => Ok(Inserted::Yes),
            Err(e) if is_unique_violation(&e) => Ok(Inserted::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a connector's stored values, or reports that its new name is taken.
    pub(crate) async fn update_connector(&self, c: &ConnectorRow) -> Result<Inserted> {
        let q =
            "UPDATE connectors SET name = $2, settings = $3, secrets = $4, cvm = $5, schedule = $6, next_due_at = $7,
                   enabled = $8, trust = $9, trusted_version = $10, paused_reason = $11, updated_at = $12,
                   baseline_days = $13 WHERE id = $1";
        let done = on_db!(self, p => sqlx::query(q)
            .bind(&c.id).bind(&c.name).bind(&c.settings).bind(&c.secrets).bind(&c.cvm).bind(&c.schedule)
            .bind(c.next_due_at).bind(c.enabled).bind(&c.trust).bind(&c.trusted_version).bind(&c.paused_reason)
            .bind(now_ms()).bind(c.baseline_days)
            .execute(p).await.map(|r| r.rows_affected()));
        match done {
            Ok(_) => Ok(Inserted::Yes),
            Err(e) if is_unique_violation(&e) => Ok(Inserted::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn connectors(&self) -> Result<Vec<ConnectorRow>> {
        let q = format!("SELECT {} FROM connectors ORDER BY name", Self::CONNECTOR_COLUMNS);
        Ok(on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).fetch_all(p).await)?)
    }

    pub(crate) async fn connector(&self, id: &str) -> Result<Option<ConnectorRow>> {
        let q = format!("SELECT {} FROM connectors WHERE id = $1", Self::CONNECTOR_COLUMNS);
        Ok(on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(id).fetch_optional(p).await)?)
    }

    pub(crate) async fn delete_connector(&self, id: &str) -> Result<bool> {
        let done = on_db!(self, p => sqlx::query("DELETE FROM connectors WHERE id = $1").bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Pauses a connector until an admin approves what its plugin now asks for.
    pub(crate) async fn pause_connector(&self, id: &str, reason: &str) -> Result<()> {
        let q = "UPDATE connectors SET paused_reason = $2, updated_at = $3 WHERE id = $1";
        on_db!(self, p => sqlx::query(q).bind(id).bind(reason).bind(now_ms()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Enabled, unpaused, scheduled connectors due at `now`.
    pub(crate) async fn due_connectors(&self, now: i64) -> Result<Vec<ConnectorRow>> {
        let q = format!(
            "SELECT {} FROM connectors WHERE enabled = 1 AND paused_reason IS NULL AND next_due_at IS NOT NULL AND next_due_at <= $1",
            Self::CONNECTOR_COLUMNS
        );
        Ok(on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(now).fetch_all(p).await)?)
    }

    /// Moves a connector's next due time from `old` to `new`; false when another
    /// scheduler moved it first (that one starts the run).
    pub(crate) async fn advance_schedule(&self, id: &str, old: i64, new: Option<i64>) -> Result<bool> {
        let q = "UPDATE connectors SET next_due_at = $3 WHERE id = $1 AND next_due_at = $2";
        let done =
            on_db!(self, p => sqlx::query(q).bind(id).bind(old).bind(new).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    // --- runs ---

    const RUN_COLUMNS: &'static str = "id, connector_id, triggered_by, status, queued_at, started_at, finished_at, worker, attempt, delivery_started, progress, summary, error, error_kind, cvm_result, duration_ms, assets, open_vulnerabilities";

    /// Queues a run, or reports that the connector has one queued or running.
    pub(crate) async fn insert_run(&self, id: &str, connector_id: &str, triggered_by: &str) -> Result<Inserted> {
        let q =
            "INSERT INTO runs (id, connector_id, triggered_by, status, queued_at, attempt, delivery_started, enqueued)
                 VALUES ($1, $2, $3, 'queued', $4, 0, 0, 0)";
        let done = on_db!(self, p => sqlx::query(q).bind(id).bind(connector_id).bind(triggered_by).bind(now_ms()).execute(p).await.map(|r| r.rows_affected()));
        match done {
            Ok(_) => Ok(Inserted::Yes),
            Err(e) if is_unique_violation(&e) => Ok(Inserted::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn mark_enqueued(&self, id: &str) -> Result<()> {
        on_db!(self, p => sqlx::query("UPDATE runs SET enqueued = 1 WHERE id = $1").bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Queued runs whose job was never handed to the job engine (the process stopped
    /// in between), older than `before`.
    pub(crate) async fn runs_not_enqueued(&self, before: i64) -> Result<Vec<String>> {
        let q = "SELECT id FROM runs WHERE status = 'queued' AND enqueued = 0 AND queued_at < $1";
        Ok(on_db!(self, p => sqlx::query_scalar(q).bind(before).fetch_all(p).await)?)
    }

    /// Runs running since before `started_before`, or queued since before `queued_before`.
    pub(crate) async fn old_active_runs(&self, started_before: i64, queued_before: i64) -> Result<Vec<RunRow>> {
        let q = format!(
            "SELECT {} FROM runs WHERE (status = 'running' AND started_at < $1) OR (status = 'queued' AND queued_at < $2)",
            Self::RUN_COLUMNS
        );
        Ok(
            on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(started_before).bind(queued_before).fetch_all(p).await)?,
        )
    }

    pub(crate) async fn active_run(&self, connector_id: &str) -> Result<Option<String>> {
        let q = "SELECT id FROM runs WHERE connector_id = $1 AND status IN ('queued', 'running')";
        Ok(on_db!(self, p => sqlx::query_scalar(q).bind(connector_id).fetch_optional(p).await)?)
    }

    pub(crate) async fn run(&self, id: &str) -> Result<Option<RunRow>> {
        let q = format!("SELECT {} FROM runs WHERE id = $1", Self::RUN_COLUMNS);
        Ok(on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(id).fetch_optional(p).await)?)
    }

    /// Runs, newest first; of one connector when given.
    pub(crate) async fn runs(&self, connector_id: Option<&str>, limit: i64) -> Result<Vec<RunRow>> {
        let q = format!(
            // The CAST tells PostgreSQL the type of a parameter compared with NULL;
            // SQLite reads it the same.
            "SELECT {} FROM runs WHERE (CAST($1 AS TEXT) IS NULL OR connector_id = $1) ORDER BY queued_at DESC, id DESC LIMIT $2",
            Self::RUN_COLUMNS
        );
        Ok(
            on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(connector_id).bind(limit).fetch_all(p).await)?,
        )
    }

    /// The latest run of every connector that has one, in one query.
    pub(crate) async fn last_runs(&self) -> Result<Vec<RunRow>> {
        let q = format!(
            "SELECT {} FROM runs r WHERE queued_at = (SELECT MAX(l.queued_at) FROM runs l WHERE l.connector_id = r.connector_id)
             ORDER BY queued_at DESC, id DESC",
            Self::RUN_COLUMNS
        );
        Ok(on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).fetch_all(p).await)?)
    }

    /// Claims a queued run for `worker`; returns the attempt number, or `None` when
    /// the run is not queued (another worker has it, or it ended).
    pub(crate) async fn claim_run(&self, id: &str, worker: &str) -> Result<Option<i64>> {
        let q = "UPDATE runs SET status = 'running', worker = $2, started_at = $3, attempt = attempt + 1
                 WHERE id = $1 AND status = 'queued' RETURNING attempt";
        Ok(on_db!(self, p => sqlx::query_scalar(q).bind(id).bind(worker).bind(now_ms()).fetch_optional(p).await)?)
    }

    /// Takes over a run whose worker was declared lost by the job engine, if it is
    /// still as that worker left it.
    pub(crate) async fn take_over_run(
        &self,
        id: &str,
        worker: &str,
        from_worker: &str,
        from_attempt: i64,
    ) -> Result<Option<i64>> {
        let q = "UPDATE runs SET worker = $2, started_at = $3, attempt = attempt + 1
                 WHERE id = $1 AND status = 'running' AND worker = $4 AND attempt = $5 AND delivery_started = 0 RETURNING attempt";
        Ok(
            on_db!(self, p => sqlx::query_scalar(q).bind(id).bind(worker).bind(now_ms()).bind(from_worker).bind(from_attempt).fetch_optional(p).await)?,
        )
    }

    /// Records that delivery to CVM begins: from here on, the run is never repeated.
    pub(crate) async fn mark_delivery_started(&self, id: &str, worker: &str, attempt: i64) -> Result<bool> {
        let q = "UPDATE runs SET delivery_started = 1 WHERE id = $1 AND worker = $2 AND attempt = $3 AND status = 'running'";
        let done = on_db!(self, p => sqlx::query(q).bind(id).bind(worker).bind(attempt).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    pub(crate) async fn set_progress(&self, id: &str, progress: &str) -> Result<()> {
        on_db!(self, p => sqlx::query("UPDATE runs SET progress = $2 WHERE id = $1 AND status = 'running'").bind(id).bind(progress).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Ends a run held by `worker` in `attempt`; false when it no longer holds it.
    pub(crate) async fn finish_run(&self, id: &str, worker: Option<(&str, i64)>, o: &Outcome) -> Result<bool> {
        self.finish_run_committing(id, worker, o, None).await
    }

    /// Ends a run and makes what its end changes for its connector, in the same
    /// transaction: whoever sees the run ended also sees its state and when it is due.
    pub(crate) async fn finish_run_committing(
        &self,
        id: &str,
        worker: Option<(&str, i64)>,
        o: &Outcome,
        after: Option<AfterRun<'_>>,
    ) -> Result<bool> {
        let q = "UPDATE runs SET status = $2, finished_at = $3, summary = $4, error = $5, cvm_result = $6, duration_ms = $7,
                   assets = $8, open_vulnerabilities = $9, rows_read = $10, api_calls = $11, throttled = $12, error_kind = $15
                 WHERE id = $1 AND status IN ('queued', 'running') AND ($13 = '' OR (worker = $13 AND attempt = $14))";
        let (w, a) = worker.unwrap_or(("", 0));
        let done = on_db!(self, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query(q)
                .bind(id).bind(o.status.as_str()).bind(now_ms()).bind(&o.summary).bind(&o.error).bind(&o.cvm_result)
                .bind(o.duration_ms).bind(o.assets).bind(o.open_vulnerabilities).bind(o.rows_read).bind(o.api_calls)
                .bind(o.throttled).bind(w).bind(a).bind(&o.error_kind)
                .execute(&mut *tx).await?.rows_affected();
            if let (1, Some(after)) = (done, &after) {
                if let Some(c) = after.checkpoint {
                    sqlx::query(UPSERT_CHECKPOINT).bind(after.connector_id).bind(&c.state).bind(c.state_from)
                        .bind(c.last_baseline).bind(now_ms()).execute(&mut *tx).await?;
                }
                if let Some(at) = after.due_by {
                    sqlx::query(DUE_BY).bind(after.connector_id).bind(at).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            done
        });
        Ok(done == 1)
    }

    // --- logs and files ---

    /// Appends lines after those stored, in one transaction.
    pub(crate) async fn append_logs(&self, run_id: &str, lines: &[LogRow]) -> Result<()> {
        let next = "SELECT COALESCE(MAX(seq) + 1, 0) FROM run_logs WHERE run_id = $1";
        let insert = "INSERT INTO run_logs (run_id, seq, at, level, message) VALUES ($1, $2, $3, $4, $5)";
        on_db!(self, p => {
            let mut tx = p.begin().await?;
            let first: i64 = sqlx::query_scalar(next).bind(run_id).fetch_one(&mut *tx).await?;
            for (i, line) in lines.iter().enumerate() {
                sqlx::query(insert).bind(run_id).bind(first + i as i64).bind(line.at).bind(&line.level).bind(&line.message)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub(crate) async fn logs(&self, run_id: &str) -> Result<Vec<LogRow>> {
        let q = "SELECT at, level, message FROM run_logs WHERE run_id = $1 ORDER BY seq";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(run_id).fetch_all(p).await)?)
    }

    /// Lists a run's files, kept in the file store, in one transaction, if `holder`
    /// (worker, attempt) still holds the run: a worker that lost the run to another
    /// lists nothing (`NotHolder`). A worker that took the run over replaces what the
    /// lost one listed; the locations it replaced are returned, to delete.
    pub(crate) async fn insert_files(
        &self,
        run_id: &str,
        holder: (&str, i64),
        files: &[Kept],
        expires_at: i64,
    ) -> Result<Vec<String>> {
        let holds = "SELECT COUNT(*) FROM runs WHERE id = $1 AND worker = $2 AND attempt = $3 AND status = 'running'";
        let before = "SELECT location FROM run_files WHERE run_id = $1 AND name = $2 AND location IS NOT NULL";
        let q = "INSERT INTO run_files (run_id, name, bytes, content, location, stored_bytes, sha256, expires_at)
                 VALUES ($1, $2, $3, NULL, $4, $5, $6, $7)
                 ON CONFLICT (run_id, name) DO UPDATE SET bytes = excluded.bytes, content = NULL,
                   location = excluded.location, stored_bytes = excluded.stored_bytes, sha256 = excluded.sha256,
                   expires_at = excluded.expires_at";
        let mut replaced = Vec::new();
        on_db!(self, p => {
            let mut tx = p.begin().await?;
            let held: i64 = sqlx::query_scalar(holds).bind(run_id).bind(holder.0).bind(holder.1).fetch_one(&mut *tx).await?;
            if held == 0 {
                return Err(NotHolder { run: run_id.to_owned(), worker: holder.0.to_owned() }.into());
            }
            for f in files {
                let old: Option<String> = sqlx::query_scalar(before).bind(run_id).bind(&f.name).fetch_optional(&mut *tx).await?;
                replaced.extend(old.filter(|old| *old != f.location));
                sqlx::query(q).bind(run_id).bind(&f.name).bind(f.bytes).bind(&f.location).bind(f.stored_bytes)
                    .bind(&f.sha256).bind(expires_at).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(replaced)
    }

    pub(crate) async fn files(&self, run_id: &str) -> Result<Vec<FileRow>> {
        let q = "SELECT run_id, name, bytes, sha256 FROM run_files WHERE run_id = $1 ORDER BY name";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(run_id).fetch_all(p).await)?)
    }

    /// The files of the runs [`Db::runs`] lists for the same arguments, in one query.
    pub(crate) async fn files_of_runs(&self, connector_id: Option<&str>, limit: i64) -> Result<Vec<FileRow>> {
        let q = "SELECT f.run_id, f.name, f.bytes, f.sha256 FROM run_files f
                 JOIN (SELECT id FROM runs WHERE (CAST($1 AS TEXT) IS NULL OR connector_id = $1)
                       ORDER BY queued_at DESC, id DESC LIMIT $2) r ON f.run_id = r.id
                 ORDER BY f.run_id, f.name";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(connector_id).bind(limit).fetch_all(p).await)?)
    }

    /// Where a run's file is: its location in the file store, or (a file written
    /// before the file store) its gzipped bytes in the database.
    pub(crate) async fn file_place(&self, run_id: &str, name: &str) -> Result<Option<FilePlace>> {
        let q = "SELECT bytes, location, content FROM run_files WHERE run_id = $1 AND name = $2";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(run_id).bind(name).fetch_optional(p).await)?)
    }

    /// Files past their retention (at most `limit`): their run, name and location.
    pub(crate) async fn expired_files(&self, now: i64, limit: i64) -> Result<Vec<(String, String, Option<String>)>> {
        let q = "SELECT run_id, name, location FROM run_files WHERE expires_at < $1 ORDER BY expires_at LIMIT $2";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(now).bind(limit).fetch_all(p).await)?)
    }

    /// Forgets a file (its object deleted, or it was in the database).
    pub(crate) async fn delete_file(&self, run_id: &str, name: &str) -> Result<()> {
        let q = "DELETE FROM run_files WHERE run_id = $1 AND name = $2";
        on_db!(self, p => sqlx::query(q).bind(run_id).bind(name).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The locations of a connector's files, to delete with it.
    pub(crate) async fn file_locations_of_connector(&self, connector_id: &str) -> Result<Vec<String>> {
        let q = "SELECT f.location FROM run_files f JOIN runs r ON r.id = f.run_id
                 WHERE r.connector_id = $1 AND f.location IS NOT NULL";
        Ok(on_db!(self, p => sqlx::query_scalar(q).bind(connector_id).fetch_all(p).await)?)
    }

    /// Files still in the database (written before the file store), oldest first.
    pub(crate) async fn files_in_database(&self, limit: i64) -> Result<Vec<(String, String)>> {
        let q = "SELECT run_id, name FROM run_files WHERE location IS NULL ORDER BY expires_at, run_id, name LIMIT $1";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(limit).fetch_all(p).await)?)
    }

    /// A file moved to the file store: its row points there and its bytes leave the
    /// database. False when it had moved already (another migration got there first).
    pub(crate) async fn file_moved(&self, run_id: &str, kept: &Kept) -> Result<bool> {
        let q = "UPDATE run_files SET location = $3, stored_bytes = $4, sha256 = $5, content = NULL
                 WHERE run_id = $1 AND name = $2 AND location IS NULL";
        let done = on_db!(self, p => sqlx::query(q).bind(run_id).bind(&kept.name).bind(&kept.location)
            .bind(kept.stored_bytes).bind(&kept.sha256).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// After files moved out: SQLite rewrites its file to give the space back
    /// (VACUUM); PostgreSQL reuses freed space by itself. What happened, to print.
    pub(crate) async fn compact_after_move(&self) -> Result<&'static str> {
        match self {
            Db::Sqlite(p) => {
                sqlx::query("VACUUM").execute(p).await.context("cannot compact the SQLite database (VACUUM)")?;
                // In WAL mode the compacted pages sit in the log until a checkpoint
                // writes them back and the file shrinks.
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await.context("cannot checkpoint the SQLite log")?;
                Ok("the SQLite database was compacted (VACUUM): its file is smaller now")
            }
            Db::Postgres(_) => Ok(
                "PostgreSQL reuses the freed space; `VACUUM FULL run_files` returns it to the system (it locks the table while it runs)",
            ),
        }
    }

    // --- checkpoints ---

    pub(crate) async fn checkpoint(&self, connector_id: &str) -> Result<Option<CheckpointRow>> {
        let q = "SELECT state, state_from, last_baseline FROM checkpoints WHERE connector_id = $1";
        Ok(on_db!(self, p => sqlx::query_as(q).bind(connector_id).fetch_optional(p).await)?)
    }

    /// Forgets a connector's checkpoint: its next run is a baseline.
    pub(crate) async fn clear_checkpoint(&self, connector_id: &str) -> Result<()> {
        on_db!(self, p => sqlx::query("DELETE FROM checkpoints WHERE connector_id = $1").bind(connector_id)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // --- baselines ---

    pub(crate) async fn baseline(&self, key: &str) -> Result<Option<String>> {
        let q = "SELECT body FROM baselines WHERE instance_key = $1";
        Ok(on_db!(self, p => sqlx::query_scalar(q).bind(key).fetch_optional(p).await)?)
    }

    pub(crate) async fn set_baseline(&self, key: &str, body: &str) -> Result<()> {
        let q = "INSERT INTO baselines (instance_key, body, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (instance_key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at";
        on_db!(self, p => sqlx::query(q).bind(key).bind(body).bind(now_ms()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // --- metrics ---

    pub(crate) async fn run_totals(&self) -> Result<Vec<RunTotals>> {
        let q = "SELECT r.connector_id, c.name AS connector_name, r.status, COUNT(*) AS runs,
                   CAST(SUM(r.duration_ms) AS BIGINT) AS duration_ms, CAST(SUM(r.rows_read) AS BIGINT) AS rows_read,
                   CAST(SUM(r.api_calls) AS BIGINT) AS api_calls, CAST(SUM(r.throttled) AS BIGINT) AS throttled
                 FROM runs r JOIN connectors c ON c.id = r.connector_id
                 GROUP BY r.connector_id, c.name, r.status ORDER BY c.name, r.status";
        Ok(on_db!(self, p => sqlx::query_as(q).fetch_all(p).await)?)
    }
}

/// A file as versions before the file store kept it in the database: gzipped.
#[cfg(test)]
pub(crate) fn pack(content: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(content.len() / 8), flate2::Compression::fast());
    gz.write_all(content)?;
    Ok(gz.finish()?)
}

/// A database URL without its password, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            parsed.set_password(Some("****")).ok();
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(id: &str, name: &str) -> ConnectorRow {
        ConnectorRow {
            id: id.into(),
            plugin_id: "p".into(),
            name: name.into(),
            settings: "{}".into(),
            secrets: "sealed".into(),
            cvm: None,
            schedule: Some("every 1h".into()),
            next_due_at: Some(1_000),
            enabled: 1,
            trust: "{}".into(),
            trusted_version: "1".into(),
            paused_reason: None,
            created_at: 0,
            updated_at: 0,
            baseline_days: None,
        }
    }

    /// The rules that make a run execute once, on the embedded database.
    #[test]
    fn one_active_run_per_connector_one_claim_one_finish() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let db = Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
            db.migrate().await.unwrap();
            db.migrate().await.unwrap(); // idempotent
            assert!(matches!(db.insert_connector(&connector("c1", "one")).await.unwrap(), Inserted::Yes));
            assert!(matches!(db.insert_connector(&connector("c2", "one")).await.unwrap(), Inserted::Conflict));

            assert!(matches!(db.insert_run("r1", "c1", "manual").await.unwrap(), Inserted::Yes));
            assert!(matches!(db.insert_run("r2", "c1", "schedule").await.unwrap(), Inserted::Conflict));
            assert_eq!(db.active_run("c1").await.unwrap().as_deref(), Some("r1"));

            assert_eq!(db.claim_run("r1", "w1").await.unwrap(), Some(1));
            assert_eq!(db.claim_run("r1", "w2").await.unwrap(), None, "claimed once");
            // A takeover only while nothing was uploaded, and only from the holder.
            assert_eq!(db.take_over_run("r1", "w2", "w9", 1).await.unwrap(), None);
            assert!(db.mark_delivery_started("r1", "w1", 1).await.unwrap());
            assert_eq!(db.take_over_run("r1", "w2", "w1", 1).await.unwrap(), None, "upload began");
            assert!(!db.mark_delivery_started("r1", "w2", 1).await.unwrap(), "only the holder uploads");

            let done = Outcome { status: RunStatus::Succeeded, ..Outcome::default() };
            assert!(!db.finish_run("r1", Some(("w2", 1)), &done).await.unwrap(), "not the holder");
            assert!(db.finish_run("r1", Some(("w1", 1)), &done).await.unwrap());
            assert!(!db.finish_run("r1", Some(("w1", 1)), &done).await.unwrap(), "finished once");
            assert_eq!(db.run("r1").await.unwrap().unwrap().status(), Some(RunStatus::Succeeded));
            assert!(matches!(db.insert_run("r3", "c1", "manual").await.unwrap(), Inserted::Yes), "free again");

            // One scheduler wins a due time.
            assert_eq!(db.due_connectors(2_000).await.unwrap().len(), 1);
            assert!(db.advance_schedule("c1", 1_000, Some(5_000)).await.unwrap());
            assert!(!db.advance_schedule("c1", 1_000, Some(5_000)).await.unwrap());
            assert!(db.due_connectors(2_000).await.unwrap().is_empty());

            // A run no worker can still be executing is ended, freeing its connector.
            let day = 24 * 3600 * 1000;
            assert!(
                matches!(db.insert_run("r4", "c1", "manual").await.unwrap(), Inserted::Conflict),
                "r3 holds the slot"
            );
            assert_eq!(crate::worker::reap(&db, now_ms()).await.unwrap(), 0, "not yet");
            db.claim_run("r3", "w1").await.unwrap();
            assert_eq!(crate::worker::reap(&db, now_ms() + day / 4).await.unwrap(), 0, "within the run's limits");
            assert_eq!(crate::worker::reap(&db, now_ms() + day).await.unwrap(), 1);
            let reaped = db.run("r3").await.unwrap().unwrap();
            assert_eq!(reaped.status(), Some(RunStatus::Failed));
            assert!(reaped.error.unwrap().contains("did not finish this run"));
            assert!(matches!(db.insert_run("r4", "c1", "manual").await.unwrap(), Inserted::Yes), "the slot is free");
            assert_eq!(crate::worker::reap(&db, now_ms() + 2 * day).await.unwrap(), 1, "queued for a day");
            assert!(db.run("r4").await.unwrap().unwrap().error.unwrap().contains("no worker took this run"));

            // Deleting a connector deletes its runs.
            assert!(db.delete_connector("c1").await.unwrap());
            assert!(db.run("r4").await.unwrap().is_none());
        });
    }
}
