//! The contract's types as the host sees them: a plugin's info and fields, its
//! records, and the contract versions this host runs.

pub use crate::bindings::types::*;
pub use crate::bindings::{CONTRACT_VERSION, SUPPORTED_CONTRACTS};
