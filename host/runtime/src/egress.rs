//! Where an instance may connect, and where each secret may go, as its plugin
//! declared them in `info` (contract 0.3) and the configuration fills them in.
//!
//! The declaration is static, so an operator can review it before trusting the
//! plugin (`connector-host info`). `{key}` stands for the value of the `host` field
//! `key` and is left out when the field is unset; `*.domain` matches subdomains. A
//! secret field's `sent-to` names declared origins, and the host substitutes the
//! secret only in requests to those: a wildcard counts only when named.

use crate::bindings::types::{FieldKind, PluginInfo};
use crate::config::ResolvedConfig;
use crate::policy::Origin;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

/// A plugin's declared egress, filled in for one configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct Egress {
    /// Each declared origin as written (`{host}`, `https://*.example.com`), and what
    /// it stands for here; a `{key}` whose field is unset is not here.
    declared: Vec<(String, Origin)>,
}

impl Egress {
    /// Fills in the declaration of `info` with the values of `config`.
    pub(crate) fn expand(info: &PluginInfo, config: &ResolvedConfig) -> Result<Egress> {
        let hosts: BTreeMap<&str, &str> = config.hosts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut declared = Vec::new();
        for entry in &info.egress {
            let written = entry.origin.trim();
            let value = match written.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                Some(key) => {
                    if !info.fields.iter().any(|f| f.key == key && f.kind == FieldKind::Host) {
                        bail!(
                            "plugin `{}` declares egress `{written}`, but `{key}` is not one of its host fields",
                            info.id
                        );
                    }
                    match hosts.get(key) {
                        Some(value) => *value,
                        None => continue,
                    }
                }
                None => written,
            };
            let origin = Origin::parse_config_value(value)
                .with_context(|| format!("plugin `{}` declares egress `{written}`", info.id))?;
            declared.push((written.to_owned(), origin));
        }
        Ok(Egress { declared })
    }

    /// Every declared origin, filled in.
    pub(crate) fn origins(&self) -> impl Iterator<Item = &Origin> {
        self.declared.iter().map(|(_, origin)| origin)
    }

    /// For each secret field of `config`, the origins its value may be sent to: the
    /// declared origins its `sent-to` names. Naming an undeclared origin is the
    /// plugin's error, refused before it runs.
    pub(crate) fn secret_bindings(
        &self,
        info: &PluginInfo,
        config: &ResolvedConfig,
    ) -> Result<Vec<(String, Vec<Origin>)>> {
        let mut bindings = Vec::new();
        for (key, _) in &config.secrets {
            let sent_to = info.fields.iter().find(|f| &f.key == key).map(|f| f.sent_to.as_slice()).unwrap_or(&[]);
            let mut origins = Vec::new();
            for written in sent_to {
                let declared = info.egress.iter().any(|e| e.origin.trim() == written.trim());
                if !declared {
                    bail!(
                        "plugin `{}` lets secret `{key}` go to `{written}`, which it does not declare as egress",
                        info.id
                    );
                }
                origins.extend(self.declared.iter().filter(|(w, _)| w == written.trim()).map(|(_, o)| o.clone()));
            }
            bindings.push((key.clone(), origins));
        }
        Ok(bindings)
    }
}

/// How `info` shows a plugin's declared egress and secret bindings.
pub fn describe(info: &PluginInfo) -> Vec<String> {
    let mut lines: Vec<String> = info.egress.iter().map(|e| format!("{:<44} {}", e.origin, e.purpose)).collect();
    for field in info.fields.iter().filter(|f| f.kind == FieldKind::Secret) {
        let to = if field.sent_to.is_empty() { "nowhere".to_owned() } else { field.sent_to.join(", ") };
        lines.push(format!("secret `{}` is sent only to: {to}", field.key));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{ConfigField, Egress as Declared};

    fn info(egress: &[&str], secret_to: &[&str]) -> PluginInfo {
        let field = |key: &str, kind, sent_to: &[&str]| ConfigField {
            key: key.into(),
            label: key.into(),
            help: String::new(),
            kind,
            required: false,
            default_value: None,
            sent_to: sent_to.iter().map(|s| s.to_string()).collect(),
            choices: Vec::new(),
        };
        PluginInfo {
            id: "p".into(),
            name: "P".into(),
            version: "1".into(),
            description: String::new(),
            scanner_type: "P".into(),
            fields: vec![
                field("host", FieldKind::Host, &[]),
                field("login", FieldKind::Host, &[]),
                field("secret", FieldKind::Secret, secret_to),
            ],
            egress: egress.iter().map(|o| Declared { origin: o.to_string(), purpose: "why".into() }).collect(),
            independent_pages: false,
            section: "Test".into(),
            counters: Vec::new(),
            incremental: false,
        }
    }

    fn config() -> ResolvedConfig {
        ResolvedConfig {
            hosts: vec![("host".into(), "api.example.com".into())],
            secrets: vec![("secret".into(), "s".into())],
            ..Default::default()
        }
    }

    #[test]
    fn fields_fill_in_the_declaration_and_unset_ones_drop_out() {
        let e = Egress::expand(&info(&["{host}", "{login}", "https://*.blob.example.net"], &[]), &config()).unwrap();
        let origins: Vec<String> = e.origins().map(ToString::to_string).collect();
        assert_eq!(origins, ["https://api.example.com:443", "https://*.blob.example.net:443"]);
        let bad = Egress::expand(&info(&["{colour}"], &[]), &config()).unwrap_err().to_string();
        assert!(bad.contains("`colour` is not one of its host fields"), "{bad}");
    }

    #[test]
    fn secrets_go_only_where_their_binding_says() {
        let declared = info(
            &["{host}", "https://login.example.com", "https://*.blob.example.net"],
            &["https://login.example.com"],
        );
        let e = Egress::expand(&declared, &config()).unwrap();
        let bindings = e.secret_bindings(&declared, &config()).unwrap();
        assert_eq!(bindings[0].0, "secret");
        assert_eq!(
            bindings[0].1.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["https://login.example.com:443"]
        );
        let undeclared = info(&["{host}"], &["https://elsewhere.example"]);
        let e = Egress::expand(&undeclared, &config()).unwrap();
        let error = e.secret_bindings(&undeclared, &config()).unwrap_err().to_string();
        assert!(error.contains("does not declare as egress"), "{error}");
        assert!(describe(&declared).iter().any(|l| l == "secret `secret` is sent only to: https://login.example.com"));
    }
}
