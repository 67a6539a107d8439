//! What an admin approved for a connector, pinned when the connector is saved or
//! approved: the plugin's hash, every field's kind, every host field's effective
//! value (its default included), the declared egress, each secret's bindings, and
//! for a contract 0.2 plugin the origins it derived. A plugin file that differs from
//! the record in any of these (a new build, a moved default, a secret turned text, a
//! new binding or origin) pauses the connector until an admin approves it again:
//! nothing of the new version runs with the connector's secrets before that.

use super::store::ConnectorRow;
use anyhow::{Context, Result};
use connector_host::engine::Plugin;
use connector_host::types::{field_kind_name, FieldKind};
use std::collections::{BTreeMap, BTreeSet};

/// A connector's pinned approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Trust {
    /// SHA-256 of the plugin file approved; empty in an approval from before pinning.
    #[serde(default)]
    pub(crate) plugin_hash: String,
    /// Each field's kind (`secret`, `host`, `text`...).
    #[serde(default)]
    pub(crate) fields: BTreeMap<String, String>,
    /// Each host field's effective value: the connector's, else the plugin's default.
    #[serde(default)]
    pub(crate) hosts: BTreeMap<String, String>,
    /// Declared egress origins (patterns as declared, `{host}` placeholders included).
    pub(crate) egress: BTreeSet<String>,
    /// For each secret field, the origins it may be sent to.
    pub(crate) secrets: BTreeMap<String, BTreeSet<String>>,
    /// The origins a contract 0.2 plugin derived at `configure`.
    #[serde(default)]
    pub(crate) derived: BTreeSet<String>,
}

impl Trust {
    /// What saving or approving a connector of `plugin` with `settings` agrees to.
    pub(crate) fn pin(plugin: &Plugin, settings: &BTreeMap<String, String>, derived: &[String]) -> Trust {
        let info = &plugin.info;
        Trust {
            plugin_hash: plugin.sha256.clone(),
            fields: info.fields.iter().map(|f| (f.key.clone(), field_kind_name(&f.kind).to_owned())).collect(),
            hosts: info
                .fields
                .iter()
                .filter(|f| f.kind == FieldKind::Host)
                .filter_map(|f| Some((f.key.clone(), effective_value(f, settings)?)))
                .collect(),
            egress: info.egress.iter().map(|e| e.origin.clone()).collect(),
            secrets: info
                .fields
                .iter()
                .filter(|f| f.kind == FieldKind::Secret)
                .map(|f| (f.key.clone(), f.sent_to.iter().cloned().collect()))
                .collect(),
            derived: derived.iter().cloned().collect(),
        }
    }

    /// How `now` differs from this approval, one line each; empty when it does not.
    pub(crate) fn changes_to(&self, now: &Trust) -> Vec<String> {
        let mut changes = Vec::new();
        if self.plugin_hash.is_empty() {
            changes.push(format!(
                "the approval predates pinning plugin files: approve once to pin sha256 {}",
                short(&now.plugin_hash)
            ));
        } else if self.plugin_hash != now.plugin_hash {
            changes.push(format!(
                "the plugin file changed (sha256 {} was approved, {} is installed)",
                short(&self.plugin_hash),
                short(&now.plugin_hash)
            ));
        }
        let keys: BTreeSet<&String> = self.fields.keys().chain(now.fields.keys()).collect();
        for key in keys {
            match (self.fields.get(key), now.fields.get(key)) {
                (Some(before), Some(after)) if before != after => {
                    changes.push(format!("field `{key}` was {before}, now {after}"))
                }
                (Some(before), None) if before == "secret" || before == "host" => {
                    changes.push(format!("{before} field `{key}` was removed"))
                }
                (None, Some(after)) if after == "secret" || after == "host" => {
                    changes.push(format!("{after} field `{key}` was added"))
                }
                _ => {}
            }
        }
        let hosts: BTreeSet<&String> = self.hosts.keys().chain(now.hosts.keys()).collect();
        for key in hosts {
            match (self.hosts.get(key), now.hosts.get(key)) {
                (before, Some(after)) if before != Some(after) => changes.push(format!(
                    "host field `{key}` now means {after} (approved: {})",
                    before.map_or("unset", String::as_str)
                )),
                (Some(before), None) => changes.push(format!("host field `{key}` is unset (approved: {before})")),
                _ => {}
            }
        }
        changes.extend(now.egress.difference(&self.egress).map(|origin| format!("egress to {origin} was added")));
        for (key, to) in &now.secrets {
            let before = self.secrets.get(key).cloned().unwrap_or_default();
            for origin in to.difference(&before) {
                changes.push(format!("secret `{key}` may now be sent to {origin}"));
            }
        }
        changes
            .extend(now.derived.difference(&self.derived).map(|origin| format!("derived origin {origin} was added")));
        changes
    }
}

/// A field's value as a run uses it: the connector's, else the plugin's default.
pub(crate) fn effective_value(
    field: &connector_host::types::ConfigField,
    settings: &BTreeMap<String, String>,
) -> Option<String> {
    settings.get(&field.key).or(field.default_value.as_ref()).map(|v| v.trim().to_owned())
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The approval a connector keeps.
pub(crate) fn approved(connector: &ConnectorRow) -> Result<Trust> {
    serde_json::from_str(&connector.trust).context("a connector's approval record is damaged")
}

/// How the installed `plugin`, with the connector's stored settings, differs from
/// what an admin approved. The derived origins of a 0.2 plugin are checked when it
/// derives them (`SessionOptions::approved_derived`), so the approved ones count here.
pub(crate) fn changes(connector: &ConnectorRow, plugin: &Plugin) -> Result<Vec<String>> {
    let approved = approved(connector)?;
    let settings: BTreeMap<String, String> =
        serde_json::from_str(&connector.settings).context("a connector's settings are damaged")?;
    let derived: Vec<String> = approved.derived.iter().cloned().collect();
    Ok(approved.changes_to(&Trust::pin(plugin, &settings, &derived)))
}

/// Why a connector must wait for an admin, naming each change; `None` when the
/// installed plugin is what was approved.
pub(crate) fn pause_reason(connector: &ConnectorRow, plugin: &Plugin) -> Result<Option<String>> {
    let changes = changes(connector, plugin)?;
    if changes.is_empty() {
        return Ok(None);
    }
    Ok(Some(reason(connector, plugin, &changes)))
}

/// The text of a pause: what changed, and what to do.
pub(crate) fn reason(connector: &ConnectorRow, plugin: &Plugin, changes: &[String]) -> String {
    format!(
        "paused: plugin {} {} differs from what an admin approved ({}): {}; an admin must approve it (POST /api/connectors/{}/approve)",
        plugin.info.id,
        plugin.info.version,
        connector.trusted_version,
        changes.join("; "),
        connector.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust() -> Trust {
        Trust {
            plugin_hash: "a".repeat(64),
            fields: [("host".to_string(), "host".to_string()), ("token".to_string(), "secret".to_string())].into(),
            hosts: [("host".to_string(), "api.example.com".to_string())].into(),
            egress: ["{host}".to_string()].into(),
            secrets: [("token".to_string(), ["{host}".to_string()].into())].into(),
            derived: BTreeSet::new(),
        }
    }

    #[test]
    fn the_same_plugin_and_settings_change_nothing() {
        assert!(trust().changes_to(&trust()).is_empty());
    }

    #[test]
    fn each_way_an_update_could_move_a_secret_is_named() {
        let approved = trust();
        let mut moved = trust();
        moved.hosts.insert("host".into(), "evil.example".into());
        assert_eq!(
            approved.changes_to(&moved),
            ["host field `host` now means evil.example (approved: api.example.com)"]
        );

        let mut text = trust();
        text.fields.insert("token".into(), "text".into());
        text.secrets.clear();
        assert_eq!(approved.changes_to(&text), ["field `token` was secret, now text"]);

        let mut rebuilt = trust();
        rebuilt.plugin_hash = "b".repeat(64);
        assert_eq!(
            approved.changes_to(&rebuilt),
            ["the plugin file changed (sha256 aaaaaaaaaaaa was approved, bbbbbbbbbbbb is installed)"]
        );

        let mut wider = trust();
        wider.egress.insert("https://collector.example".into());
        wider.secrets.get_mut("token").unwrap().insert("https://collector.example".into());
        wider.derived.insert("https://derived.example".into());
        assert_eq!(
            approved.changes_to(&wider),
            [
                "egress to https://collector.example was added",
                "secret `token` may now be sent to https://collector.example",
                "derived origin https://derived.example was added"
            ]
        );

        let legacy = Trust { plugin_hash: String::new(), ..trust() };
        assert!(legacy.changes_to(&trust())[0].contains("predates pinning"));
    }

    #[test]
    fn narrowing_is_no_change() {
        let mut narrower = trust();
        narrower.egress.clear();
        narrower.secrets.get_mut("token").unwrap().clear();
        assert!(trust().changes_to(&narrower).is_empty());
    }
}
