//! A misbehaving plugin: valid contract, but `fetch` panics. The host must report the
//! panic message, not an opaque trap.

wit_bindgen::generate!({
    world: "connector-plugin",
    path: "../../../wit",
});

use exports::vulnbridge::connector::connector::Guest;
use vulnbridge::connector::types::{Check, ConfigField, FieldError, FieldKind, Page, PluginError, PluginInfo, Setting};

struct PanicPlugin;

impl Guest for PanicPlugin {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "test-panic".into(),
            name: "Panicking test plugin".into(),
            version: "0.1.0".into(),
            description: "Panics in fetch.".into(),
            scanner_type: "Test".into(),
            fields: vec![ConfigField {
                key: "host".into(),
                label: "Host".into(),
                help: "Unused.".into(),
                kind: FieldKind::Host,
                required: false,
                default_value: Some("example.invalid".into()),
            }],
        }
    }

    fn configure(_: Vec<Setting>) -> Result<Vec<String>, Vec<FieldError>> {
        Ok(Vec::new())
    }

    fn verify() -> Result<Vec<Check>, PluginError> {
        Ok(Vec::new())
    }

    fn fetch() -> Result<Option<Page>, PluginError> {
        panic!("test plugin panics on purpose: row 17 has no id")
    }

    fn map(_: Page) -> Result<(), PluginError> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(PanicPlugin);
