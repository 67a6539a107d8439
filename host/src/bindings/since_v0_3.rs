//! The contract as this host implements it (`wit/`): the bindings the rest of the
//! host uses. An older contract line runs through its own module's adapter.

// The generated items carry the WIT files' documentation where it exists; the
// generated glue (traits, linker functions) has none to carry.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "connector-plugin",
    imports: { default: trappable },
    additional_derives: [PartialEq],
});

use vulnbridge::connector::types;

impl types::Asset {
    /// An asset located by its key alone (`external-id`), for tests and embedders.
    pub fn with_external_id(key: &str) -> Self {
        types::Asset {
            key: key.into(),
            locators: types::Locators {
                external_id: Some(key.into()),
                hostname: None,
                fqdn: None,
                netbios: None,
                ip_address: None,
                mac_address: None,
                url: None,
                application: None,
            },
            os: None,
            os_version: None,
            tags: Vec::new(),
            last_seen: None,
        }
    }
}
