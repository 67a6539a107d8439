//! Connectors as the API shows them and as runs need them: settings checked against
//! the plugin (its own `configure` included), secrets sealed apart from the rest and
//! never shown, the schedule and its next due times.

use super::catalogue::Loaded;
use super::schedule::Schedule;
use super::store::{now_ms, ConnectorRow, PluginRow, RunRow};
use super::trust::Trust;
use super::vault::Vault;
use anyhow::{Context, Result};
use connector_host::config::{ConnectorConfig, FieldErrors, FieldProblem};
use connector_host::cvm::CvmConfig;
use connector_host::engine::{PluginHost, SessionOptions};
use connector_host::types::FieldKind;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The key a CVM API key is sealed under, beside the plugin's secrets.
const CVM_API_KEY: &str = "cvm.api_key";

/// A connector's values, in the clear, as a run or a check needs them.
#[derive(Clone, Default)]
pub(crate) struct Values {
    /// Every plugin setting, secrets included.
    pub(crate) settings: BTreeMap<String, String>,
    /// The settings kept sealed: the fields that were secrets when they were saved.
    /// They stay sealed, and reach a plugin only as secrets, whatever a later
    /// version of the plugin declares.
    pub(crate) sealed: BTreeSet<String>,
    /// The `[cvm]` part, API key included; `None` when the connector does not upload.
    pub(crate) cvm: Option<BTreeMap<String, String>>,
}

/// What a sealed value is bound to: its connector and its field.
fn seal_context(connector: &str, key: &str) -> String {
    format!("{connector}/{key}")
}

impl Values {
    /// Opens a stored connector's values.
    pub(crate) fn open(row: &ConnectorRow, vault: &Vault) -> Result<Values> {
        let mut settings: BTreeMap<String, String> =
            serde_json::from_str(&row.settings).context("a connector's settings are damaged")?;
        let mut secrets = open_secrets(row, vault)?;
        let cvm = match &row.cvm {
            Some(text) => {
                let mut cvm: BTreeMap<String, String> =
                    serde_json::from_str(text).context("a connector's CVM settings are damaged")?;
                if let Some(key) = secrets.remove(CVM_API_KEY) {
                    cvm.insert("api_key".into(), key);
                }
                Some(cvm)
            }
            None => None,
        };
        let sealed = secrets.keys().cloned().collect();
        settings.append(&mut secrets);
        Ok(Values { settings, sealed, cvm })
    }

    /// The library's configuration of these values: sealed values are secrets, so
    /// a plugin that now declares such a field otherwise is refused its value.
    pub(crate) fn config(&self) -> ConnectorConfig {
        let mut config = ConnectorConfig::from_pairs(self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .with_stored_secrets(self.sealed.iter().cloned());
        config.cvm = self.cvm.clone();
        config
    }

    /// Splits the values for storage: the plain settings, the sealed secrets (each
    /// bound to this connector and its field), the plain CVM part.
    fn seal(
        &self,
        connector: &str,
        info: &connector_host::types::PluginInfo,
        vault: &Vault,
    ) -> Result<(String, String, Option<String>)> {
        let is_secret = |key: &str| {
            self.sealed.contains(key) || info.fields.iter().any(|f| f.key == key && f.kind == FieldKind::Secret)
        };
        let (secrets, plain): (BTreeMap<_, _>, BTreeMap<_, _>) =
            self.settings.iter().map(|(k, v)| (k.clone(), v.clone())).partition(|(k, _)| is_secret(k));
        let mut secrets = secrets;
        let cvm = self.cvm.as_ref().map(|cvm| {
            let mut cvm = cvm.clone();
            if let Some(key) = cvm.remove("api_key") {
                secrets.insert(CVM_API_KEY.into(), key);
            }
            serde_json::to_string(&cvm).expect("text map")
        });
        let sealed: BTreeMap<String, String> = secrets
            .iter()
            .map(|(key, value)| Ok((key.clone(), vault.seal_for(value, &seal_context(connector, key))?)))
            .collect::<Result<_>>()?;
        let sealed = json!({ "sealed": sealed }).to_string();
        Ok((serde_json::to_string(&plain)?, sealed, cvm))
    }
}

/// A connector's sealed values: `{"sealed": {key: value sealed for the connector and
/// key}}`; or, as stored before values were bound, one sealed JSON map.
fn open_secrets(row: &ConnectorRow, vault: &Vault) -> Result<BTreeMap<String, String>> {
    if let Some(sealed) = bound_values(row)? {
        return sealed
            .iter()
            .map(|(key, value)| Ok((key.clone(), vault.open_for(value, &seal_context(&row.id, key))?)))
            .collect();
    }
    serde_json::from_str(&vault.open_sealed(&row.secrets)?).context("a connector's sealed secrets are damaged")
}

/// The sealed values of a connector stored bound (`{"sealed": {...}}`), still
/// sealed; `None` for a row stored before values were bound.
fn bound_values(row: &ConnectorRow) -> Result<Option<BTreeMap<String, String>>> {
    if !row.secrets.starts_with('{') {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct Stored {
        sealed: BTreeMap<String, String>,
    }
    let stored: Stored = serde_json::from_str(&row.secrets).context("a connector's sealed secrets are damaged")?;
    Ok(Some(stored.sealed))
}

/// The keys of a connector's sealed values: read in the clear where the row names
/// them, so listing connectors opens no secret.
fn sealed_keys(row: &ConnectorRow, vault: &Vault) -> Vec<String> {
    match bound_values(row) {
        Ok(Some(sealed)) => sealed.into_keys().collect(),
        _ => open_secrets(row, vault).map(|m| m.into_keys().collect()).unwrap_or_default(),
    }
}

/// Seals again, bound to their connector and field, the values of a connector
/// stored before values were bound; `None` when it needs nothing.
pub(crate) fn reseal_legacy(
    row: &ConnectorRow,
    info: &connector_host::types::PluginInfo,
    vault: &Vault,
) -> Result<Option<String>> {
    if row.secrets.starts_with('{') {
        return Ok(None);
    }
    let values = Values::open(row, vault)?;
    Ok(Some(values.seal(&row.id, info, vault)?.1))
}

/// An input problem: 422 with every field's problem.
#[derive(Debug)]
pub(crate) struct Invalid(pub Vec<FieldProblem>);

impl Invalid {
    fn one(field: &str, message: impl Into<String>) -> Invalid {
        Invalid(vec![FieldProblem { field: field.into(), message: message.into() }])
    }
}

/// A JSON value as a setting's text: strings, numbers and booleans; `None` for null.
fn text_of(field: &str, value: &Value) -> Result<Option<String>, Invalid> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(Invalid::one(field, format!("`{field}` must be a string, number or boolean"))),
    }
}

/// `{"set": true}`, as a secret reads: sent back unchanged, it keeps the stored value.
fn is_set_marker(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("set"))
}

/// Applies `changes` (a JSON object) to `values`: a value replaces, null removes, a
/// secret's `{"set": ...}` keeps what is stored. The keys given a new value, or
/// removed, are added to `replaced`.
fn merge(
    values: &mut BTreeMap<String, String>,
    changes: &Map<String, Value>,
    prefix: &str,
    replaced: &mut BTreeSet<String>,
) -> Result<(), Invalid> {
    let mut problems = Vec::new();
    for (key, value) in changes {
        if is_set_marker(value) {
            continue;
        }
        replaced.insert(format!("{prefix}{key}"));
        match text_of(&format!("{prefix}{key}"), value) {
            Ok(Some(text)) => {
                values.insert(key.clone(), text);
            }
            Ok(None) => {
                values.remove(key);
            }
            Err(Invalid(mut p)) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid(problems))
    }
}

/// What a create or change asks for, checked.
pub(crate) struct Draft {
    pub(crate) name: String,
    pub(crate) values: Values,
    pub(crate) schedule: Option<String>,
    pub(crate) enabled: bool,
    /// Days between full baselines (`None`: weekly).
    pub(crate) baseline_days: Option<i64>,
}

/// The keys a connector's create or change may carry (besides `plugin` on create).
const CHANGE_KEYS: [&str; 6] = ["name", "settings", "schedule", "enabled", "cvm", "baseline_days"];

impl Draft {
    /// A new connector from `{plugin, name, settings, schedule?, enabled?, cvm?, baseline_days?}`.
    pub(crate) fn create(body: &Map<String, Value>) -> Result<(String, Draft), Invalid> {
        let keys: Vec<&str> = std::iter::once("plugin").chain(CHANGE_KEYS).collect();
        known_keys(body, &keys)?;
        let plugin = body.get("plugin").and_then(Value::as_str).unwrap_or_default().to_owned();
        if plugin.is_empty() {
            return Err(Invalid::one("plugin", "`plugin` is required: a plugin id from GET /api/plugins"));
        }
        let empty = Draft {
            name: String::new(),
            values: Values::default(),
            schedule: None,
            enabled: true,
            baseline_days: None,
        };
        let mut changes = body.clone();
        changes.remove("plugin");
        if !changes.contains_key("name") {
            changes.insert("name".into(), Value::String(String::new()));
        }
        Ok((plugin, empty.change(&changes)?))
    }

    /// A connector's draft as stored.
    pub(crate) fn of(row: &ConnectorRow, vault: &Vault) -> Result<Draft> {
        Ok(Draft {
            name: row.name.clone(),
            values: Values::open(row, vault)?,
            schedule: row.schedule.clone(),
            enabled: row.enabled == 1,
            baseline_days: row.baseline_days,
        })
    }

    /// Applies a change `{name?, settings?, schedule?, enabled?, cvm?, baseline_days?}`.
    pub(crate) fn change(mut self, body: &Map<String, Value>) -> Result<Draft, Invalid> {
        known_keys(body, &CHANGE_KEYS)?;
        let mut problems = Vec::new();
        match body.get("baseline_days") {
            None => {}
            Some(Value::Null) => self.baseline_days = None,
            Some(days) => match days.as_i64().filter(|d| (1..=365).contains(d)) {
                Some(days) => self.baseline_days = Some(days),
                None => problems.push(FieldProblem {
                    field: "baseline_days".into(),
                    message: "`baseline_days` must be a whole number of days from 1 to 365, or null (weekly)".into(),
                }),
            },
        }
        if let Some(name) = body.get("name") {
            match name.as_str().map(str::trim) {
                Some(name) if !name.is_empty() && name.chars().count() <= 200 => self.name = name.to_owned(),
                _ => problems.push(FieldProblem {
                    field: "name".into(),
                    message: "`name` is required: up to 200 characters that name the connector".into(),
                }),
            }
        }
        match body.get("settings") {
            None => {}
            Some(Value::Object(changes)) => {
                let mut replaced = BTreeSet::new();
                if let Err(Invalid(mut p)) = merge(&mut self.values.settings, changes, "", &mut replaced) {
                    problems.append(&mut p);
                }
                // A value entered again is what the admin gives now, for the field
                // as the plugin now declares it.
                self.values.sealed.retain(|key| !replaced.contains(key));
            }
            Some(_) => problems.push(FieldProblem {
                field: "settings".into(),
                message: "`settings` must be an object of field keys and values".into(),
            }),
        }
        match body.get("cvm") {
            None => {}
            Some(Value::Null) => self.values.cvm = None,
            Some(Value::Object(changes)) => {
                let cvm = self.values.cvm.get_or_insert_with(BTreeMap::new);
                if let Err(Invalid(mut p)) = merge(cvm, changes, "cvm.", &mut BTreeSet::new()) {
                    problems.append(&mut p);
                }
            }
            Some(_) => problems.push(FieldProblem {
                field: "cvm".into(),
                message: "`cvm` must be an object (api_host, api_key, connector_id, ...) or null".into(),
            }),
        }
        match body.get("schedule") {
            None => {}
            Some(Value::Null) => self.schedule = None,
            Some(Value::String(s)) if s.trim().is_empty() => self.schedule = None,
            Some(Value::String(s)) => match s.parse::<Schedule>() {
                Ok(_) => self.schedule = Some(s.trim().to_owned()),
                Err(e) => problems.push(FieldProblem { field: "schedule".into(), message: format!("{e:#}") }),
            },
            Some(_) => problems
                .push(FieldProblem { field: "schedule".into(), message: "`schedule` must be a string or null".into() }),
        }
        match body.get("enabled") {
            None => {}
            Some(Value::Bool(b)) => self.enabled = *b,
            Some(_) => problems
                .push(FieldProblem { field: "enabled".into(), message: "`enabled` must be true or false".into() }),
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(Invalid(problems))
        }
    }

    /// Checks the settings against the plugin: its fields, then its own `configure`,
    /// and the CVM part; the origins a contract 0.2 plugin derives, for the approval
    /// to pin. Runs wasm: call it off the async runtime.
    pub(crate) fn check(
        &self,
        host: &PluginHost,
        loaded: &Loaded,
        allow_insecure_loopback: bool,
    ) -> Result<Vec<String>, Invalid> {
        let mut problems = Vec::new();
        if let Some(cvm) = &self.values.cvm {
            if let Err(e) = CvmConfig::from_values(cvm, allow_insecure_loopback) {
                problems.push(FieldProblem { field: "cvm".into(), message: format!("{e:#}") });
            }
        }
        let config = self.values.config();
        let configured = config.resolve(&loaded.plugin.info).and_then(|resolved| {
            let options = SessionOptions { allow_insecure_loopback, ..Default::default() };
            let mut session = loaded.plugin.open(host, &resolved, options)?;
            session.configure(&resolved)?;
            Ok(session.derived_origins().to_vec())
        });
        let derived = configured.as_ref().map(Vec::clone).unwrap_or_default();
        if let Err(e) = configured {
            match e.downcast_ref::<FieldErrors>() {
                Some(FieldErrors(fields)) => problems.extend(fields.iter().cloned()),
                None => problems.push(FieldProblem { field: "settings".into(), message: format!("{e:#}") }),
            }
        }
        if problems.is_empty() {
            Ok(derived)
        } else {
            Err(Invalid(problems))
        }
    }

    /// The row to store: secrets sealed, the schedule's next due time, the approval
    /// an admin gives by saving (pinned: see `trust`), with the origins a 0.2
    /// plugin derived.
    pub(crate) fn into_row(
        self,
        id: &str,
        loaded: &Loaded,
        vault: &Vault,
        created_at: i64,
        derived: &[String],
    ) -> Result<ConnectorRow> {
        let (settings, secrets, cvm) = self.values.seal(id, &loaded.plugin.info, vault)?;
        // Pinned from the plain settings only: the record is stored in the clear.
        let plain: BTreeMap<String, String> = serde_json::from_str(&settings)?;
        let trust = Trust::pin(&loaded.plugin, &plain, derived);
        let next_due_at = next_due(self.schedule.as_deref(), now_ms());
        Ok(ConnectorRow {
            id: id.to_owned(),
            plugin_id: loaded.row.id.clone(),
            name: self.name,
            settings,
            secrets,
            cvm,
            schedule: self.schedule,
            next_due_at,
            enabled: i64::from(self.enabled),
            trust: serde_json::to_string(&trust)?,
            trusted_version: loaded.row.version.clone(),
            paused_reason: None,
            created_at,
            updated_at: now_ms(),
            baseline_days: self.baseline_days,
        })
    }
}

/// A change that moves where a stored secret goes must bring the secret again: an
/// API token is not enough to send every stored secret to a host of one's choosing.
/// A secret is moved when a host field its `sent-to` names (`{key}`) now means
/// another origin (its default counted), and the CVM API key when `api_host` changes.
pub(crate) fn moved_secrets(
    before: &Values,
    after: &Values,
    body: &Map<String, Value>,
    info: &connector_host::types::PluginInfo,
) -> Result<(), Invalid> {
    let given = |part: &str, key: &str| {
        body.get(part).and_then(Value::as_object).and_then(|m| m.get(key)).is_some_and(|v| !is_set_marker(v))
    };
    let effective = |values: &Values, key: &str| {
        let field = info.fields.iter().find(|f| f.key == key);
        field.and_then(|f| super::trust::effective_value(f, &values.settings)).unwrap_or_default()
    };
    let mut problems = Vec::new();
    for field in info.fields.iter().filter(|f| f.kind == FieldKind::Secret) {
        if !before.settings.contains_key(&field.key) || given("settings", &field.key) {
            continue;
        }
        let hosts = field.sent_to.iter().filter_map(|to| to.trim().strip_prefix('{')?.strip_suffix('}'));
        for host in hosts {
            let (was, now) = (effective(before, host), effective(after, host));
            if was != now {
                problems.push(FieldProblem {
                    field: field.key.clone(),
                    message: format!(
                        "`{}` is sent to `{host}`, which this change moves from `{was}` to `{now}`: enter `{}` again to send it there",
                        field.key, field.key
                    ),
                });
                break;
            }
        }
    }
    let api_host = |values: &Values| values.cvm.as_ref().and_then(|c| c.get("api_host")).cloned();
    let key_stored = before.cvm.as_ref().is_some_and(|c| c.contains_key("api_key"));
    if key_stored && api_host(before) != api_host(after) && !given("cvm", "api_key") {
        problems.push(FieldProblem {
            field: "cvm.api_key".into(),
            message: format!(
                "the CVM API key is sent to `api_host`, which this change moves from `{}` to `{}`: enter `api_key` again to send it there",
                api_host(before).unwrap_or_default(),
                api_host(after).unwrap_or_default()
            ),
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid(problems))
    }
}

fn known_keys(body: &Map<String, Value>, known: &[&str]) -> Result<(), Invalid> {
    let unknown: Vec<FieldProblem> = body
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| FieldProblem {
            field: k.clone(),
            message: format!("`{k}` is not a connector property (properties: {})", known.join(", ")),
        })
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Invalid(unknown))
    }
}

/// The next due time after `now` (ms), for a schedule already checked.
pub(crate) fn next_due(schedule: Option<&str>, now: i64) -> Option<i64> {
    let schedule: Schedule = schedule?.parse().ok()?;
    let now = chrono::DateTime::from_timestamp_millis(now)?;
    schedule.next_after(now).map(|t| t.timestamp_millis())
}

/// A time for JSON: RFC 3339 in UTC.
pub(crate) fn time(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// A connector as the API shows it: every value but secrets, which read
/// `{"set": true}` or `{"set": false}`.
pub(crate) fn view(row: &ConnectorRow, plugin: Option<&PluginRow>, last_run: Option<&RunRow>, vault: &Vault) -> Value {
    let mut settings: Map<String, Value> = serde_json::from_str(&row.settings).unwrap_or_default();
    let fields: Vec<Value> = plugin.and_then(|p| serde_json::from_str(&p.fields).ok()).unwrap_or_default();
    // Which secrets are set is read from the sealed map's keys; no value leaves it.
    let set = sealed_keys(row, vault);
    for field in &fields {
        if field["kind"] == "secret" {
            let key = field["key"].as_str().unwrap_or_default();
            settings.insert(key.into(), json!({"set": set.iter().any(|k| k == key)}));
        }
    }
    let cvm = row.cvm.as_deref().and_then(|c| serde_json::from_str::<Map<String, Value>>(c).ok()).map(|mut cvm| {
        cvm.insert("api_key".into(), json!({"set": set.iter().any(|k| k == CVM_API_KEY)}));
        Value::Object(cvm)
    });
    let upcoming: Vec<Value> = row
        .schedule
        .as_deref()
        .and_then(|s| s.parse::<Schedule>().ok())
        .map(|s| s.upcoming(chrono::Utc::now(), 3).into_iter().map(|t| time(Some(t.timestamp_millis()))).collect())
        .unwrap_or_default();
    json!({
        "id": row.id,
        "plugin": row.plugin_id,
        "plugin_version": plugin.map(|p| p.version.clone()),
        "approved_version": row.trusted_version,
        "name": row.name,
        "settings": settings,
        "cvm": cvm,
        "schedule": row.schedule,
        "baseline_days": row.baseline_days,
        "next_due": if row.enabled == 1 && row.paused_reason.is_none() { time(row.next_due_at) } else { Value::Null },
        "next_due_times": upcoming,
        "enabled": row.enabled == 1,
        "paused_reason": row.paused_reason,
        "egress": plugin.and_then(|p| serde_json::from_str::<Value>(&p.egress).ok()),
        "last_run": last_run.map(|r| json!({"id": r.id, "status": r.status, "queued_at": time(Some(r.queued_at)),
            "finished_at": time(r.finished_at), "assets": r.assets, "open_vulnerabilities": r.open_vulnerabilities})),
        "created_at": time(Some(row.created_at)),
        "updated_at": time(Some(row.updated_at)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_host::types::{ConfigField, PluginInfo};

    fn info() -> PluginInfo {
        PluginInfo {
            id: "p".into(),
            name: "P".into(),
            version: "1".into(),
            description: String::new(),
            scanner_type: "P".into(),
            fields: vec![ConfigField {
                key: "token".into(),
                label: "Token".into(),
                help: String::new(),
                kind: FieldKind::Secret,
                required: true,
                default_value: None,
                sent_to: vec![],
                choices: Vec::new(),
            }],
            egress: vec![],
            independent_pages: false,
            section: "Test".into(),
            counters: Vec::new(),
            incremental: false,
        }
    }

    fn row(id: &str, secrets: String) -> ConnectorRow {
        ConnectorRow {
            id: id.into(),
            plugin_id: "p".into(),
            name: "n".into(),
            settings: "{}".into(),
            secrets,
            cvm: None,
            schedule: None,
            next_due_at: None,
            enabled: 1,
            trust: "{}".into(),
            trusted_version: "1".into(),
            paused_reason: None,
            created_at: 0,
            updated_at: 0,
            baseline_days: None,
        }
    }

    #[test]
    fn values_sealed_before_binding_are_sealed_again_bound_to_their_connector_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(super::super::vault::KeySource::File {
            path: dir.path().join(super::super::vault::KEY_FILE),
            create: true,
        })
        .unwrap();
        let legacy = row("c_1", vault.seal(r#"{"token":"hunter2"}"#).unwrap());
        assert_eq!(Values::open(&legacy, &vault).unwrap().settings["token"], "hunter2", "old rows still open");
        let bound = reseal_legacy(&legacy, &info(), &vault).unwrap().expect("sealed again");
        assert!(bound.starts_with('{') && !bound.contains("hunter2"), "{bound}");
        assert_eq!(reseal_legacy(&row("c_1", bound.clone()), &info(), &vault).unwrap(), None, "only once");
        let values = Values::open(&row("c_1", bound.clone()), &vault).unwrap();
        assert_eq!(values.settings["token"], "hunter2");
        assert!(values.sealed.contains("token"));
        // The same sealed text in another connector's row does not open.
        let err = Values::open(&row("c_2", bound), &vault).err().unwrap().to_string();
        assert!(err.contains("sealed for another connector or field"), "{err}");
    }
}
