//! Simulated services on loopback, for end-to-end tests and the demo.
//!
//! - [`defender`]: a Microsoft Defender for Endpoint tenant and its Azure AD login
//!   host, serving deterministic generated data with the quirks real tenants have.
//! - [`echo`]: an echo server, to see what a request really carried.
//! - [`github`]: a GitHub organization's Dependabot alerts API.
//! - [`pages`]: fixed JSON pages behind a bearer token, for a new plugin's first test.
//!
//! Cisco Vulnerability Management's simulator is the crate `connector-cvm-simulator`
//! (tests/cvm-simulator), apart so that the demo does not build its schema validator.

pub mod defender;
pub mod echo;
pub mod github;
pub mod pages;
pub mod rng;
pub mod serve;
