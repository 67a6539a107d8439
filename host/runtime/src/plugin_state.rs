//! The data of one plugin Store: the sandboxed WASI context and the capabilities
//! lent to the plugin for one run.

use crate::capability::http::HttpCapability;
use crate::capability::log::LogCapability;
use crate::capability::output::OutputCapability;
use crate::limits::{CpuMeter, LimitExceeded, MemoryLimiter, SandboxLimits};
use crate::redact::Redactor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How much of the plugin's stderr (where Rust panics go) is kept for error messages.
const STDERR_CAPACITY: usize = 64 * 1024;

/// Everything a plugin instance can reach.
pub(crate) struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    pub(crate) cpu: CpuMeter,
    /// The first limit the plugin exceeded (other than memory, which the limiter keeps).
    pub(crate) breach: Option<LimitExceeded>,
    /// When the whole session must end (a platform's per-instance time limit), and
    /// that limit, for the message.
    pub(crate) deadline: Option<(Instant, Duration)>,
    pub(crate) http: HttpCapability,
    pub(crate) log: LogCapability,
    pub(crate) output: OutputCapability,
    stderr: MemoryOutputPipe,
    pub(crate) redactor: Arc<Redactor>,
    /// The most bytes of state `finish` may return.
    pub(crate) state_limit: u64,
}

impl PluginState {
    pub(crate) fn new(
        limits: &SandboxLimits,
        http: HttpCapability,
        log: LogCapability,
        output: OutputCapability,
        redactor: Arc<Redactor>,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // Nothing is granted: no files, environment, arguments, sockets or stdin;
        // stdout is discarded and stderr captured for error messages.
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(limits.memory_bytes),
            cpu: CpuMeter::new(limits.cpu_per_call),
            breach: None,
            deadline: None,
            http,
            log,
            output,
            stderr,
            redactor,
            state_limit: limits.state_bytes,
        }
    }

    /// Records a breached limit and returns the trap that ends the call.
    pub(crate) fn exceed(&mut self, breach: LimitExceeded) -> wasmtime::Error {
        let error = wasmtime::Error::msg(breach.to_string());
        self.breach.get_or_insert(breach);
        error
    }

    /// The limit the plugin exceeded, if any.
    pub(crate) fn limit_breach(&self) -> Option<&LimitExceeded> {
        self.breach.as_ref().or(self.memory.breach.as_ref())
    }

    /// What the plugin wrote to stderr, secrets masked.
    pub(crate) fn stderr_text(&self) -> String {
        self.redactor.redact(&String::from_utf8_lossy(&self.stderr.contents()))
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
