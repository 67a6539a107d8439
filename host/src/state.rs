//! The data of one plugin Store: the sandboxed WASI context and the capabilities
//! lent to the plugin for one run.

use crate::capability::http::HttpCapability;
use crate::capability::log::LogCapability;
use crate::capability::output::OutputCapability;
use crate::redact::Redactor;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How much of the plugin's stderr (where Rust panics go) is kept for error messages.
const STDERR_CAPACITY: usize = 64 * 1024;

/// Memory one plugin instance may grow to.
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;

/// Everything a plugin instance can reach.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    pub http: HttpCapability,
    pub log: LogCapability,
    pub output: OutputCapability,
    stderr: MemoryOutputPipe,
    pub redactor: Arc<Redactor>,
}

impl PluginState {
    pub fn new(http: HttpCapability, log: LogCapability, output: OutputCapability, redactor: Arc<Redactor>) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // Nothing is granted: no files, environment, arguments, sockets or stdin;
        // stdout is discarded and stderr captured for error messages.
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(DEFAULT_MEMORY_LIMIT)
                .instances(32)
                .trap_on_grow_failure(true)
                .build(),
            http,
            log,
            output,
            stderr,
            redactor,
        }
    }

    /// What the plugin wrote to stderr, secrets masked.
    pub fn stderr_text(&self) -> String {
        self.redactor.redact(&String::from_utf8_lossy(&self.stderr.contents()))
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
