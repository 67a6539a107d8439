//! A simulated Defender for Endpoint tenant: generated data ([`generator`]) served
//! by real HTTP servers on loopback ([`server`]) that behave like the Defender API,
//! its Azure AD login host and its export storage, with switchable [`faults`].

pub mod catalogue;
pub mod faults;
pub mod generator;
pub mod server;

pub use faults::{Endpoint, Faults, RetryAfter, ServerError};
pub use generator::{Machine, Tenant, TenantSpec, VulnerabilityRow};
pub use server::{DefenderSim, SimOptions};
