//! The `output` import: records, counters and progress from the plugin's `%map`,
//! gathered by the run's [`Collector`].
//!
//! A run's output is shared by its sessions ([`RunOutput`]): a pipelined run maps
//! on one instance while another fetches, and both may emit.

use crate::bindings::output::Host;
use crate::bindings::types::{Asset, Vulnerability, VulnerabilityDefinition};
use crate::events::{emit, Event, EventSink};
use crate::join::Collector;
use crate::limits::{thread_cpu_time, LimitExceeded};
use crate::state::PluginState;
use std::sync::{Arc, Mutex, MutexGuard};

/// A run's records and the count of them, shared by the run's sessions.
#[derive(Clone, Default)]
pub struct RunOutput(Arc<Mutex<(Collector, u64)>>);

impl RunOutput {
    fn lock(&self) -> MutexGuard<'_, (Collector, u64)> {
        // A panic while holding the lock cannot leave the collector half-updated in
        // a way that matters more than the panic itself.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the records collected so far.
    pub fn take_collector(&self) -> Collector {
        std::mem::take(&mut self.lock().0)
    }
}

pub struct OutputCapability {
    output: RunOutput,
    /// Where the plugin's progress reports go, as [`Event::Progress`].
    events: Option<EventSink>,
    /// The most records the run may emit.
    max_records: u64,
}

impl OutputCapability {
    pub fn new(events: Option<EventSink>, max_records: u64, output: RunOutput) -> Self {
        OutputCapability { output, events, max_records }
    }

    pub fn run_output(&self) -> &RunOutput {
        &self.output
    }
}

impl PluginState {
    /// Counts emitted records against the output limit, then hands them to the
    /// collector; the host's work on them is not charged to the plugin's CPU time.
    fn emit(&mut self, count: usize, add: impl FnOnce(&mut Collector)) -> wasmtime::Result<()> {
        let started = thread_cpu_time();
        let mut shared = self.output.output.lock();
        shared.1 += count as u64;
        if shared.1 > self.output.max_records {
            let breach = LimitExceeded {
                limit: format!("output limit of {} records", self.output.max_records),
                detail: format!("emitted {} records", shared.1),
            };
            drop(shared);
            return Err(self.exceed(breach));
        }
        add(&mut shared.0);
        drop(shared);
        self.cpu.add_host_time(thread_cpu_time().saturating_sub(started));
        Ok(())
    }
}

impl Host for PluginState {
    fn emit_assets(&mut self, assets: Vec<Asset>) -> wasmtime::Result<()> {
        self.emit(assets.len(), |c| c.add_assets(assets))
    }

    fn emit_vulnerabilities(&mut self, vulnerabilities: Vec<Vulnerability>) -> wasmtime::Result<()> {
        self.emit(vulnerabilities.len(), |c| c.add_vulnerabilities(vulnerabilities))
    }

    fn emit_definitions(&mut self, definitions: Vec<VulnerabilityDefinition>) -> wasmtime::Result<()> {
        self.emit(definitions.len(), |c| c.add_definitions(definitions))
    }

    fn count(&mut self, counter: String, delta: u64) -> wasmtime::Result<()> {
        self.output.output.lock().0.count(counter, delta);
        Ok(())
    }

    fn skip(&mut self, reason: String, count: u64) -> wasmtime::Result<()> {
        self.output.output.lock().0.skip(reason, count);
        Ok(())
    }

    fn progress(&mut self, stage: String, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        emit(self.output.events.as_ref(), Event::Progress { stage, done, total });
        Ok(())
    }
}
