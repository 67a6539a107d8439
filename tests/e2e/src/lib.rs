//! Helpers for the end-to-end tests in `tests/`: where the built artifacts are, how
//! to run the CLI, and an independent statement of the expected KDI output.

pub mod artifacts;
pub mod dependabot;
pub mod kdi;
pub mod languages;
pub mod oracle;
pub mod service;
