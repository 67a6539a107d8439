//! A simulated Defender for Endpoint tenant: generated data ([`generator`]) served
//! by a real HTTP server on 127.0.0.1 ([`server`]) that behaves like the Defender
//! API and its Azure AD login host.

pub mod generator;
pub mod server;

pub use generator::{Machine, Tenant, TenantSpec, VulnerabilityRow};
pub use server::{DefenderSim, SimOptions};
