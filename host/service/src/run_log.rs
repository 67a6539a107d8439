//! A run's log lines, caught as they are logged: every event of the run (the
//! plugin's log lines, already masked by the host, and the host's own) is kept for
//! that run and stored with it, for the API and the console.
//!
//! Each run logs through a dispatcher of its own ([`RunLog::dispatch`]) that keeps
//! the run's lines and passes every span and event on to the process's subscriber,
//! whatever the program embedding the service installed (or nothing). So the run log
//! needs nothing from the embedder, and the process's log keeps its spans.
//! The pipeline carries the current dispatcher into the threads it starts.

use super::store::{now_ms, LogRow};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

/// The most lines kept of one run; the rest are counted and the count logged.
const MAX_LINES: usize = 5_000;
/// The most bytes of messages kept of one run (each line is capped at
/// `redact::MAX_LOG_LINE_BYTES` too).
const MAX_BYTES: usize = 4 << 20;
/// The least severe level a run log keeps.
const KEPT: Level = Level::INFO;

/// The lines of one run, kept while it goes.
#[derive(Clone, Default)]
pub(crate) struct RunLog(Arc<Mutex<Buffer>>);

#[derive(Default)]
struct Buffer {
    lines: Vec<LogRow>,
    /// Bytes of messages kept so far.
    bytes: usize,
    dropped: u64,
}

impl RunLog {
    /// A dispatcher for the run's code: keeps its lines here and passes everything
    /// on to `outer` (the dispatcher the run was started under).
    pub(crate) fn dispatch(&self, outer: Dispatch) -> Dispatch {
        Dispatch::new(Tee { log: self.clone(), outer, own_spans: AtomicU64::new(0) })
    }

    /// The lines kept, and a last one counting those that were not.
    pub(crate) fn take(&self) -> Vec<LogRow> {
        let mut buffer = std::mem::take(&mut *self.0.lock().unwrap());
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

    fn keep(&self, event: &Event<'_>) {
        let mut text = Message(String::new(), String::new());
        event.record(&mut text);
        let mut message = if text.1.is_empty() { text.0 } else { format!("{}{}", text.0, text.1) };
        connector_host::log_line::cap_line(&mut message);
        let mut buffer = self.0.lock().unwrap();
        if buffer.lines.len() >= MAX_LINES || buffer.bytes + message.len() > MAX_BYTES {
            buffer.dropped += 1;
            return;
        }
        buffer.bytes += message.len();
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        buffer.lines.push(LogRow { at: now_ms(), level, message });
    }
}

/// Span ids this dispatcher gives to spans the outer subscriber did not want (so
/// they are not passed on); the outer subscriber's ids never have the top bit set.
const OWN_SPAN: u64 = 1 << 63;

/// Keeps the run's events and passes spans and events on to `outer`, under the
/// outer subscriber's own span ids, so its span context (the run's span, the
/// stage's) is what it would have been without the run log.
struct Tee {
    log: RunLog,
    outer: Dispatch,
    own_spans: AtomicU64,
}

impl Tee {
    fn outer_id<'a>(&self, id: &'a Id) -> Option<&'a Id> {
        (id.into_u64() & OWN_SPAN == 0).then_some(id)
    }
}

impl Subscriber for Tee {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Asked every time: which events the outer subscriber wants may change,
        // and the interest of a callsite is shared by every dispatcher.
        self.outer.register_callsite(metadata);
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= KEPT || self.outer.enabled(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        if self.outer.enabled(span.metadata()) {
            self.outer.new_span(span)
        } else {
            Id::from_u64(OWN_SPAN | (self.own_spans.fetch_add(1, Ordering::Relaxed) + 1))
        }
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(id) = self.outer_id(span) {
            self.outer.record(id, values)
        }
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        if let (Some(span), Some(follows)) = (self.outer_id(span), self.outer_id(follows)) {
            self.outer.record_follows_from(span, follows)
        }
    }

    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() <= KEPT {
            self.log.keep(event);
        }
        if self.outer.enabled(event.metadata()) {
            self.outer.event(event)
        }
    }

    fn enter(&self, span: &Id) {
        if let Some(id) = self.outer_id(span) {
            self.outer.enter(id)
        }
    }

    fn exit(&self, span: &Id) {
        if let Some(id) = self.outer_id(span) {
            self.outer.exit(id)
        }
    }

    fn clone_span(&self, span: &Id) -> Id {
        match self.outer_id(span) {
            Some(id) => self.outer.clone_span(id),
            None => span.clone(),
        }
    }

    fn try_close(&self, span: Id) -> bool {
        match self.outer_id(&span) {
            Some(_) => self.outer.try_close(span),
            None => false,
        }
    }

    fn current_span(&self) -> tracing_core::span::Current {
        self.outer.current_span()
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    /// Counts the events the process's subscriber sees, and the spans around them.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let spans: Vec<_> = ctx.event_scope(event).into_iter().flatten().map(|s| s.name().to_owned()).collect();
            self.0.lock().unwrap().push(spans.join("/"));
        }
    }

    #[test]
    fn a_run_keeps_its_lines_from_every_thread_and_the_process_still_sees_them_in_their_spans() {
        let seen = Seen::default();
        let outer = Dispatch::new(tracing_subscriber::registry().with(seen.clone()));
        let log = RunLog::default();
        tracing::dispatcher::with_default(&outer, || {
            let run = log.dispatch(tracing::dispatcher::get_default(|d| d.clone()));
            tracing::dispatcher::with_default(&run, || {
                let _span = tracing::info_span!("service_run", run = "r1").entered();
                tracing::info!(devices = 3, "fetched");
                tracing::debug!("not kept: below the run log's level");
                // The pipeline's threads carry the dispatcher and the span along.
                let (dispatch, span) = (tracing::dispatcher::get_default(|d| d.clone()), tracing::Span::current());
                std::thread::spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let _span = span.enter();
                        tracing::warn!("from a mapping thread");
                    })
                })
                .join()
                .unwrap();
            });
        });
        tracing::info!("after the run: not this run's");
        let lines = log.take();
        let kept: Vec<_> = lines.iter().map(|l| (l.level.as_str(), l.message.as_str())).collect();
        assert_eq!(kept, [("info", "fetched devices=3"), ("warn", "from a mapping thread")]);
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            ["service_run", "service_run", "service_run"],
            "the outer subscriber saw every event (the debug one too) in the run's span"
        );
    }

    #[test]
    fn a_run_log_keeps_lines_without_any_subscriber_installed_and_counts_what_it_drops() {
        let log = RunLog::default();
        let run = log.dispatch(Dispatch::none());
        tracing::dispatcher::with_default(&run, || {
            for i in 0..MAX_LINES + 7 {
                tracing::info!("line {i}");
            }
        });
        let lines = log.take();
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert_eq!(
            lines[MAX_LINES].message,
            format!("7 more log lines were not kept (at most {MAX_LINES} lines and 4 MiB a run)")
        );
    }
}
