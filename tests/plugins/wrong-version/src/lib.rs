//! A well-formed plugin of contract `vulnbridge:connector@9.0.0` (its own copy of the
//! WIT, version changed): the host must refuse it before instantiating, naming both
//! versions.

wit_bindgen::generate!({
    world: "connector-plugin",
    path: "wit",
});

use exports::vulnbridge::connector::connector::Guest;
use vulnbridge::connector::types::{Check, FieldError, Page, PluginError, PluginInfo, Setting};

struct FromTheFuture;

impl Guest for FromTheFuture {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "test-future".into(),
            name: "Future contract".into(),
            version: "9.0.0".into(),
            description: String::new(),
            scanner_type: "Test".into(),
            fields: Vec::new(),
        }
    }
    fn configure(_: Vec<Setting>) -> Result<Vec<String>, Vec<FieldError>> {
        Ok(Vec::new())
    }
    fn verify() -> Result<Vec<Check>, PluginError> {
        Ok(Vec::new())
    }
    fn fetch() -> Result<Option<Page>, PluginError> {
        Ok(None)
    }
    fn map(_: Page) -> Result<(), PluginError> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(FromTheFuture);
