//! The host's log: lines appear with the plugin's id, secrets masked, and are capped
//! per run by the operator's `[limits] log_lines`. Natively (unit tests) they go to
//! stderr.
//!
//! ```
//! connector_sdk::warn!("page {} came back empty; retrying", 3);
//! ```

pub use crate::bindings::vulnbridge::connector::log::Level;

/// Logs one line.
pub fn log(level: Level, message: &str) {
    sys::log(level, message)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    pub fn log(level: super::Level, message: &str) {
        crate::bindings::vulnbridge::connector::log::log(level, message)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    pub fn log(level: super::Level, message: &str) {
        eprintln!("[{level:?}] {message}");
    }
}

/// Logs a formatted line at a level: `log_at!(Level::Info, "...", args)`.
#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)+) => { $crate::log::log($level, &format!($($arg)+)) };
}

/// Logs a formatted line at trace level.
#[macro_export]
macro_rules! trace { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Trace, $($arg)+) }; }
/// Logs a formatted line at debug level.
#[macro_export]
macro_rules! debug { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Debug, $($arg)+) }; }
/// Logs a formatted line at info level.
#[macro_export]
macro_rules! info { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Info, $($arg)+) }; }
/// Logs a formatted line at warn level.
#[macro_export]
macro_rules! warn { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Warn, $($arg)+) }; }
/// Logs a formatted line at error level.
#[macro_export]
macro_rules! error { ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Error, $($arg)+) }; }
