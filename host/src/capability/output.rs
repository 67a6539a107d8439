//! The `output` import: records, counters and progress from the plugin's `%map`,
//! gathered by the run's [`Collector`].

use crate::bindings::output::Host;
use crate::bindings::types::{Asset, Vulnerability, VulnerabilityDefinition};
use crate::join::Collector;
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
}

impl OutputCapability {
    pub fn new(observer: Option<ProgressObserver>) -> Self {
        OutputCapability { collector: Collector::default(), observer }
    }
}

impl Host for PluginState {
    fn emit_assets(&mut self, assets: Vec<Asset>) -> wasmtime::Result<()> {
        self.output.collector.add_assets(assets);
        Ok(())
    }

    fn emit_vulnerabilities(&mut self, vulnerabilities: Vec<Vulnerability>) -> wasmtime::Result<()> {
        self.output.collector.add_vulnerabilities(vulnerabilities);
        Ok(())
    }

    fn emit_definitions(&mut self, definitions: Vec<VulnerabilityDefinition>) -> wasmtime::Result<()> {
        self.output.collector.add_definitions(definitions);
        Ok(())
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
