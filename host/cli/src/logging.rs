//! Log output: text for a person at a terminal (the default), or one JSON object a
//! line for a platform's log pipeline (`--log-format json`), with the fields of the
//! spans an event happened in (`instance`, `plugin`, `stage`) at the top level, so
//! that `jq 'select(.instance == "defender-prod")'` finds an instance's lines.

use serde_json::{Map, Value};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Lines of text.
    Text,
    /// One JSON object a line: `time`, `level`, `message`, the event's fields and its spans' fields.
    Json,
}

/// Installs the process's logger. `verbose` raises the default level; `RUST_LOG`
/// overrides it.
pub(crate) fn init(verbose: u8, format: LogFormat, service: bool) {
    let default = match verbose {
        0 if service => "info",
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let (filter, invalid) = filter_from(std::env::var("RUST_LOG").ok().as_deref(), default);
    match format {
        LogFormat::Text => {
            let text =
                tracing_subscriber::fmt::layer().with_writer(|| CappedLines(std::io::stderr())).with_target(false);
            tracing_subscriber::registry().with(text.with_filter(filter)).init()
        }
        LogFormat::Json => tracing_subscriber::registry().with(JsonLines.with_filter(filter)).init(),
    }
    // Through the logger, so that it is a JSON line too with `--log-format json`.
    if let Some(problem) = invalid {
        tracing::warn!("{problem}");
    }
}

/// What to log: `RUST_LOG`'s targets and levels (`warn,connector_host::run=debug`)
/// when it is set, else `default`. An invalid `RUST_LOG` gives the default and what
/// to say about it: a typo must not silence the log, nor pass unnoticed.
///
/// `Targets` rather than `EnvFilter`: the CLI needs no span or field filters, and
/// `EnvFilter` compiles the regex crates into every build (about 27 s of CPU of a
/// newcomer's first build).
fn filter_from(rust_log: Option<&str>, default: &str) -> (Targets, Option<String>) {
    let fallback = || default.parse().expect("a valid default level");
    match rust_log.map(str::trim).filter(|text| !text.is_empty()) {
        None => (fallback(), None),
        Some(text) => match text.parse() {
            Ok(filter) => (filter, None),
            Err(e) => (fallback(), Some(format!("ignoring RUST_LOG={text:?} ({e}); logging at `{default}`"))),
        },
    }
}

/// Stderr for text lines, each cut to `redact::MAX_LOG_LINE_BYTES` (the formatter
/// writes one event in one call).
struct CappedLines(std::io::Stderr);

impl Write for CappedLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let cap = connector_host::log_line::MAX_LOG_LINE_BYTES;
        if buf.len() <= cap {
            return self.0.write_all(buf).map(|()| buf.len());
        }
        let mut line = String::from_utf8_lossy(buf).trim_end().to_owned();
        connector_host::log_line::cap_line(&mut line);
        line.push('\n');
        self.0.write_all(line.as_bytes()).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Writes each event as one JSON object on stderr.
struct JsonLines;

/// A span's fields, kept with the span until it closes.
struct SpanFields(Map<String, Value>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JsonLines {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attributes.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("time".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into());
        line.insert("level".into(), event.metadata().level().as_str().to_ascii_lowercase().into());
        line.insert("target".into(), event.metadata().target().into());
        // Outer spans first, so that an inner span's field wins over an outer one's.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.clone());
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        if let Some(Value::String(message)) = line.get_mut("message") {
            connector_host::log_line::cap_line(message);
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // A log line that cannot be written has nowhere else to go.
        std::io::stderr().lock().write_all(text.as_bytes()).ok();
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::filter_from;
    use tracing::Level;

    #[test]
    fn rust_log_sets_levels_by_target_and_a_bad_one_falls_back_to_the_default() {
        let (filter, invalid) = filter_from(Some("warn,connector_host::run=debug"), "info");
        assert_eq!(invalid, None);
        assert!(filter.would_enable("connector_host::run", &Level::DEBUG));
        assert!(filter.would_enable("connector_host::run::kdi", &Level::DEBUG), "a module's children too");
        assert!(!filter.would_enable("connector_host::deliver", &Level::INFO), "others at warn");
        assert!(filter.would_enable("connector_host::deliver", &Level::WARN));

        for unset in [None, Some(""), Some("  ")] {
            let (filter, invalid) = filter_from(unset, "info");
            assert_eq!(invalid, None);
            assert!(filter.would_enable("anything", &Level::INFO), "{unset:?}");
            assert!(!filter.would_enable("anything", &Level::DEBUG), "{unset:?}");
        }

        let (filter, invalid) = filter_from(Some("connector_host=loud"), "warn");
        let said = invalid.expect("a bad RUST_LOG is said");
        assert!(said.contains("RUST_LOG=\"connector_host=loud\"") && said.contains("`warn`"), "{said}");
        assert!(filter.would_enable("connector_host", &Level::WARN), "the default after a bad RUST_LOG");
        assert!(!filter.would_enable("connector_host", &Level::INFO));
    }
}
