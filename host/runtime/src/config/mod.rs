//! The operator's configuration file, checked against the plugin's declared fields.
//!
//! ```toml
//! [connector]
//! name = "MS Defender TVM"
//! client_id = "00000000-0000-0000-0000-000000000000"
//! client_secret = { env = "DEFENDER_CLIENT_SECRET" }   # or a literal string
//! tenant_id = "00000000-0000-0000-0000-000000000000"
//! host = "api.securitycenter.microsoft.com"
//! ```
//!
//! Any value may be a literal (string, integer or boolean) or `{ env = "VAR" }`, read
//! from the environment when the file is loaded. An optional `[cvm]` table says where
//! to deliver (see `connector_host::cvm`).

#[doc(hidden)]
pub mod table;

use crate::bindings::types::{FieldKind, PluginInfo};
pub use crate::limits::SandboxLimits;
use crate::policy::{OperatorGrants, Origin};
use crate::types::field_kind_name;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// A configuration file, before it is checked against a plugin.
#[derive(Debug, Clone, Default)]
pub struct ConnectorConfig {
    /// Values by field key, as text.
    values: BTreeMap<String, String>,
    /// Keys whose values were given by reference and are secrets (the operator did
    /// not write `secret = false`).
    secret_references: Vec<String>,
    /// Keys a platform keeps sealed because they were secrets when saved: a plugin
    /// that now declares one otherwise is refused its value.
    stored_secrets: Vec<String>,
    /// The `[cvm]` table, if any, as text (see `connector_host::cvm::CvmConfig`).
    pub cvm: Option<BTreeMap<String, String>>,
    /// The `[limits]` table: the sandbox's limits for this connector's plugin.
    pub(crate) limits: SandboxLimits,
    /// The `[network]` table: the operator's gate on the plugin's network access.
    pub network: OperatorGrants,
}

/// A TOML value as text: a literal, or a reference read through `env`:
/// `{ env = "VAR" }` or `{ file = "/path" }` (the file's text, trailing line break
/// dropped), either with `secret = false` to say the value is not a secret.
pub(crate) fn value_text(key: &str, value: &toml::Value, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    Ok(read_value(key, value, env)?.0)
}

/// How a value was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Given {
    Literal,
    /// By reference (environment, file): a secret unless the operator says not.
    Reference {
        secret: bool,
    },
}

/// Any value of a configuration file, the one value type of every table: a literal
/// (string, integer or boolean, kept as text), or a reference read when the file
/// loads, `{ env = "VARIABLE" }` or `{ file = "/path" }`, with `secret = false` when
/// the value is not a secret.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ConfigValue {
    /// The value as written.
    Literal(String),
    /// An environment variable's value.
    Env {
        /// The variable.
        var: String,
        /// Whether the value is a secret (unless the operator wrote `secret = false`).
        secret: bool,
    },
    /// A file's text, without its trailing line break.
    File {
        /// The file.
        path: String,
        /// Whether the value is a secret (unless the operator wrote `secret = false`).
        secret: bool,
    },
}

impl<'de> serde::Deserialize<'de> for ConfigValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Value;
        impl<'de> serde::de::Visitor<'de> for Value {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, integer, boolean or { env = \"VARIABLE\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Literal(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Literal(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Literal(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Literal(v.to_string()))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<ConfigValue, M::Error> {
                use serde::de::Error;
                let shape = || {
                    M::Error::custom(
                        "a table value must be `{ env = \"VARIABLE\" }` or `{ file = \"/path\" }`, optionally with `secret = false`",
                    )
                };
                let (mut var, mut path, mut secret) = (None, None, true);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "env" => var = Some(map.next_value::<String>().map_err(|_| shape())?),
                        "file" => path = Some(map.next_value::<String>().map_err(|_| shape())?),
                        "secret" => {
                            secret = map
                                .next_value::<bool>()
                                .map_err(|_| M::Error::custom("`secret` must be true or false"))?
                        }
                        _ => return Err(shape()),
                    }
                }
                match (var, path) {
                    (Some(var), None) => Ok(ConfigValue::Env { var, secret }),
                    (None, Some(path)) => Ok(ConfigValue::File { path, secret }),
                    _ => Err(shape()),
                }
            }
        }
        deserializer.deserialize_any(Value)
    }
}

impl ConfigValue {
    /// The value as text, references read; and how it was given.
    fn read(&self, key: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, Given)> {
        Ok(match self {
            ConfigValue::Literal(text) => (text.clone(), Given::Literal),
            ConfigValue::Env { var, secret } => (
                env(var).ok_or_else(|| anyhow!("`{key}`: environment variable `{var}` is not set"))?,
                Given::Reference { secret: *secret },
            ),
            ConfigValue::File { path, secret } => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("`{key}`: cannot read the file `{path}` it refers to"))?;
                let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                (text.to_owned(), Given::Reference { secret: *secret })
            }
        })
    }
}

fn read_value(key: &str, value: &toml::Value, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, Given)> {
    let value: ConfigValue = serde::Deserialize::deserialize(value.clone())
        .map_err(|e: toml::de::Error| anyhow!("`{key}`: {}", e.message()))?;
    value.read(key, env)
}

/// A table's values as text, environment references resolved (`[cvm]`, `[limits]`).
pub(crate) fn table_values(
    table: &toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    table.iter().map(|(key, value)| Ok((key.clone(), value_text(key, value, env)?))).collect()
}

impl ConnectorConfig {
    /// Reads a TOML file with a `[connector]` table and an optional `[cvm]` table.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, &|name| std::env::var(name).ok()).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses TOML text; `env` looks up environment variables.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| anyhow!("not valid TOML: {}", e.message()))?;
        Self::from_table(&doc, env)
    }

    /// Reads the tables of a configuration already parsed as TOML (a file, or the
    /// inline tables of a platform file's instance).
    pub fn from_table(doc: &toml::Table, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        for key in doc.keys() {
            if !["connector", "cvm", "limits", "network"].contains(&key.as_str()) {
                bail!("unknown table or key `{key}`; the connector's settings go in a `[connector]` table (others: [cvm], [limits], [network])");
            }
        }
        let table = match doc.get("connector") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => bail!("`connector` must be a table: write `[connector]` on its own line"),
            None => bail!("no `[connector]` table"),
        };
        let mut values = BTreeMap::new();
        let mut secret_references = Vec::new();
        for (key, value) in table {
            let (text, given) = read_value(key, value, env)?;
            if given == (Given::Reference { secret: true }) {
                secret_references.push(key.clone());
            }
            values.insert(key.clone(), text);
        }
        let table = |name: &str| match doc.get(name) {
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(_) => Err(anyhow!("`{name}` must be a table: write `[{name}]` on its own line")),
            None => Ok(None),
        };
        let cvm = table("cvm")?.map(|t| table_values(t, env)).transpose()?;
        let limits = match table("limits")? {
            Some(t) => SandboxLimits::from_values(&table_values(t, env)?)?,
            None => SandboxLimits::default(),
        };
        let network = table("network")?.map(OperatorGrants::from_table).transpose()?.unwrap_or_default();
        Ok(ConnectorConfig { values, secret_references, stored_secrets: Vec::new(), cvm, limits, network })
    }

    /// A connector setting as configured (environment references resolved).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A configuration from key-value pairs (for embedding and the demo).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        ConnectorConfig {
            values: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            ..Default::default()
        }
    }

    /// Marks values as stored secrets (a platform's sealed values): they reach the
    /// plugin only through a field it declares as a secret.
    pub fn with_stored_secrets(mut self, keys: impl IntoIterator<Item = String>) -> Self {
        self.stored_secrets.extend(keys);
        self
    }

    /// Checks the values against the plugin's fields and fills in defaults.
    pub fn resolve(&self, info: &PluginInfo) -> Result<ResolvedConfig> {
        let mut problems = Vec::new();
        for key in self.values.keys() {
            if !info.fields.iter().any(|f| &f.key == key) {
                let known: Vec<&str> = info.fields.iter().map(|f| f.key.as_str()).collect();
                problems.push(FieldProblem::new(
                    key,
                    format!("`{key}` is not a field of {} (fields: {})", info.id, known.join(", ")),
                ));
            }
        }
        let mut resolved =
            ResolvedConfig { limits: self.limits.clone(), network: self.network.clone(), ..Default::default() };
        for field in &info.fields {
            let value = self.values.get(&field.key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            let Some(value) = value.or_else(|| field.default_value.clone()) else {
                if field.required {
                    problems.push(FieldProblem::new(
                        &field.key,
                        format!("`{}` ({}) is required: {}", field.key, field.label, field.help),
                    ));
                }
                continue;
            };
            // The operator, not the plugin, says what is secret: a value given by
            // reference is one, and a plugin that declared the field otherwise would
            // see its value.
            if field.kind != FieldKind::Secret && self.stored_secrets.contains(&field.key) {
                problems.push(FieldProblem::new(&field.key, format!(
                    "`{}` is stored as a secret, but plugin {} now declares it as {} and would see its value; enter the value again (or remove it) to give it as {}",
                    field.key,
                    info.id,
                    field_kind_name(&field.kind),
                    field_kind_name(&field.kind)
                )));
                continue;
            }
            if field.kind != FieldKind::Secret && self.secret_references.contains(&field.key) {
                problems.push(FieldProblem::new(&field.key, format!(
                    "`{}` is given by reference, so it is treated as a secret, but plugin {} declares it as {} and would see its value; give it as a literal, or write `secret = false` in the reference if it is not a secret",
                    field.key,
                    info.id,
                    match field.kind { FieldKind::Host => "a host", FieldKind::Integer => "an integer", FieldKind::Boolean => "a boolean", _ => "text" }
                )));
                continue;
            }
            let check = match field.kind {
                FieldKind::Integer => {
                    value.parse::<i64>().map(|_| ()).map_err(|_| format!("expected a whole number, got `{value}`"))
                }
                FieldKind::Boolean => match value.as_str() {
                    "true" | "false" => Ok(()),
                    _ => Err(format!("expected true or false, got `{value}`")),
                },
                FieldKind::Host => Origin::parse_config_value(&value).map(|_| ()).map_err(|e| format!("{e:#}")),
                FieldKind::Text | FieldKind::Secret => Ok(()),
            };
            // A field with choices takes one of them (contract 0.4), in any case of
            // ASCII letters, passed on as the plugin wrote it.
            let chosen = field.choices.iter().find(|c| c.value.eq_ignore_ascii_case(&value));
            let check = check.and_then(|()| match chosen {
                _ if field.choices.is_empty() => Ok(()),
                Some(_) => Ok(()),
                None if field.kind == FieldKind::Secret => Err("is not one of its choices".to_owned()),
                None => {
                    let values: Vec<String> = field.choices.iter().map(|c| format!("`{}`", c.value)).collect();
                    Err(format!("expected one of {}, got `{value}`", values.join(", ")))
                }
            });
            let value = chosen.map_or(value, |c| c.value.clone());
            if let Err(message) = check {
                problems.push(FieldProblem::new(&field.key, format!("`{}`: {message}", field.key)));
                continue;
            }
            match field.kind {
                FieldKind::Secret => resolved.secrets.push((field.key.clone(), value.clone())),
                FieldKind::Host => resolved.hosts.push((field.key.clone(), value.clone())),
                _ => {}
            }
            resolved.settings.push((field.key.clone(), value));
        }
        if !problems.is_empty() {
            return Err(FieldErrors(problems).into());
        }
        Ok(resolved)
    }
}

/// One field's problem: the field's key and a sentence that names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    /// The field's key.
    pub field: String,
    /// What is wrong, naming the field (the plugin's own words when it found it).
    pub message: String,
}

impl FieldProblem {
    pub(crate) fn new(field: &str, message: String) -> Self {
        FieldProblem { field: field.to_owned(), message }
    }
}

/// Every field problem of a configuration at once: from checking it against the
/// plugin's fields, or from the plugin's `configure`. An error a platform can
/// downcast to and show next to each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldProblem>);

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let lines: Vec<&str> = self.0.iter().map(|p| p.message.as_str()).collect();
        f.write_str(&lines.join("; "))
    }
}

impl std::error::Error for FieldErrors {}

/// Configuration checked against a plugin's fields, defaults filled in.
#[derive(Debug, Clone, Default)]
pub struct ResolvedConfig {
    /// Every field with a value, in the plugin's field order.
    pub(crate) settings: Vec<(String, String)>,
    /// `(key, value)` of fields of kind secret: the plugin gets placeholders, and the
    /// values are masked wherever text leaves the host.
    pub(crate) secrets: Vec<(String, String)>,
    /// `(key, value)` of fields of kind host: the origins the run may reach.
    pub(crate) hosts: Vec<(String, String)>,
    /// The `[limits]` table: the sandbox limits of this connector's plugin.
    pub limits: SandboxLimits,
    /// The `[network]` table: what the operator adds to or removes from the plugin's egress.
    pub(crate) network: OperatorGrants,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{Choice, ConfigField};

    fn info() -> PluginInfo {
        let field = |key: &str, kind, required, default: Option<&str>| ConfigField {
            key: key.into(),
            label: key.to_uppercase(),
            help: format!("help for {key}"),
            kind,
            required,
            default_value: default.map(Into::into),
            sent_to: Vec::new(),
            choices: Vec::new(),
        };
        PluginInfo {
            id: "p".into(),
            name: "P".into(),
            version: "1".into(),
            description: String::new(),
            scanner_type: "P".into(),
            fields: vec![
                field("host", FieldKind::Host, true, Some("api.example.com")),
                field("secret", FieldKind::Secret, true, None),
                field("size", FieldKind::Integer, false, None),
                field("flag", FieldKind::Boolean, false, Some("false")),
                ConfigField {
                    choices: ["auto", "json", "export"]
                        .map(|v| Choice { value: v.into(), label: v.to_uppercase() })
                        .to_vec(),
                    ..field("mode", FieldKind::Text, false, Some("auto"))
                },
            ],
            egress: Vec::new(),
            independent_pages: false,
            section: "Test".into(),
            counters: Vec::new(),
            incremental: false,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn literal_and_environment_values_resolve_with_defaults() {
        let env = |name: &str| (name == "MY_SECRET").then(|| "s3cret".to_string());
        let c =
            ConnectorConfig::parse("[connector]\nsecret = { env = \"MY_SECRET\" }\nsize = 5\nmode = \"JSON\"\n", &env)
                .unwrap();
        let r = c.resolve(&info()).unwrap();
        assert_eq!(
            r.settings,
            [("host", "api.example.com"), ("secret", "s3cret"), ("size", "5"), ("flag", "false"), ("mode", "json")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(r.secrets, [("secret".to_string(), "s3cret".to_string())]);
        assert_eq!(r.hosts, [("host".to_string(), "api.example.com".to_string())]);
    }

    #[test]
    fn every_problem_names_its_field() {
        let c = ConnectorConfig::parse(
            "[connector]\nsize = \"big\"\nflag = \"yes\"\ncolour = \"red\"\nhost = \"https://h/p\"\nmode = \"xml\"\n",
            &no_env,
        )
        .unwrap();
        let err = c.resolve(&info()).unwrap_err().to_string();
        assert!(err.contains("`colour` is not a field of p"), "{err}");
        assert!(err.contains("`secret` (SECRET) is required"), "{err}");
        assert!(err.contains("`size`: expected a whole number, got `big`"), "{err}");
        assert!(err.contains("`flag`: expected true or false"), "{err}");
        assert!(err.contains("`host`: `https://h/p` has a path"), "{err}");
        assert!(err.contains("`mode`: expected one of `auto`, `json`, `export`, got `xml`"), "{err}");
    }

    #[test]
    fn limits_and_network_tables_are_read_at_load() {
        let c = ConnectorConfig::parse(
            "[connector]\n[limits]\nmemory_mb = 64\ncpu_seconds = 2\n[network]\nallow = [\"https://proxy.example.com\"]\nallow_private_ips = true\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(c.limits.memory_bytes, 64 << 20);
        assert_eq!(c.limits.cpu_per_call, std::time::Duration::from_secs(2));
        assert_eq!(c.network.allow, ["https://proxy.example.com"]);
        assert!(c.network.allow_private_ips);
        let err = ConnectorConfig::parse("[connector]\n[limits]\nmemory = 5\n", &no_env).unwrap_err().to_string();
        assert!(err.contains("`memory` is not a limit"), "{err}");
    }

    #[test]
    fn malformed_files_are_explained() {
        assert!(ConnectorConfig::parse("connector = 1", &no_env).unwrap_err().to_string().contains("must be a table"));
        assert!(ConnectorConfig::parse("[other]\n", &no_env).unwrap_err().to_string().contains("unknown table"));
        assert!(ConnectorConfig::parse("[connector]\nx = { env = \"NOPE\" }", &no_env)
            .unwrap_err()
            .to_string()
            .contains("`NOPE` is not set"));
        assert!(ConnectorConfig::parse("[connector\n", &no_env).unwrap_err().to_string().contains("not valid TOML"));
    }

    #[test]
    fn a_value_given_by_reference_is_a_secret_unless_the_operator_says_not() {
        let env = |name: &str| (name == "SIZE").then(|| "7".to_string());
        let hidden = ConnectorConfig::parse("[connector]\nsecret = \"s\"\nsize = { env = \"SIZE\" }\n", &env).unwrap();
        let err = hidden.resolve(&info()).unwrap_err().to_string();
        assert!(
            err.contains(
                "`size` is given by reference, so it is treated as a secret, but plugin p declares it as an integer"
            ),
            "{err}"
        );
        assert!(err.contains("`secret = false`"), "{err}");
        let open =
            ConnectorConfig::parse("[connector]\nsecret = \"s\"\nsize = { env = \"SIZE\", secret = false }\n", &env)
                .unwrap();
        assert_eq!(open.resolve(&info()).unwrap().settings[2], ("size".to_string(), "7".to_string()));
        let dir = std::env::temp_dir().join(format!("config-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "from-a-file\n").unwrap();
        let text = format!("[connector]\nsecret = {{ file = \"{}\" }}\n", dir.join("secret").display());
        let from_file = ConnectorConfig::parse(&text, &no_env).unwrap().resolve(&info()).unwrap();
        assert_eq!(from_file.secrets, [("secret".to_string(), "from-a-file".to_string())]);
    }
}
