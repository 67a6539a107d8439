//! A plugin of contract 0.2.0, built from the snapshot the SDK keeps in
//! `wit/previous/v0.2.0`, as a third party's plugin from before 0.3 would be. The
//! 0.3 host must run it through its adapter, with the safest reading of 0.2: the
//! origin it derives at `configure` (from its `derived` setting) may be reached,
//! but its secret goes only to its `api` host field, never to the derived origin.
//!
//! `fetch` sends its token to `api` (allowed), then to the derived origin (refused),
//! then a request without a secret to the derived origin (allowed), and emits one
//! asset whose tags say what each answer was. Last, it sends its token's
//! placeholder split by a tab to the derived origin's URL (where a URL parser would
//! join it after a check on the raw text): refused, as for a 0.3 plugin.

wit_bindgen::generate!({
    world: "connector-plugin",
    path: "../../../wit/previous/v0.2.0",
});

use exports::vulnbridge::connector::connector::Guest;
use std::cell::RefCell;
use vulnbridge::connector::http::{self, Method, Request};
use vulnbridge::connector::output;
use vulnbridge::connector::types::{
    Asset, Check, ConfigField, FieldError, FieldKind, Locators, Page, PluginError, PluginInfo, Setting,
};

thread_local! {
    static SETTINGS: RefCell<Vec<Setting>> = const { RefCell::new(Vec::new()) };
}

fn setting(key: &str) -> String {
    SETTINGS.with_borrow(|s| s.iter().find(|s| s.key == key).map(|s| s.value.clone()).unwrap_or_default())
}

fn field(key: &str, kind: FieldKind) -> ConfigField {
    ConfigField { key: key.into(), label: key.into(), help: String::new(), kind, required: true, default_value: None }
}

fn post(url: &str, body: &str) -> String {
    let request = Request {
        method: Method::Post,
        url: url.into(),
        headers: vec![("content-type".into(), "text/plain".into())],
        body: Some(body.as_bytes().to_vec()),
        timeout_ms: Some(5_000),
    };
    match http::send(&request) {
        Ok(response) => format!("answered {}", String::from_utf8_lossy(&response.body)),
        Err(e) => format!("refused {e:?}"),
    }
}

struct Legacy;

impl Guest for Legacy {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "test-contract-v0-2".into(),
            name: "Contract 0.2.0 plugin".into(),
            version: "0.1.0".into(),
            description: "A plugin built before contract 0.3.".into(),
            scanner_type: "Test".into(),
            fields: vec![
                field("api", FieldKind::Host),
                field("derived", FieldKind::Text),
                field("token", FieldKind::Secret),
            ],
        }
    }

    fn configure(settings: Vec<Setting>) -> Result<Vec<String>, Vec<FieldError>> {
        SETTINGS.set(settings);
        // As 0.2 allowed: an origin derived from a setting.
        Ok(vec![setting("derived")])
    }

    fn verify() -> Result<Vec<Check>, PluginError> {
        Ok(vec![Check { name: "legacy".into(), detail: "contract 0.2.0".into() }])
    }

    fn fetch() -> Result<Option<Page>, PluginError> {
        let (api, derived, token) = (setting("api"), setting("derived"), setting("token"));
        let tags = vec![
            format!("api with token: {}", post(&format!("{api}/echo"), &format!("token={token}"))),
            format!("derived with token: {}", post(&format!("{derived}/echo"), &format!("token={token}"))),
            format!("derived without: {}", post(&format!("{derived}/echo"), "hello")),
            {
                let (head, tail) = token.split_at(token.len() / 2);
                format!("derived split: {}", post(&format!("{derived}/collect?t={head}\t{tail}"), ""))
            },
        ];
        let locators = Locators {
            external_id: Some("legacy".into()),
            hostname: None,
            fqdn: None,
            netbios: None,
            ip_address: None,
            mac_address: None,
            url: None,
            application: None,
        };
        output::emit_assets(&[Asset {
            key: "legacy".into(),
            locators,
            os: None,
            os_version: None,
            tags,
            last_seen: None,
        }]);
        Ok(None)
    }

    fn map(_: Page) -> Result<(), PluginError> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(Legacy);
