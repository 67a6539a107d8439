//! Contract 0.2 (`wit/previous/v0.2.0`), run on this host through an adapter.
//!
//! The records a 0.2 plugin exchanges with the host did not change in 0.3: they are
//! converted field by field ([`Adapt`]) and the 0.2 capabilities forward to the
//! current ones. What 0.3 added is read the safest way:
//! - a 0.2 plugin declares no egress: it may reach its `host` fields' values and the
//!   origins its `configure` derives, as it always could;
//! - its secret fields are bound to its `host` fields only: no secret is ever
//!   substituted in a request toward an origin the plugin derived itself;
//! - its pages map on one instance, in order (`independent-pages` is false);
//! - and what 0.4 added, as for a 0.3 plugin (`since_v0_3`): full runs, no state,
//!   open vulnerabilities, no choices, no declared counters.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit/previous/v0.2.0",
    world: "connector-plugin",
    imports: { default: trappable },
});

use super::adapt::{cases, forward_imports, records, Adapt};
use super::since_v0_4::vulnbridge::connector as current;
use vulnbridge::connector::{http, log, output, types};

use current::http::{HttpError as HttpError4, Method as Method4, Request as Request4, Response as Response4};
use current::log::Level as Level4;
use current::types::{
    Asset as Asset4, Check as Check4, Datetime as Datetime4, FieldError as FieldError4, FieldKind as FieldKind4,
    Locators as Locators4, Page as Page4, PluginError as PluginError4, Setting as Setting4,
    Vulnerability as Vulnerability4, VulnerabilityDefinition as VulnerabilityDefinition4,
};
use http::{HttpError, Method};
use log::Level;
use types::{FieldKind, PluginError};

records! {
    types::Datetime, Datetime4 { seconds, nanoseconds };
    types::Setting, Setting4 { key, value };
    types::FieldError, FieldError4 { key, message };
    types::Check, Check4 { name, detail };
    types::Page, Page4 { kind, sequence, body };
    types::Locators, Locators4 { external_id, hostname, fqdn, netbios, ip_address, mac_address, url, application };
    types::Asset, Asset4 { key, locators, os, os_version, tags, last_seen };
    types::VulnerabilityDefinition, VulnerabilityDefinition4 { identifier, name, cve_ids, description, solution };
    http::Request, Request4 { method, url, headers, body, timeout_ms };
    http::Response, Response4 { status, headers, body };
}

cases! {
    FieldKind, FieldKind4 { Text, Secret, Host, Integer, Boolean };
    Method, Method4 { Get, Post, Put, Patch, Delete, Head };
    Level, Level4 { Trace, Debug, Info, Warn, Error };
    PluginError, PluginError4 { NotConfigured(t), Authentication(t), Permission(t), Unreachable(t), Throttled(t), BadResponse(t), Other(t) };
    HttpError, HttpError4 { Denied(t), Timeout(t), TooLarge(n), Transport(t), InvalidRequest(t) };
}

/// A 0.2 vulnerability is open: the contract had no other status.
impl Adapt<Vulnerability4> for types::Vulnerability {
    fn adapt(self) -> Vulnerability4 {
        Vulnerability4 {
            asset_key: self.asset_key,
            identifier: self.identifier,
            score: self.score,
            found: self.found.adapt(),
            last_seen: self.last_seen.adapt(),
            details: self.details,
            status: current::types::VulnerabilityStatus::Open,
        }
    }
}

forward_imports!();

/// A 0.2 plugin's info, read as the current line's: its `host` fields are its declared egress and
/// the only origins its secrets may go to (see the module's documentation).
pub(crate) fn adapt_info(info: types::PluginInfo) -> current::types::PluginInfo {
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
            choices: Vec::new(),
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
        section: super::OTHER_SECTION.into(),
        counters: Vec::new(),
        incremental: false,
    }
}
