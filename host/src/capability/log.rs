//! The `log` import: plugin log lines, masked and bounded, into the host's tracing.

use crate::bindings::log::{Host, Level};
use crate::redact::Redactor;
use crate::state::PluginState;
use std::sync::Arc;

/// Log lines accepted from one instance; later lines are counted, not shown.
pub const DEFAULT_MAX_LINES: u64 = 10_000;
/// Longest line shown; longer ones are cut.
const MAX_LINE_CHARS: usize = 4_096;

pub struct LogCapability {
    plugin_id: String,
    redactor: Arc<Redactor>,
    max_lines: u64,
    pub lines: u64,
    pub dropped: u64,
}

impl LogCapability {
    pub fn new(plugin_id: String, redactor: Arc<Redactor>) -> Self {
        LogCapability { plugin_id, redactor, max_lines: DEFAULT_MAX_LINES, lines: 0, dropped: 0 }
    }

    pub fn write(&mut self, level: Level, message: &str) {
        if self.lines >= self.max_lines {
            if self.dropped == 0 {
                tracing::warn!(plugin = %self.plugin_id, "log limit of {} lines reached; further plugin log lines are dropped", self.max_lines);
            }
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        let mut text = self.redactor.redact(message);
        if text.len() > MAX_LINE_CHARS {
            let cut = (0..=MAX_LINE_CHARS).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            text.truncate(cut);
            text.push_str(" [cut]");
        }
        let plugin = self.plugin_id.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{text}"),
            Level::Debug => tracing::debug!(plugin, "{text}"),
            Level::Info => tracing::info!(plugin, "{text}"),
            Level::Warn => tracing::warn!(plugin, "{text}"),
            Level::Error => tracing::error!(plugin, "{text}"),
        }
    }
}

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log.write(level, &message);
        Ok(())
    }
}
