//! The contract as this host implements it (`wit/`, 0.4): the bindings the rest of the
//! host uses. An older contract line runs through its own module's adapter.

// The generated items carry the WIT files' documentation where it exists; the
// generated glue (traits, linker functions) has none to carry.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit",
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

impl types::Locators {
    /// Every locator, in the contract's order: the one list that masking, the output
    /// limit and the run's storage go through, so a locator added to the contract is
    /// added here once, and nothing forgets it.
    pub fn all(&self) -> [&Option<String>; 8] {
        [
            &self.external_id,
            &self.hostname,
            &self.fqdn,
            &self.netbios,
            &self.ip_address,
            &self.mac_address,
            &self.url,
            &self.application,
        ]
    }

    /// [`Self::all`], to change in place (masking).
    pub(crate) fn all_mut(&mut self) -> [&mut Option<String>; 8] {
        [
            &mut self.external_id,
            &mut self.hostname,
            &mut self.fqdn,
            &mut self.netbios,
            &mut self.ip_address,
            &mut self.mac_address,
            &mut self.url,
            &mut self.application,
        ]
    }

    /// The locators CVM matches an asset on alone (`url` needs `application`).
    pub fn standalone(&self) -> [&Option<String>; 6] {
        let [external_id, hostname, fqdn, netbios, ip_address, mac_address, _, _] = self.all();
        [external_id, hostname, fqdn, netbios, ip_address, mac_address]
    }
}

impl types::Asset {
    /// Every text of the asset: its key, locators, OS and version, tags.
    pub(crate) fn texts_mut(&mut self) -> impl Iterator<Item = &mut String> {
        std::iter::once(&mut self.key)
            .chain(self.locators.all_mut().into_iter().flatten())
            .chain([&mut self.os, &mut self.os_version].into_iter().flatten())
            .chain(self.tags.iter_mut())
    }

    /// Bytes of text in the asset (for the output limit).
    pub(crate) fn text_len(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.key.len()
            + self.locators.all().into_iter().map(opt).sum::<usize>()
            + opt(&self.os)
            + opt(&self.os_version)
            + self.tags.iter().map(String::len).sum::<usize>()
    }
}
