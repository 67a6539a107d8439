//! The contract's types as the host sees them: a plugin's info and fields, its
//! records, and the contract versions this host runs.

pub use crate::bindings::types::*;
pub use crate::bindings::{supported_contracts, CONTRACT_VERSION};

/// How a plugin's declared egress and secret bindings read for an operator, one line
/// each (`connector-host info` prints them).
pub use crate::egress::describe as describe_egress;

/// A field kind's name, as `info --json` and the service's API write it.
pub fn field_kind_name(kind: &FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::Secret => "secret",
        FieldKind::Host => "host",
        FieldKind::Integer => "integer",
        FieldKind::Boolean => "boolean",
    }
}

/// A plugin's fields as JSON: key, label, help, kind, required, default, sent_to,
/// choices (each value and label; empty: any value of the kind).
pub fn fields_json(info: &PluginInfo) -> serde_json::Value {
    info.fields
        .iter()
        .map(|f| {
            let choices: Vec<_> =
                f.choices.iter().map(|c| serde_json::json!({"value": c.value, "label": c.label})).collect();
            serde_json::json!({"key": f.key, "label": f.label, "help": f.help, "kind": field_kind_name(&f.kind),
                "required": f.required, "default": f.default_value, "sent_to": f.sent_to, "choices": choices})
        })
        .collect()
}

/// A counter role's name, as summaries and the service's API write it.
pub(crate) fn counter_role_name(role: CounterRole) -> &'static str {
    match role {
        CounterRole::SourceRows => "source_rows",
        CounterRole::SourceAssets => "source_assets",
        CounterRole::Other => "other",
    }
}

/// A plugin's declared counters as JSON: name, label and role of each.
pub fn counters_json(info: &PluginInfo) -> serde_json::Value {
    info.counters
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "label": c.label, "role": counter_role_name(c.role)}))
        .collect()
}

/// A plugin's declared egress as JSON: origin and purpose of each.
pub fn egress_json(info: &PluginInfo) -> serde_json::Value {
    info.egress.iter().map(|e| serde_json::json!({"origin": e.origin, "purpose": e.purpose})).collect()
}
