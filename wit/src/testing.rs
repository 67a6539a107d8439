//! Running a connector's `map` natively, in the plugin's own unit tests.
//!
//! ```text
//! #[test]
//! fn maps_the_sample_page() {
//!     let mut connector = testing::configure::<MyConnector>(&[("token", "t"), ("org", "acme")]).unwrap();
//!     let out = testing::map_file(&mut connector, "alerts", "tests/fixtures/alerts.json").unwrap();
//!     assert_eq!(out.assets.len(), 3);
//! }
//! ```
//!
//! `plugin-dependabot/tests/mapping.rs` uses it this way.

pub use crate::output::Recorded;
use crate::types::{FieldError, Page, PluginError, Setting};
use crate::{Config, Connector, Output};
use std::path::Path;

/// Configures a connector natively from `key = value` pairs, as the host would.
pub fn configure<C: Connector>(settings: &[(&str, &str)]) -> Result<C, Vec<FieldError>> {
    let settings = settings.iter().map(|(k, v)| Setting { key: (*k).into(), value: (*v).into() }).collect();
    C::configure(&mut Config::new(&C::info().fields, settings))
}

/// A page as `fetch` would return it.
pub fn page(kind: &str, sequence: u32, body: impl Into<Vec<u8>>) -> Page {
    Page { kind: kind.into(), sequence, body: body.into() }
}

/// Maps one page natively and returns everything `map` produced.
pub fn map_page<C: Connector>(connector: &mut C, page: &Page) -> Result<Recorded, PluginError> {
    let mut out = Output::recording();
    connector.map(page, &mut out)?;
    Ok(out.into_recorded())
}

/// Maps a fixture file as a page of `kind` (sequence 0).
pub fn map_file<C: Connector>(connector: &mut C, kind: &str, path: impl AsRef<Path>) -> Result<Recorded, PluginError> {
    let path = path.as_ref();
    let body = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    map_page(connector, &page(kind, 0, body))
}
