//! The plugins a service offers: every component in the plugins directory, loaded
//! (compiled and checked) at start, recorded in the database with its content hash,
//! and what each connector's plugin may reach compared with what an admin approved.

use super::store::{ConnectorRow, Db, PluginRow};
use crate::engine::{Plugin, PluginHost};
use crate::types::{egress_json, fields_json, FieldKind, PluginInfo};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded plugin and its identity in the database.
pub struct Loaded {
    /// The compiled plugin.
    pub plugin: Arc<Plugin>,
    /// Its row: id, version, contract, fields, egress, content hash.
    pub row: PluginRow,
}

/// The plugins of one directory.
pub struct Catalogue {
    /// Where they were found.
    pub dir: PathBuf,
    plugins: BTreeMap<String, Loaded>,
}

/// Where plugins are looked for when `--plugins` is not given: `<state-dir>/plugins`
/// when it exists, else the plugins this repository builds (beside the executable's
/// target directory, as `cargo build-plugins` leaves them), only `plugin_*.wasm`.
pub fn default_dir(state_dir: &Path) -> (PathBuf, bool) {
    let own = state_dir.join("plugins");
    if own.is_dir() {
        return (own, false);
    }
    let built = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(|p| p.parent()).map(|t| t.join("wasm32-wasip2/release")))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("target/wasm32-wasip2/release"));
    (built, true)
}

impl Catalogue {
    /// Loads every `.wasm` component of `dir` (with `built_only`, only `plugin_*.wasm`).
    /// A file that is not a usable plugin is logged and left out.
    pub fn load(host: &PluginHost, dir: &Path, built_only: bool) -> Result<Catalogue> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read the plugins directory {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .filter(|p| !built_only || p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("plugin_")))
            .collect();
        paths.sort();
        let mut plugins = BTreeMap::new();
        for path in paths {
            match load_one(host, &path) {
                Ok(loaded) => {
                    if let Some(earlier) = plugins.get(&loaded.row.id) {
                        let earlier: &Loaded = earlier;
                        bail!(
                            "two files in {} are plugin `{}`: {} and {}; keep one",
                            dir.display(),
                            loaded.row.id,
                            earlier.row.file_name,
                            loaded.row.file_name
                        );
                    }
                    plugins.insert(loaded.row.id.clone(), loaded);
                }
                Err(e) => tracing::warn!(path = %path.display(), "not offered as a plugin: {e:#}"),
            }
        }
        if plugins.is_empty() {
            tracing::warn!(dir = %dir.display(), "no plugins found; build them with `cargo build-plugins` or pass --plugins DIR");
        }
        Ok(Catalogue { dir: dir.to_owned(), plugins })
    }

    /// A plugin by id.
    pub fn get(&self, id: &str) -> Option<&Loaded> {
        self.plugins.get(id)
    }

    /// Records every plugin in the database, and pauses each connector whose plugin
    /// now reaches further than an admin approved.
    pub async fn record(&self, db: &Db) -> Result<()> {
        for loaded in self.plugins.values() {
            db.upsert_plugin(&loaded.row).await?;
        }
        for connector in db.connectors().await? {
            let Some(loaded) = self.get(&connector.plugin_id) else { continue };
            if connector.paused_reason.is_none() {
                if let Some(reason) = widening(&connector, &loaded.plugin.info)? {
                    tracing::warn!(connector = %connector.id, "{reason}");
                    db.pause_connector(&connector.id, &reason).await?;
                }
            }
        }
        Ok(())
    }
}

fn load_one(host: &PluginHost, path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path)?;
    let hash: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let plugin = host.load(path)?;
    let info = &plugin.info;
    let row = PluginRow {
        id: info.id.clone(),
        name: info.name.clone(),
        version: info.version.clone(),
        contract: plugin.contract.clone(),
        description: info.description.clone(),
        scanner_type: info.scanner_type.clone(),
        fields: fields_json(info).to_string(),
        egress: egress_json(info).to_string(),
        content_hash: hash,
        file_name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    Ok(Loaded { plugin: Arc::new(plugin), row })
}

/// The section of the catalogue a plugin is listed under, as CVM's own catalogue
/// groups connectors. The contract does not carry it (a candidate for its next
/// version), so the service knows the plugins of this repository; others are listed
/// under "Other".
pub fn section_of(plugin_id: &str) -> &'static str {
    match plugin_id {
        "defender-tvm" => "Vulnerability Management",
        "github-dependabot" => "Application Security",
        _ => "Other",
    }
}

/// What a plugin may reach, as an admin approves it: its declared origins, and where
/// each secret field may be sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trust {
    /// Declared egress origins (patterns as declared, `{host}` placeholders included).
    pub egress: BTreeSet<String>,
    /// For each secret field, the origins it may be sent to.
    pub secrets: BTreeMap<String, BTreeSet<String>>,
}

impl Trust {
    /// What the plugin declares.
    pub fn of(info: &PluginInfo) -> Trust {
        Trust {
            egress: info.egress.iter().map(|e| e.origin.clone()).collect(),
            secrets: info
                .fields
                .iter()
                .filter(|f| f.kind == FieldKind::Secret)
                .map(|f| (f.key.clone(), f.sent_to.iter().cloned().collect()))
                .collect(),
        }
    }

    /// What `now` adds to `self`, one line each; empty when it adds nothing.
    pub fn added_by(&self, now: &Trust) -> Vec<String> {
        let mut added: Vec<String> =
            now.egress.difference(&self.egress).map(|origin| format!("egress to {origin}")).collect();
        for (key, to) in &now.secrets {
            let before = self.secrets.get(key).cloned().unwrap_or_default();
            for origin in to.difference(&before) {
                added.push(format!("secret `{key}` sent to {origin}"));
            }
        }
        added
    }
}

/// Why a connector must wait for an admin: its plugin now declares more than the
/// admin approved; `None` when it does not.
pub fn widening(connector: &ConnectorRow, info: &PluginInfo) -> Result<Option<String>> {
    let approved: Trust = serde_json::from_str(&connector.trust).context("a connector's approved egress is damaged")?;
    let added = approved.added_by(&Trust::of(info));
    if added.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "paused: plugin {} {} (approved: {}) asks for more than an admin approved: {}; an admin must approve it (POST /api/connectors/{}/approve)",
        info.id,
        info.version,
        connector.trusted_version,
        added.join(", "),
        connector.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connector_waits_when_its_plugin_reaches_further_than_approved() {
        use crate::types::{ConfigField, Egress};
        let info = |egress: &[&str], version: &str| PluginInfo {
            id: "p".into(),
            name: "P".into(),
            version: version.into(),
            description: String::new(),
            scanner_type: "P".into(),
            fields: vec![ConfigField {
                key: "token".into(),
                label: "Token".into(),
                help: String::new(),
                kind: FieldKind::Secret,
                required: true,
                default_value: None,
                sent_to: vec!["{host}".into()],
            }],
            egress: egress.iter().map(|o| Egress { origin: o.to_string(), purpose: "why".into() }).collect(),
            independent_pages: false,
        };
        let approved = info(&["{host}"], "1.0");
        let row = ConnectorRow {
            id: "c_1".into(),
            plugin_id: "p".into(),
            name: "n".into(),
            settings: "{}".into(),
            secrets: String::new(),
            cvm: None,
            schedule: None,
            next_due_at: None,
            enabled: 1,
            trust: serde_json::to_string(&Trust::of(&approved)).unwrap(),
            trusted_version: "1.0".into(),
            paused_reason: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(widening(&row, &info(&["{host}"], "1.1")).unwrap(), None, "the same reach");
        let reason = widening(&row, &info(&["{host}", "https://elsewhere.example"], "2.0")).unwrap().unwrap();
        assert!(reason.contains("plugin p 2.0 (approved: 1.0)"), "{reason}");
        assert!(reason.contains("egress to https://elsewhere.example"), "{reason}");
        assert!(reason.contains("/api/connectors/c_1/approve"), "{reason}");
    }

    #[test]
    fn only_additions_count_as_widening() {
        let trust = |egress: &[&str], to: &[&str]| Trust {
            egress: egress.iter().map(|s| s.to_string()).collect(),
            secrets: [("token".to_string(), to.iter().map(|s| s.to_string()).collect())].into(),
        };
        let approved = trust(&["https://a", "https://b"], &["https://a"]);
        assert!(approved.added_by(&trust(&["https://a"], &["https://a"])).is_empty(), "narrowing is fine");
        assert_eq!(
            approved.added_by(&trust(&["https://a", "https://c"], &["https://a", "https://b"])),
            vec!["egress to https://c".to_string(), "secret `token` sent to https://b".to_string()]
        );
    }
}
