//! A working plugin of the previous contract, `vulnbridge:connector@0.1.0`, built from
//! the snapshot the SDK keeps in `wit/previous/v0.1.0`. 0.2.0 changed a record
//! (`locators`), which breaks 0.1 plugins, so the host must refuse this one before
//! instantiating, naming both versions and how to fix it.

wit_bindgen::generate!({
    world: "connector-plugin",
    path: "../../../wit/previous/v0.1.0",
});

use exports::vulnbridge::connector::connector::Guest;
use vulnbridge::connector::output;
use vulnbridge::connector::types::{Asset, Check, FieldError, Locators, Page, PluginError, PluginInfo, Setting};

struct PreviousContract;

impl Guest for PreviousContract {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "test-contract-v0-1".into(),
            name: "Contract 0.1.0 plugin".into(),
            version: "0.1.0".into(),
            description: "Emits one asset through the 0.1.0 contract.".into(),
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
        let locators = Locators {
            external_id: Some("old".into()),
            hostname: None,
            fqdn: None,
            netbios: None,
            ip_address: None,
            mac_address: None,
        };
        output::emit_assets(&[Asset {
            key: "old".into(),
            locators,
            os: None,
            os_version: None,
            tags: vec![],
            last_seen: None,
        }]);
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(PreviousContract);
