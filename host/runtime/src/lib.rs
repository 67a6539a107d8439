#![warn(missing_docs)]
#![deny(dead_code)]
//! The connector runtime: the sandbox that runs WebAssembly connector plugins (the
//! `vulnbridge:connector` contract in `wit/`). It loads and checks plugins, lends
//! them their capabilities (`http` through the network policy and secret bindings,
//! `log`, `output` into a record sink), enforces the limits, and masks secrets.
//! It knows nothing of KDI files, CVM or the platform service: the library
//! `connector-host` builds the run pipeline on it, and re-exports the parts an
//! embedder uses ([`engine`], [`config`], [`types`]).
//!
//! The other public modules are the pipeline's interface to the sandbox (hidden
//! from the documentation): not an embedder's API, and free to change.

pub mod config;
pub mod engine;
pub mod types;

#[doc(hidden)]
pub mod bindings;
#[doc(hidden)]
pub mod capability;
#[doc(hidden)]
pub mod limits;
#[doc(hidden)]
pub mod policy;
#[doc(hidden)]
pub mod redact;

mod cache;
mod egress;
mod plugin_state;
mod secrets;
mod session;
