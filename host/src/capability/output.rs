//! The `output` import: records, counters and progress from the plugin's `%map`,
//! gathered by the run's [`Collector`].

use crate::bindings::output::Host;
use crate::bindings::types::{Asset, Vulnerability, VulnerabilityDefinition};
use crate::join::Collector;
use crate::limits::{thread_cpu_time, LimitExceeded};
use crate::state::PluginState;

/// Progress of a stage, as the plugin reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub stage: String,
    pub done: u64,
    pub total: Option<u64>,
}

/// Receives progress reports (the CLI draws a progress line; a platform may forward
/// them as events).
pub type ProgressObserver = Box<dyn FnMut(&Progress) + Send>;

pub struct OutputCapability {
    pub collector: Collector,
    observer: Option<ProgressObserver>,
    /// Records emitted so far, and the most allowed.
    pub records: u64,
    max_records: u64,
}

impl OutputCapability {
    pub fn new(observer: Option<ProgressObserver>, max_records: u64) -> Self {
        OutputCapability { collector: Collector::default(), observer, records: 0, max_records }
    }
}

impl PluginState {
    /// Counts emitted records against the output limit, then hands them to the
    /// collector; the host's work on them is not charged to the plugin's CPU time.
    fn emit(&mut self, count: usize, add: impl FnOnce(&mut Collector)) -> wasmtime::Result<()> {
        self.output.records += count as u64;
        if self.output.records > self.output.max_records {
            let breach = LimitExceeded {
                limit: format!("output limit of {} records", self.output.max_records),
                detail: format!("emitted {} records", self.output.records),
            };
            return Err(self.exceed(breach));
        }
        let started = thread_cpu_time();
        add(&mut self.output.collector);
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
        self.output.collector.count(counter, delta);
        Ok(())
    }

    fn skip(&mut self, reason: String, count: u64) -> wasmtime::Result<()> {
        self.output.collector.skip(reason, count);
        Ok(())
    }

    fn progress(&mut self, stage: String, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        if let Some(observer) = self.output.observer.as_mut() {
            observer(&Progress { stage, done, total });
        }
        Ok(())
    }
}
