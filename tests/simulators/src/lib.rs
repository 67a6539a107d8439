//! Simulated services on loopback, for end-to-end tests and the demo.
//!
//! - [`defender`]: a Microsoft Defender for Endpoint tenant and its Azure AD login
//!   host, serving deterministic generated data with the quirks real tenants have.

pub mod defender;
pub mod rng;
