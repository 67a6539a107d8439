//! The plugins a service offers: every component in the plugins directory, loaded
//! (compiled and checked) at start, recorded in the database with its content hash;
//! each connector whose plugin differs from its approval is paused (`trust`).

use super::store::{Db, PluginRow};
use anyhow::{bail, Context, Result};
use connector_host::engine::{Plugin, PluginHost};
use connector_host::types::{egress_json, fields_json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded plugin and its identity in the database.
pub(crate) struct Loaded {
    /// The compiled plugin.
    pub(crate) plugin: Arc<Plugin>,
    /// Its row: id, version, contract, fields, egress, content hash.
    pub(crate) row: PluginRow,
}

/// The plugins of one directory.
pub(crate) struct Catalogue {
    /// Where they were found.
    pub(crate) dir: PathBuf,
    plugins: BTreeMap<String, Loaded>,
}

/// Where plugins are looked for when `--plugins` is not given: `<state-dir>/plugins`
/// when it exists, else the plugins this repository builds (beside the executable's
/// target directory, as `cargo build-plugins` leaves them), only `plugin_*.wasm`.
pub(crate) fn default_dir(state_dir: &Path) -> (PathBuf, bool) {
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
    pub(crate) fn load(host: &PluginHost, dir: &Path, built_only: bool) -> Result<Catalogue> {
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
    pub(crate) fn get(&self, id: &str) -> Option<&Loaded> {
        self.plugins.get(id)
    }

    /// Records every plugin in the database, and pauses each connector whose plugin
    /// differs from what an admin approved (see `trust`).
    /// Values sealed before they were bound to their connector and field are sealed
    /// again, bound.
    pub(crate) async fn record(&self, db: &Db, vault: &super::vault::Vault) -> Result<()> {
        for loaded in self.plugins.values() {
            db.upsert_plugin(&loaded.row).await?;
        }
        for mut connector in db.connectors().await? {
            let Some(loaded) = self.get(&connector.plugin_id) else { continue };
            if let Some(sealed) = super::connectors::reseal_legacy(&connector, &loaded.plugin.info, vault)? {
                connector.secrets = sealed;
                db.update_connector(&connector).await?;
                tracing::info!(connector = %connector.id, "secrets sealed again, bound to their connector and field");
            }
            // The reason names what differs from the approval now (a paused connector's
            // plugin may have changed again since).
            if let Some(reason) = super::trust::pause_reason(&connector, &loaded.plugin)? {
                if connector.paused_reason.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(connector = %connector.id, "{reason}");
                    db.pause_connector(&connector.id, &reason).await?;
                }
            }
        }
        Ok(())
    }
}

fn load_one(host: &PluginHost, path: &Path) -> Result<Loaded> {
    let plugin = host.load(path)?;
    let hash = plugin.sha256.clone();
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

/// The section of a plugin that names none (before contract 0.4) or is gone.
pub(crate) const OTHER_SECTION: &str = "Other";
