//! The contract's types as the host sees them: a plugin's info and fields, its
//! records, and the contract versions this host runs.

pub use crate::bindings::types::*;
pub use crate::bindings::{supported_contracts, CONTRACT_VERSION};

/// How a plugin's declared egress and secret bindings read for an operator, one line
/// each (`connector-host info` prints them).
pub use crate::egress::describe as describe_egress;
