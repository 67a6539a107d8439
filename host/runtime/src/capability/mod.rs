//! The capabilities the host lends to plugins, one module per imported interface.

pub mod http;
pub(crate) mod log;
pub(crate) mod output;
pub mod records;
pub(crate) mod wire;
#[cfg(test)]
mod wire_properties;

use crate::bindings::types;
use crate::plugin_state::PluginState;

/// The shared types interface has no functions.
impl types::Host for PluginState {}
