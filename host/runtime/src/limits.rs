//! The limits of one plugin instance, and how their breaches are reported.
//!
//! - memory: a `ResourceLimiter` refuses growth beyond the limit, which traps;
//! - CPU: the thread's CPU time spent in one export call (wasm and the WASI calls it
//!   makes, not time blocked on the network or asleep, nor the host's own work on
//!   the plugin's output), checked on wasmtime's epoch ticks;
//! - HTTP: a wall-clock timeout and a response-size cap on every call (values the
//!   plugin handles: see `capability::http`);
//! - output records and log lines per instance.
//!
//! A breach ends the call with a trap; the session reports it as
//! "plugin `id` exceeded its `<limit>`".

use std::fmt;
use std::time::Duration;

/// Limits of one plugin instance; every one configurable in `[limits]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxLimits {
    /// Bytes of every linear memory and table of the plugin together.
    pub(crate) memory_bytes: usize,
    /// CPU time one export call may use.
    pub(crate) cpu_per_call: Duration,
    /// The longest timeout a plugin may ask for on one HTTP call (and the default).
    pub(crate) http_timeout: Duration,
    /// The largest response body one HTTP call may return.
    pub(crate) response_bytes: u64,
    /// Records (assets, vulnerabilities, definitions) one instance may emit.
    pub(crate) output_records: u64,
    /// Bytes of text in the records a run's instances may emit together.
    pub(crate) output_bytes: u64,
    /// Bytes a run may keep of its records, in memory and in temporary files.
    pub temp_disk_bytes: u64,
    /// Log lines one instance may write.
    pub(crate) log_lines: u64,
    /// Bytes of state a plugin may keep between runs (contract 0.4, `finish`).
    pub(crate) state_bytes: u64,
    /// Wall-clock time a whole run may take (`connector-host run`, a library run).
    pub run_time: Duration,
    /// Wall-clock time `verify` may take.
    pub verify_time: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: 1 << 30,
            cpu_per_call: Duration::from_secs(300),
            http_timeout: Duration::from_secs(900),
            response_bytes: 512 << 20,
            output_records: 200_000_000,
            output_bytes: 64 << 30,
            temp_disk_bytes: 64 << 30,
            log_lines: 10_000,
            state_bytes: 64 << 20,
            run_time: Duration::from_secs(6 * 3600),
            verify_time: Duration::from_secs(300),
        }
    }
}

impl SandboxLimits {
    /// Reads a `[limits]` table (values as text): `memory_mb`, `cpu_seconds`,
    /// `http_timeout_seconds`, `response_mb`, `output_records`, `output_mb`,
    /// `temp_disk_mb`, `log_lines`, `state_mb`,
    /// `run_minutes`, `verify_seconds`.
    pub(crate) fn from_values(values: &std::collections::BTreeMap<String, String>) -> anyhow::Result<SandboxLimits> {
        let written: toml::Table = values.iter().map(|(k, v)| (k.clone(), toml::Value::String(v.clone()))).collect();
        let (table, mut problems) = crate::config::table::read::<LimitsTable>(&written, |key, keys| {
            format!("`{key}` is not a limit (limits: {})", keys.join(", "))
        });
        let mut limits = SandboxLimits::default();
        let mut number = |key: &str, value: &Option<String>| -> Option<u64> {
            let value = value.as_deref()?;
            match value.trim().parse::<u64>() {
                Ok(0) => problems.push(format!("`{key}`: must be above 0")),
                Ok(n) => return Some(n),
                Err(_) => problems.push(format!("`{key}`: expected a whole number, got `{value}`")),
            }
            None
        };
        let mb = |n: u64| n.saturating_mul(1 << 20);
        if let Some(n) = number("memory_mb", &table.memory_mb) {
            limits.memory_bytes = usize::try_from(mb(n)).unwrap_or(usize::MAX);
        }
        if let Some(n) = number("cpu_seconds", &table.cpu_seconds) {
            limits.cpu_per_call = Duration::from_secs(n);
        }
        if let Some(n) = number("http_timeout_seconds", &table.http_timeout_seconds) {
            limits.http_timeout = Duration::from_secs(n);
        }
        if let Some(n) = number("response_mb", &table.response_mb) {
            limits.response_bytes = mb(n);
        }
        if let Some(n) = number("output_records", &table.output_records) {
            limits.output_records = n;
        }
        if let Some(n) = number("output_mb", &table.output_mb) {
            limits.output_bytes = mb(n);
        }
        if let Some(n) = number("temp_disk_mb", &table.temp_disk_mb) {
            limits.temp_disk_bytes = mb(n);
        }
        if let Some(n) = number("log_lines", &table.log_lines) {
            limits.log_lines = n;
        }
        if let Some(n) = number("state_mb", &table.state_mb) {
            limits.state_bytes = mb(n);
        }
        if let Some(n) = number("run_seconds", &table.run_seconds) {
            limits.run_time = Duration::from_secs(n);
        }
        if let Some(n) = number("verify_seconds", &table.verify_seconds) {
            limits.verify_time = Duration::from_secs(n);
        }
        if !problems.is_empty() {
            anyhow::bail!("[limits]: {}", problems.join("; "));
        }
        Ok(limits)
    }
}

/// The `[limits]` table as written (values read from their references), read with
/// serde; [`SandboxLimits::from_values`] checks it.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsTable {
    memory_mb: Option<String>,
    cpu_seconds: Option<String>,
    http_timeout_seconds: Option<String>,
    response_mb: Option<String>,
    output_records: Option<String>,
    output_mb: Option<String>,
    temp_disk_mb: Option<String>,
    log_lines: Option<String>,
    state_mb: Option<String>,
    run_seconds: Option<String>,
    verify_seconds: Option<String>,
}

/// Which limit a plugin exceeded, with what it tried.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LimitExceeded {
    /// e.g. `memory limit of 64 MiB`.
    pub(crate) limit: String,
    /// e.g. `tried to grow its memory to 80 MiB`.
    pub(crate) detail: String,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "exceeded its {} ({})", self.limit, self.detail)
    }
}

impl std::error::Error for LimitExceeded {}

pub fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

/// The CPU time of the calling thread (time blocked or asleep does not count).
pub fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
        if ok {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    // Without a thread clock, wall time since the process started stands in.
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// CPU accounting of the export call in progress.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    pub(crate) limit: Duration,
    started_at: Duration,
    host: Duration,
    pub(crate) export: &'static str,
}

impl CpuMeter {
    pub(crate) fn new(limit: Duration) -> Self {
        CpuMeter { limit, ..Default::default() }
    }

    /// Starts accounting for a call to `export`.
    pub(crate) fn start(&mut self, export: &'static str) {
        self.started_at = thread_cpu_time();
        self.host = Duration::ZERO;
        self.export = export;
    }

    /// Excludes host work done on the plugin's behalf (joining its records).
    pub(crate) fn add_host_time(&mut self, spent: Duration) {
        self.host += spent;
    }

    /// The plugin's CPU time in this call so far.
    pub(crate) fn used(&self) -> Duration {
        thread_cpu_time().saturating_sub(self.started_at).saturating_sub(self.host)
    }
}

/// Refuses growth beyond the limit, with a trap that says so. The limit is on every
/// linear memory and table of the plugin together: a component may hold many core
/// instances, each with memories of its own (and multi-memory on top), so each one
/// alone under the limit would prove nothing. Table elements count as
/// [`TABLE_ELEMENT_BYTES`] each.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    /// The most bytes of memories and tables together.
    pub(crate) max_bytes: usize,
    /// What the plugin's memories and tables take now.
    pub(crate) used_bytes: usize,
    /// The first growth refused.
    pub(crate) breach: Option<LimitExceeded>,
}

/// What one table element is counted as: a function reference and its metadata.
pub(crate) const TABLE_ELEMENT_BYTES: usize = 16;
/// The most linear memories a plugin may have (a Rust component has one or two).
pub(crate) const MAX_MEMORIES: usize = 8;
/// The most tables a plugin may have.
pub(crate) const MAX_TABLES: usize = 64;

impl MemoryLimiter {
    /// A limiter of `max_bytes`, nothing used yet.
    pub(crate) fn new(max_bytes: usize) -> Self {
        MemoryLimiter { max_bytes, used_bytes: 0, breach: None }
    }

    /// Grows the total from `current` to `desired` bytes of one memory or table, or
    /// refuses with the breach.
    fn grow(&mut self, what: &str, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let total = self.used_bytes.saturating_sub(current).saturating_add(desired);
        if total > self.max_bytes {
            let breach = LimitExceeded {
                limit: format!("memory limit of {}", mib(self.max_bytes as u64)),
                detail: format!("tried to grow its {what} to {} in all", mib(total as u64)),
            };
            self.breach = Some(breach.clone());
            return Err(wasmtime::Error::msg(breach.to_string()));
        }
        self.used_bytes = total;
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.grow("memory", current, desired)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow("tables", bytes(current), bytes(desired))
    }

    fn instances(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn every_memory_and_table_counts_against_one_limit() {
        let mut limiter = MemoryLimiter::new(100 << 20);
        // Two memories of 40 MiB each fit; a third does not, though it alone would.
        assert!(limiter.memory_growing(0, 40 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 40 << 20, None).unwrap());
        let refused = limiter.memory_growing(0, 40 << 20, None).unwrap_err().to_string();
        assert!(refused.contains("tried to grow its memory to 120 MiB in all"), "{refused}");
        // Growing one memory counts only the growth.
        let mut limiter = MemoryLimiter::new(100 << 20);
        assert!(limiter.memory_growing(0, 10 << 20, None).unwrap());
        assert!(limiter.memory_growing(10 << 20, 90 << 20, None).unwrap());
        assert_eq!(limiter.used_bytes, 90 << 20);
        // Table elements count too.
        assert!(limiter.table_growing(0, 1 << 20, None).unwrap_err().to_string().contains("tables"));
        assert_eq!((limiter.memories(), limiter.tables()), (MAX_MEMORIES, MAX_TABLES));
    }
}
