//! Simulated services on loopback, for end-to-end tests and the demo.
//!
//! - [`cvm`]: Cisco Vulnerability Management's connector API with an in-memory store
//!   applying KDI semantics (auto-close included).
//! - [`defender`]: a Microsoft Defender for Endpoint tenant and its Azure AD login
//!   host, serving deterministic generated data with the quirks real tenants have.
//! - [`echo`]: an echo server, to see what a request really carried.
//! - [`github`]: a GitHub organization's Dependabot alerts API.
//! - [`pages`]: fixed JSON pages behind a bearer token, for a new plugin's first test.

pub mod cvm;
pub mod defender;
pub mod echo;
pub mod github;
pub mod pages;
pub mod rng;
pub mod serve;
