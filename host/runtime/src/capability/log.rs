//! The `log` import: plugin log lines, masked and bounded, into the host's tracing.

use crate::bindings::log::{Host, Level};
use crate::limits::LimitExceeded;
use crate::plugin_state::PluginState;
use crate::redact::Redactor;
use std::sync::Arc;

pub(crate) struct LogCapability {
    plugin_id: String,
    redactor: Arc<Redactor>,
    max_lines: u64,
    pub(crate) lines: u64,
    /// The first [`MAX_WARNINGS`] warning and error lines, masked: what the run
    /// summary shows an operator.
    pub(crate) warnings: Vec<String>,
}

/// Warning lines a run summary keeps of one instance; later ones are counted only
/// in the log.
pub(crate) const MAX_WARNINGS: usize = 20;

impl LogCapability {
    pub(crate) fn new(plugin_id: String, redactor: Arc<Redactor>, max_lines: u64) -> Self {
        LogCapability { plugin_id, redactor, max_lines, lines: 0, warnings: Vec::new() }
    }

    /// Writes a line, or says which limit it would exceed.
    pub(crate) fn write(&mut self, level: Level, message: &str) -> Result<(), LimitExceeded> {
        self.lines += 1;
        if self.lines > self.max_lines {
            return Err(LimitExceeded {
                limit: format!("log limit of {} lines", self.max_lines),
                detail: format!("wrote line {}", self.lines),
            });
        }
        // Masked, and on one line: a plugin cannot forge the host's log lines.
        // Cut before masking too, so a huge line costs no more than a long one.
        let head = &message[..message.floor_char_boundary(4 * crate::redact::MAX_LOG_LINE_BYTES)];
        let mut text = crate::redact::one_line(&self.redactor.redact(head));
        crate::redact::cap_line(&mut text);
        if matches!(level, Level::Warn | Level::Error) && self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(text.clone());
        }
        let plugin = self.plugin_id.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{text}"),
            Level::Debug => tracing::debug!(plugin, "{text}"),
            Level::Info => tracing::info!(plugin, "{text}"),
            Level::Warn => tracing::warn!(plugin, "{text}"),
            Level::Error => tracing::error!(plugin, "{text}"),
        }
        Ok(())
    }
}

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        match self.log.write(level, &message) {
            Ok(()) => Ok(()),
            Err(breach) => Err(self.exceed(breach)),
        }
    }
}
