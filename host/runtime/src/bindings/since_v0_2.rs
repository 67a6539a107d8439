//! Contract 0.2 (`wit/previous/v0.2.0`), run on this host through an adapter.
//!
//! The records a 0.2 plugin exchanges with the host did not change in 0.3: they are
//! converted field by field ([`Adapt`]) and the 0.2 capabilities forward to the
//! current ones. What 0.3 added is read the safest way:
//! - a 0.2 plugin declares no egress: it may reach its `host` fields' values and the
//!   origins its `configure` derives, as it always could;
//! - its secret fields are bound to its `host` fields only: no secret is ever
//!   substituted in a request toward an origin the plugin derived itself;
//! - its pages map on one instance, in order (`independent-pages` is false).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit/previous/v0.2.0",
    world: "connector-plugin",
    imports: { default: trappable },
});

use super::since_v0_3::vulnbridge::connector as current;
use crate::plugin_state::PluginState;
use vulnbridge::connector::{http, log, output, types};

/// A value of one contract's type as the same value of another's: the records the
/// two versions share have the same fields.
pub trait Adapt<T> {
    /// The converted value.
    fn adapt(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => { $(impl Adapt<$t> for $t { fn adapt(self) -> $t { self } })* };
}
same!(String, u8, u16, u32, u64, i64, bool);

impl<A: Adapt<B>, B> Adapt<Option<B>> for Option<A> {
    fn adapt(self) -> Option<B> {
        self.map(Adapt::adapt)
    }
}

impl<A: Adapt<B>, B> Adapt<Vec<B>> for Vec<A> {
    fn adapt(self) -> Vec<B> {
        self.into_iter().map(Adapt::adapt).collect()
    }
}

impl Adapt<(String, String)> for (String, String) {
    fn adapt(self) -> (String, String) {
        self
    }
}

/// Records with the same fields, both ways.
macro_rules! records {
    ($($a:ty, $b:ty { $($field:ident),* };)*) => {$(
        impl Adapt<$b> for $a {
            fn adapt(self) -> $b { <$b>::from_fields(self) }
        }
        impl Adapt<$a> for $b {
            fn adapt(self) -> $a { <$a>::from_fields(self) }
        }
        impl FromFields<$a> for $b {
            fn from_fields(v: $a) -> $b { Self { $($field: v.$field.adapt()),* } }
        }
        impl FromFields<$b> for $a {
            fn from_fields(v: $b) -> $a { Self { $($field: v.$field.adapt()),* } }
        }
    )*};
}

trait FromFields<T> {
    fn from_fields(v: T) -> Self;
}

/// Enums and variants with the same cases, both ways.
macro_rules! cases {
    ($($a:ident, $b:ident { $($case:ident $(($x:ident))?),* };)*) => {$(
        impl Adapt<$b> for $a {
            fn adapt(self) -> $b { match self { $($a::$case $(($x))? => $b::$case $(($x.adapt()))?),* } }
        }
        impl Adapt<$a> for $b {
            fn adapt(self) -> $a { match self { $($b::$case $(($x))? => $a::$case $(($x.adapt()))?),* } }
        }
    )*};
}

use current::http::{HttpError as HttpError3, Method as Method3, Request as Request3, Response as Response3};
use current::log::Level as Level3;
use current::types::{
    Asset as Asset3, Check as Check3, Datetime as Datetime3, FieldError as FieldError3, FieldKind as FieldKind3,
    Locators as Locators3, Page as Page3, PluginError as PluginError3, Setting as Setting3,
    Vulnerability as Vulnerability3, VulnerabilityDefinition as VulnerabilityDefinition3,
};
use http::{HttpError, Method};
use log::Level;
use types::{FieldKind, PluginError};

records! {
    types::Datetime, Datetime3 { seconds, nanoseconds };
    types::Setting, Setting3 { key, value };
    types::FieldError, FieldError3 { key, message };
    types::Check, Check3 { name, detail };
    types::Page, Page3 { kind, sequence, body };
    types::Locators, Locators3 { external_id, hostname, fqdn, netbios, ip_address, mac_address, url, application };
    types::Asset, Asset3 { key, locators, os, os_version, tags, last_seen };
    types::Vulnerability, Vulnerability3 { asset_key, identifier, score, found, last_seen, details };
    types::VulnerabilityDefinition, VulnerabilityDefinition3 { identifier, name, cve_ids, description, solution };
    http::Request, Request3 { method, url, headers, body, timeout_ms };
    http::Response, Response3 { status, headers, body };
}

cases! {
    FieldKind, FieldKind3 { Text, Secret, Host, Integer, Boolean };
    Method, Method3 { Get, Post, Put, Patch, Delete, Head };
    Level, Level3 { Trace, Debug, Info, Warn, Error };
    PluginError, PluginError3 { NotConfigured(t), Authentication(t), Permission(t), Unreachable(t), Throttled(t), BadResponse(t), Other(t) };
    HttpError, HttpError3 { Denied(t), Timeout(t), TooLarge(n), Transport(t), InvalidRequest(t) };
}

/// A 0.2 call's result as the current types.
pub trait AdaptResult<T> {
    /// The result, converted.
    fn adapt_result(self) -> T;
}

impl<A: Adapt<B>, B> AdaptResult<Result<B, PluginError3>> for Result<A, PluginError> {
    fn adapt_result(self) -> Result<B, PluginError3> {
        self.map(Adapt::adapt).map_err(Adapt::adapt)
    }
}

impl types::Host for PluginState {}

impl http::Host for PluginState {
    fn send(&mut self, request: http::Request) -> wasmtime::Result<Result<http::Response, HttpError>> {
        let result = current::http::Host::send(self, request.adapt())?;
        Ok(result.map(Adapt::adapt).map_err(Adapt::adapt))
    }
}

impl log::Host for PluginState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        current::log::Host::log(self, level.adapt(), message)
    }
}

impl output::Host for PluginState {
    fn emit_assets(&mut self, assets: Vec<types::Asset>) -> wasmtime::Result<()> {
        current::output::Host::emit_assets(self, assets.adapt())
    }
    fn emit_vulnerabilities(&mut self, vulnerabilities: Vec<types::Vulnerability>) -> wasmtime::Result<()> {
        current::output::Host::emit_vulnerabilities(self, vulnerabilities.adapt())
    }
    fn emit_definitions(&mut self, definitions: Vec<types::VulnerabilityDefinition>) -> wasmtime::Result<()> {
        current::output::Host::emit_definitions(self, definitions.adapt())
    }
    fn count(&mut self, counter: String, delta: u64) -> wasmtime::Result<()> {
        current::output::Host::count(self, counter, delta)
    }
    fn skip(&mut self, reason: String, count: u64) -> wasmtime::Result<()> {
        current::output::Host::skip(self, reason, count)
    }
    fn progress(&mut self, stage: String, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        current::output::Host::progress(self, stage, done, total)
    }
}

/// A 0.2 plugin's info, read as 0.3: its `host` fields are its declared egress and
/// the only origins its secrets may go to (see the module's documentation).
pub fn adapt_info(info: types::PluginInfo) -> current::types::PluginInfo {
    use current::types::{ConfigField, Egress};
    let hosts: Vec<String> =
        info.fields.iter().filter(|f| f.kind == FieldKind::Host).map(|f| format!("{{{}}}", f.key)).collect();
    let fields = info
        .fields
        .into_iter()
        .map(|f| ConfigField {
            sent_to: if f.kind == FieldKind::Secret { hosts.clone() } else { Vec::new() },
            key: f.key,
            label: f.label,
            help: f.help,
            kind: f.kind.adapt(),
            required: f.required,
            default_value: f.default_value,
        })
        .collect();
    current::types::PluginInfo {
        id: info.id,
        name: info.name,
        version: info.version,
        description: info.description,
        scanner_type: info.scanner_type,
        fields,
        egress: hosts
            .iter()
            .map(|h| Egress { origin: h.clone(), purpose: "a host field (contract 0.2)".into() })
            .collect(),
        independent_pages: false,
    }
}
