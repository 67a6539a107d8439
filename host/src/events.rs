//! What a run reports while it goes: for a progress line, a platform's dashboard or
//! a log. Sinks are called on the run's thread and must return quickly.

use crate::summary::RunSummary;
use std::sync::Arc;

/// One thing that happened in a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// The plugin reported progress of a stage (`done` of `total`, when known).
    Progress {
        /// What is being counted (`devices`, `vulnerability rows`, ...).
        stage: String,
        /// How many so far.
        done: u64,
        /// How many in all, when the plugin knows.
        total: Option<u64>,
    },
    /// Every page was fetched and mapped; the KDI files are being written.
    Writing,
    /// The files are being delivered to CVM.
    Delivering,
    /// The run finished, with its summary.
    Finished(Box<RunSummary>),
    /// The run failed: the message says why and what was (not) written.
    Failed(String),
}

/// Receives a run's events.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A plugin's progress reports as [`Event::Progress`] events of `events`.
pub(crate) fn progress_to(events: EventSink) -> crate::engine::ProgressSink {
    Arc::new(move |p: &crate::engine::Progress| {
        events(&Event::Progress { stage: p.stage.clone(), done: p.done, total: p.total })
    })
}

/// Calls the sink, if there is one.
pub(crate) fn emit(sink: Option<&EventSink>, event: Event) {
    if let Some(sink) = sink {
        sink(&event);
    }
}
