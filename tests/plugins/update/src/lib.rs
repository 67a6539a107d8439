//! A plugin that plays its own next version. Its declarations come from one
//! fixed-size text in its data, `DECLARATIONS`, which the service tests rewrite in a
//! copy of the built file (same length, so the component stays valid): a new file,
//! a new hash, declarations of the test's choosing, as a rebuilt update would have.
//!
//! The text is `key=value` pairs separated by `;`, padded with spaces:
//! - `version`: the plugin's version;
//! - `default`: the default of its `host` field;
//! - `token`: the kind of its `token` field (`secret` or `text`);
//! - `bind`: where `token` may go: `host`, or `host+collector`;
//! - `build`: anything; changing it changes only the hash.
//!
//! `verify` and `fetch` send `token=<token>` to `{host}/echo`; `fetch` also to
//! `{collector}/echo`, and emits one asset.

wit_bindgen::generate!({
    world: "connector-plugin",
    path: "../../../wit/previous/v0.3.0",
});

use exports::vulnbridge::connector::connector::Guest;
use std::cell::RefCell;
use vulnbridge::connector::http::{self, Method, Request};
use vulnbridge::connector::output;
use vulnbridge::connector::types::{
    Asset, Check, ConfigField, Egress, FieldError, FieldKind, Locators, Page, PluginError, PluginInfo, Setting,
};

/// The declarations, as built; the tests rewrite them (keep the marker and length).
#[used]
static DECLARATIONS: [u8; 160] = *b"UPDATE-DECLARATIONS:version=1.0.0;default=https://api.example.invalid;token=secret;bind=host;build=1                                                            ";

fn declaration(key: &str) -> String {
    // Read at run time, so the compiler keeps the text as it is in the file.
    let bytes: Vec<u8> =
        (0..DECLARATIONS.len()).map(|i| unsafe { std::ptr::read_volatile(DECLARATIONS.as_ptr().add(i)) }).collect();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // After the marker (not repeated here as a literal: the test looks for it).
    let text = text.split_once(':').map_or("", |(_, declarations)| declarations).trim_end();
    text.split(';')
        .find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_owned()))
        .unwrap_or_default()
}

thread_local! {
    static SETTINGS: RefCell<Vec<Setting>> = const { RefCell::new(Vec::new()) };
}

fn setting(key: &str) -> String {
    SETTINGS.with_borrow(|s| s.iter().find(|s| s.key == key).map(|s| s.value.clone()).unwrap_or_default())
}

fn post(base: &str, body: String) -> Result<String, String> {
    let request = Request {
        method: Method::Post,
        url: format!("{base}/echo"),
        headers: vec![("content-type".into(), "text/plain".into())],
        body: Some(body.into_bytes()),
        timeout_ms: Some(5_000),
    };
    http::send(&request).map(|r| String::from_utf8_lossy(&r.body).into_owned()).map_err(|e| format!("{e:?}"))
}

struct Update;

impl Guest for Update {
    fn info() -> PluginInfo {
        let token_kind = if declaration("token") == "text" { FieldKind::Text } else { FieldKind::Secret };
        let mut sent_to = vec!["{host}".to_string()];
        if declaration("bind") == "host+collector" {
            sent_to.push("{collector}".into());
        }
        let field = |key: &str, kind: FieldKind, default: Option<String>, sent_to: Vec<String>| ConfigField {
            key: key.into(),
            label: key.into(),
            help: format!("The {key}."),
            kind,
            required: false,
            default_value: default,
            sent_to,
        };
        PluginInfo {
            id: "test-update".into(),
            name: "Update test plugin".into(),
            version: declaration("version"),
            description: "Plays its own next version.".into(),
            scanner_type: "Test".into(),
            fields: vec![
                field("host", FieldKind::Host, Some(declaration("default")), Vec::new()),
                field("collector", FieldKind::Host, None, Vec::new()),
                field("token", token_kind, None, if token_kind == FieldKind::Secret { sent_to } else { Vec::new() }),
            ],
            egress: vec![
                Egress { origin: "{host}".into(), purpose: "its API".into() },
                Egress { origin: "{collector}".into(), purpose: "a second API".into() },
            ],
            independent_pages: false,
        }
    }

    fn configure(settings: Vec<Setting>) -> Result<Vec<String>, Vec<FieldError>> {
        SETTINGS.set(settings);
        Ok(Vec::new())
    }

    fn verify() -> Result<Vec<Check>, PluginError> {
        let answer = post(&setting("host"), format!("token={}", setting("token"))).map_err(PluginError::Unreachable)?;
        Ok(vec![Check { name: "echo".into(), detail: format!("answered {answer}") }])
    }

    fn fetch() -> Result<Option<Page>, PluginError> {
        let token = setting("token");
        let mut tags = vec![format!("host: {:?}", post(&setting("host"), format!("token={token}")))];
        if !setting("collector").is_empty() {
            tags.push(format!("collector: {:?}", post(&setting("collector"), format!("token={token}"))));
        }
        let locators = Locators {
            external_id: Some("one".into()),
            hostname: None,
            fqdn: None,
            netbios: None,
            ip_address: None,
            mac_address: None,
            url: None,
            application: None,
        };
        output::emit_assets(&[Asset {
            key: "one".into(),
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
export!(Update);
