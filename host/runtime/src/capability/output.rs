//! The `output` import: records, counters and progress from the plugin's `%map`,
//! masked, counted against the limits and handed to the session's record sink
//! ([`super::records`]).
//!
//! A run's output is shared by its sessions: a pipelined run maps on one instance
//! while another fetches, and both may emit.

use super::records::{BatchedVulnerability, Message, RecordSink, VulnerabilityBatch};
use crate::bindings::output::Host;
use crate::bindings::types::Datetime;
use crate::bindings::types::{Asset, Vulnerability, VulnerabilityDefinition};
use crate::engine::{Progress, ProgressSink};
use crate::limits::{thread_cpu_time, LimitExceeded, SandboxLimits};
use crate::plugin_state::PluginState;
use crate::redact::{plugin_name, Redactor};
use std::borrow::Cow;
use std::sync::Arc;
use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};
use wasmtime::StoreContextMut;

/// The `output` capability of one session: where its records go, and the limit on them.
pub(crate) struct OutputCapability {
    output: Arc<dyn RecordSink>,
    /// Where the plugin's progress reports go.
    progress: Option<ProgressSink>,
    /// The most records the run may emit.
    max_records: u64,
    /// The most bytes of text the run may emit.
    max_bytes: u64,
}

impl OutputCapability {
    pub(crate) fn new(progress: Option<ProgressSink>, limits: &SandboxLimits, output: Arc<dyn RecordSink>) -> Self {
        OutputCapability { output, progress, max_records: limits.output_records, max_bytes: limits.output_bytes }
    }
}

impl PluginState {
    /// Counts emitted records against the output limit, then hands them to the
    /// collector; the host's work on them is not charged to the plugin's CPU time.
    fn emit(&mut self, count: usize, message: Message) -> wasmtime::Result<()> {
        let started = thread_cpu_time();
        let run = self.output.output.clone();
        let (emitted, bytes) = run.count_emitted(count as u64, message.text_bytes());
        if bytes > self.output.max_bytes {
            let breach = LimitExceeded {
                limit: format!("output limit of {}", crate::limits::mib(self.output.max_bytes)),
                detail: format!("emitted {} of text", crate::limits::mib(bytes)),
            };
            return Err(self.exceed(breach));
        }
        if emitted > self.output.max_records {
            let breach = LimitExceeded {
                limit: format!("output limit of {} records", self.output.max_records),
                detail: format!("emitted {emitted} records"),
            };
            return Err(self.exceed(breach));
        }
        run.send(message)
            .map_err(|e| wasmtime::Error::msg(format!("cannot start the host's collector thread: {e}")))?;
        self.cpu.add_host_time(thread_cpu_time().saturating_sub(started));
        Ok(())
    }
}

/// Masks every string of the records a plugin emits: a plugin that got a secret
/// back (an echo it decoded) cannot put it in a file, a summary or CVM. The host's
/// work on them is not charged to the plugin's CPU time.
fn mask_all<'a>(redactor: &Redactor, strings: impl Iterator<Item = &'a mut String>) {
    strings.for_each(|s| redactor.redact_in_place(s));
}

impl Host for PluginState {
    fn emit_assets(&mut self, mut assets: Vec<Asset>) -> wasmtime::Result<()> {
        if !self.redactor.is_empty() {
            assets.iter_mut().for_each(|a| mask_all(&self.redactor, a.texts_mut()));
        }
        self.emit(assets.len(), Message::Assets(assets))
    }

    fn emit_vulnerabilities(&mut self, mut vulnerabilities: Vec<Vulnerability>) -> wasmtime::Result<()> {
        if !self.redactor.is_empty() {
            for v in &mut vulnerabilities {
                let strings = [&mut v.asset_key, &mut v.identifier].into_iter().chain(v.details.as_mut());
                mask_all(&self.redactor, strings);
            }
        }
        self.emit(vulnerabilities.len(), Message::Vulnerabilities(vulnerabilities))
    }

    fn emit_definitions(&mut self, mut definitions: Vec<VulnerabilityDefinition>) -> wasmtime::Result<()> {
        if !self.redactor.is_empty() {
            for d in &mut definitions {
                let strings = [&mut d.identifier, &mut d.name]
                    .into_iter()
                    .chain(d.cve_ids.iter_mut())
                    .chain(d.description.as_mut())
                    .chain(d.solution.as_mut());
                mask_all(&self.redactor, strings);
            }
        }
        self.emit(definitions.len(), Message::Definitions(definitions))
    }

    fn count(&mut self, counter: String, delta: u64) -> wasmtime::Result<()> {
        let counter = plugin_name(&self.redactor, &counter);
        self.emit(0, Message::Count(counter, delta))
    }

    fn skip(&mut self, reason: String, count: u64) -> wasmtime::Result<()> {
        let reason = plugin_name(&self.redactor, &reason);
        self.emit(0, Message::Skip(reason, count))
    }

    fn progress(&mut self, stage: String, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        let stage = plugin_name(&self.redactor, &stage);
        if let Some(sink) = &self.output.progress {
            sink(&Progress { stage, done, total });
        }
        Ok(())
    }
}

/// A vulnerability as it lies in the plugin's memory: its strings are read in place
/// rather than lifted into a `String` each (the same record as the contract's
/// `vulnerability`, which wasmtime checks when it links this function).
#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct VulnerabilityInPlace {
    #[component(name = "asset-key")]
    asset_key: WasmStr,
    identifier: WasmStr,
    score: u8,
    found: Option<Datetime>,
    #[component(name = "last-seen")]
    last_seen: Option<Datetime>,
    details: Option<WasmStr>,
    status: StatusInPlace,
}

/// The contract's `vulnerability-status`, as it lies in the plugin's memory.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum StatusInPlace {
    #[component(name = "open")]
    Open,
    #[component(name = "fixed")]
    Fixed(Datetime),
}

/// `emit-vulnerabilities`, reading the plugin's strings in place: each record is
/// masked where needed and copied once, into one buffer for the whole batch, on its
/// way to the collector (the hot path of a run: a vulnerability is most records).
pub(crate) fn emit_vulnerabilities_in_place(
    mut store: StoreContextMut<'_, PluginState>,
    (list,): (WasmList<VulnerabilityInPlace>,),
) -> wasmtime::Result<()> {
    let started = thread_cpu_time();
    let mut batch = VulnerabilityBatch::default();
    let count = list.len();
    // The records' places first (no string is copied), then their strings, read.
    let views = list.iter(&mut store)?.collect::<wasmtime::Result<Vec<VulnerabilityInPlace>>>()?;
    {
        let redactor = store.data().redactor.clone();
        fn masked<'a>(redactor: &Redactor, text: Cow<'a, str>) -> Cow<'a, str> {
            match redactor.redact_cow(&text) {
                Cow::Borrowed(_) => text,
                Cow::Owned(masked) => Cow::Owned(masked),
            }
        }
        let mask = |text| masked(&redactor, text);
        for v in &views {
            let (asset_key, identifier) = (mask(v.asset_key.to_str(&store)?), mask(v.identifier.to_str(&store)?));
            let details = v.details.as_ref().map(|d| d.to_str(&store)).transpose()?.map(mask);
            batch.push(&BatchedVulnerability {
                asset_key: &asset_key,
                identifier: &identifier,
                score: v.score,
                found: v.found,
                last_seen: v.last_seen,
                details: details.as_deref(),
                fixed: match v.status {
                    StatusInPlace::Open => None,
                    StatusInPlace::Fixed(at) => Some(at),
                },
            });
        }
    }
    let state = store.data_mut();
    // Reading and copying is the host's work, not the plugin's CPU time.
    state.cpu.add_host_time(thread_cpu_time().saturating_sub(started));
    state.emit(count, Message::VulnerabilityBatch(batch))
}
