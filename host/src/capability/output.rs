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
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A run's records, shared by the run's sessions.
///
/// The records go to a collector thread: interning, sorting and spilling them to
/// disk then runs beside the plugin instead of between its calls, on the core the
/// fetching instance leaves mostly idle. Messages keep their order, and a few
/// batches at most are in flight, so memory stays bounded.
#[derive(Clone, Default)]
pub struct RunOutput(Arc<Mutex<Shared>>);

#[derive(Default)]
struct Shared {
    /// Records emitted so far, counted against the run's limit.
    emitted: u64,
    /// The collector thread, started by the first record.
    worker: Option<Worker>,
}

struct Worker {
    messages: SyncSender<Message>,
    thread: JoinHandle<Collector>,
}

enum Message {
    Assets(Vec<Asset>),
    Vulnerabilities(Vec<Vulnerability>),
    Definitions(Vec<VulnerabilityDefinition>),
    Count(String, u64),
    Skip(String, u64),
}

/// Batches waiting for the collector thread (each up to the SDK's 5,000 records).
const BATCHES_IN_FLIGHT: usize = 4;

impl RunOutput {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the count half-updated in a
        // way that matters more than the panic itself.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn send(&self, message: Message) -> std::io::Result<()> {
        let mut shared = self.lock();
        if shared.worker.is_none() {
            let (messages, received) = sync_channel::<Message>(BATCHES_IN_FLIGHT);
            let thread = std::thread::Builder::new().name("collector".into()).spawn(move || {
                let mut collector = Collector::default();
                for message in received {
                    match message {
                        Message::Assets(assets) => collector.add_assets(assets),
                        Message::Vulnerabilities(vulnerabilities) => collector.add_vulnerabilities(vulnerabilities),
                        Message::Definitions(definitions) => collector.add_definitions(definitions),
                        Message::Count(counter, delta) => collector.count(counter, delta),
                        Message::Skip(reason, count) => collector.skip(reason, count),
                    }
                }
                collector
            })?;
            shared.worker = Some(Worker { messages, thread });
        }
        let messages = shared.worker.as_ref().expect("started above").messages.clone();
        // Not sent under the lock: a full queue must not stop the other session's
        // counters from being counted.
        drop(shared);
        // The thread only stops when the run takes the collector, after both
        // sessions are done; a send can fail only if it panicked, which
        // `take_collector` reports.
        messages.send(message).ok();
        Ok(())
    }

    /// Takes the records collected so far: waits for the collector thread to take
    /// in everything sent to it. A later record starts a new collector.
    pub fn take_collector(&self) -> Collector {
        let Some(Worker { messages, thread }) = self.lock().worker.take() else {
            return Collector::default();
        };
        drop(messages);
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
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
    fn emit(&mut self, count: usize, message: Message) -> wasmtime::Result<()> {
        let started = thread_cpu_time();
        let run = self.output.output.clone();
        let emitted = {
            let mut shared = run.lock();
            shared.emitted += count as u64;
            shared.emitted
        };
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

impl Host for PluginState {
    fn emit_assets(&mut self, assets: Vec<Asset>) -> wasmtime::Result<()> {
        self.emit(assets.len(), Message::Assets(assets))
    }

    fn emit_vulnerabilities(&mut self, vulnerabilities: Vec<Vulnerability>) -> wasmtime::Result<()> {
        self.emit(vulnerabilities.len(), Message::Vulnerabilities(vulnerabilities))
    }

    fn emit_definitions(&mut self, definitions: Vec<VulnerabilityDefinition>) -> wasmtime::Result<()> {
        self.emit(definitions.len(), Message::Definitions(definitions))
    }

    fn count(&mut self, counter: String, delta: u64) -> wasmtime::Result<()> {
        self.emit(0, Message::Count(counter, delta))
    }

    fn skip(&mut self, reason: String, count: u64) -> wasmtime::Result<()> {
        self.emit(0, Message::Skip(reason, count))
    }

    fn progress(&mut self, stage: String, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        emit(self.output.events.as_ref(), Event::Progress { stage, done, total });
        Ok(())
    }
}
