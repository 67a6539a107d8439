//! The `output` import: records, counters and progress from the plugin's `%map`,
//! gathered by the run's [`Collector`].

use crate::bindings::output::Host;
use crate::bindings::types::{Asset, Vulnerability, VulnerabilityDefinition};
use crate::events::{emit, Event, EventSink};
use crate::join::Collector;
use crate::limits::{thread_cpu_time, LimitExceeded};
use crate::state::PluginState;

pub struct OutputCapability {
    pub collector: Collector,
    /// Where the plugin's progress reports go, as [`Event::Progress`].
    events: Option<EventSink>,
    /// Records emitted so far, and the most allowed.
    pub records: u64,
    max_records: u64,
}

impl OutputCapability {
    pub fn new(events: Option<EventSink>, max_records: u64) -> Self {
        OutputCapability { collector: Collector::default(), events, records: 0, max_records }
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
        emit(self.output.events.as_ref(), Event::Progress { stage, done, total });
        Ok(())
    }
}
