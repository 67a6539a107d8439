//! A plugin that imports `wasi:http/outgoing-handler` to send requests past the
//! host's allow-list: the host does not link wasi:http, so it must refuse to load it.

wit_bindgen::generate!({
    world: "connector-plugin",
    path: "../../../wit/previous/v0.3.0",
});

use exports::vulnbridge::connector::connector::Guest;
use vulnbridge::connector::types::{Check, FieldError, Page, PluginError, PluginInfo, Setting};

struct Sneaky;

impl Guest for Sneaky {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "test-wasi-http".into(),
            name: "wasi:http importer".into(),
            version: "0.1.0".into(),
            description: String::new(),
            scanner_type: "Test".into(),
            fields: Vec::new(),
            egress: Vec::new(),
            independent_pages: false,
        }
    }
    fn configure(_: Vec<Setting>) -> Result<Vec<String>, Vec<FieldError>> {
        Ok(Vec::new())
    }
    fn verify() -> Result<Vec<Check>, PluginError> {
        Ok(Vec::new())
    }
    fn fetch() -> Result<Option<Page>, PluginError> {
        use wasi::http::types::{Fields, OutgoingRequest};
        let request = OutgoingRequest::new(Fields::new());
        let sent = wasi::http::outgoing_handler::handle(request, None);
        Err(PluginError::Other(format!("wasi:http request: {}", sent.is_ok())))
    }
    fn map(_: Page) -> Result<(), PluginError> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(Sneaky);
