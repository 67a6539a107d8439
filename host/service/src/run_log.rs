//! A run's log lines, caught as they are logged: every event inside a run's span (the
//! plugin's log lines, already masked by the host, and the host's own) is kept for
//! that run and stored with it, for the API and the console.

use super::store::{now_ms, LogRow};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The most lines kept of one run; the rest are counted and the count logged.
const MAX_LINES: usize = 5_000;
/// The most bytes of messages kept of one run (each line is capped at
/// `redact::MAX_LOG_LINE_BYTES` too).
const MAX_BYTES: usize = 4 << 20;

/// The span field that marks a run's span.
pub const RUN_FIELD: &str = "run";

#[derive(Default)]
struct Buffer {
    lines: Vec<LogRow>,
    /// Bytes of messages kept so far.
    bytes: usize,
    dropped: u64,
}

static BUFFERS: LazyLock<Mutex<HashMap<String, Buffer>>> = LazyLock::new(Default::default);

/// Starts keeping the lines of a run.
pub fn begin(run_id: &str) {
    BUFFERS.lock().unwrap().insert(run_id.to_owned(), Buffer::default());
}

/// The lines kept since the last call (the run goes on).
pub fn drain(run_id: &str) -> Vec<LogRow> {
    let mut buffers = BUFFERS.lock().unwrap();
    buffers.get_mut(run_id).map(|b| std::mem::take(&mut b.lines)).unwrap_or_default()
}

/// Stops keeping the lines of a run; the last of them.
pub fn end(run_id: &str) -> Vec<LogRow> {
    let Some(mut buffer) = BUFFERS.lock().unwrap().remove(run_id) else { return Vec::new() };
    if buffer.dropped > 0 {
        buffer.lines.push(LogRow {
            at: now_ms(),
            level: "warn".into(),
            message: format!(
                "{} more log lines were not kept (at most {MAX_LINES} lines and {} MiB a run)",
                buffer.dropped,
                MAX_BYTES >> 20
            ),
        });
    }
    buffer.lines
}

/// The tracing layer that keeps the lines; installed with the process's logger.
pub struct RunLogLayer;

/// The run a span belongs to.
struct RunId(String);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for RunLogLayer {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut found = FindRun(None);
        attributes.record(&mut found);
        if let (Some(run), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().insert(RunId(run));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else { return };
        let Some(run) = scope.into_iter().find_map(|span| span.extensions().get::<RunId>().map(|r| r.0.clone())) else {
            return;
        };
        let mut text = Message(String::new(), String::new());
        event.record(&mut text);
        let mut message = if text.1.is_empty() { text.0 } else { format!("{}{}", text.0, text.1) };
        connector_host::log_line::cap_line(&mut message);
        let mut buffers = BUFFERS.lock().unwrap();
        let Some(buffer) = buffers.get_mut(&run) else { return };
        if buffer.lines.len() >= MAX_LINES || buffer.bytes + message.len() > MAX_BYTES {
            buffer.dropped += 1;
            return;
        }
        buffer.bytes += message.len();
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        buffer.lines.push(LogRow { at: now_ms(), level, message });
    }
}

struct FindRun(Option<String>);

impl Visit for FindRun {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == RUN_FIELD {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == RUN_FIELD {
            self.0 = Some(value.to_owned());
        }
    }
}

/// The event's message, then its other fields as ` key=value`.
struct Message(String, String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.1.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        } else {
            self.1.push_str(&format!(" {}={value}", field.name()));
        }
    }
}
