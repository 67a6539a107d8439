//! Typed access to a plugin's settings, with every problem gathered at once.
//!
//! The host has already checked that required fields are present and that integer
//! and boolean fields parse; [`Config`] reads the values with their defaults applied,
//! converts them, and records a [`FieldError`] for each value that does not fit, so
//! the operator sees every mistake in one go:
//!
//! ```
//! # use connector_sdk::config::{field, Config};
//! # use connector_sdk::types::{FieldKind, Setting};
//! let fields = vec![field("page_size", "Page size", "Rows per page.", FieldKind::Integer, false, Some("100"))];
//! let mut config = Config::new(&fields, vec![Setting { key: "page_size".into(), value: "900".into() }]);
//! let page_size = config.integer("page_size", 1, 100);
//! let errors = config.finish().unwrap_err();
//! assert_eq!(errors[0].key, "page_size");
//! ```

use crate::types::{ConfigField, FieldError, FieldKind, Setting};

/// One configuration field, for [`Connector::info`](crate::Connector::info).
pub fn field(
    key: &str,
    label: &str,
    help: &str,
    kind: FieldKind,
    required: bool,
    default: Option<&str>,
) -> ConfigField {
    ConfigField {
        key: key.into(),
        label: label.into(),
        help: help.into(),
        kind,
        required,
        default_value: default.map(Into::into),
        sent_to: Vec::new(),
        choices: Vec::new(),
    }
}

/// A field that takes one of `choices` (each a value and its label), for
/// [`crate::Connector::info`]: a form shows a select, and the host refuses any other
/// value before the plugin sees it.
pub fn choice_field(
    key: &str,
    label: &str,
    help: &str,
    required: bool,
    default: Option<&str>,
    choices: &[(&str, &str)],
) -> ConfigField {
    ConfigField {
        choices: choices
            .iter()
            .map(|(value, label)| crate::types::Choice { value: (*value).into(), label: (*label).into() })
            .collect(),
        ..field(key, label, help, FieldKind::Text, required, default)
    }
}

/// A counter `output.count` reports, for [`crate::Connector::info`]'s `counters`:
/// the name the plugin counts under, how a summary labels it, and what it counts.
pub fn counter(name: &str, label: &str, role: crate::types::CounterRole) -> crate::types::CounterInfo {
    crate::types::CounterInfo { name: name.into(), label: label.into(), role }
}

/// A `secret` field for [`crate::Connector::info`], and the origins its value may be
/// sent to, each written exactly as one of the plugin's declared egress origins
/// (`https://login.example.com`, `{host}`). The host substitutes the secret only in
/// requests to those origins and refuses requests that would carry it elsewhere.
pub fn secret_field(key: &str, label: &str, help: &str, required: bool, sent_to: &[&str]) -> ConfigField {
    ConfigField {
        sent_to: sent_to.iter().map(|s| (*s).to_owned()).collect(),
        ..field(key, label, help, FieldKind::Secret, required, None)
    }
}

/// An origin the plugin may contact, for [`crate::Connector::info`]'s `egress`:
/// `https://host[:port]`, `https://*.domain`, or `{key}` for the value of the `host`
/// field `key`; with why, in a few words for the operator.
pub fn egress(origin: &str, purpose: &str) -> crate::types::Egress {
    crate::types::Egress { origin: origin.into(), purpose: purpose.into() }
}

/// The settings of one instance, read against the plugin's fields.
#[derive(Debug, Clone)]
pub struct Config {
    fields: Vec<ConfigField>,
    settings: Vec<Setting>,
    errors: Vec<FieldError>,
}

impl Config {
    /// Reads `settings` against `fields`; a setting no field declares is an error.
    pub fn new(fields: &[ConfigField], settings: Vec<Setting>) -> Self {
        let mut config = Config { fields: fields.to_vec(), settings, errors: Vec::new() };
        let unknown: Vec<String> =
            config.settings.iter().filter(|s| !fields.iter().any(|f| f.key == s.key)).map(|s| s.key.clone()).collect();
        for key in unknown {
            config.error(&key, "unknown field for this connector");
        }
        config
    }

    /// The value the operator set (trimmed), or `None` when unset or blank.
    pub fn value(&self, key: &str) -> Option<String> {
        self.settings.iter().rev().find(|s| s.key == key).map(|s| s.value.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// The value, or the field's default, or an empty string.
    pub fn text(&self, key: &str) -> String {
        self.value(key).or_else(|| self.default_of(key)).unwrap_or_default()
    }

    /// The value or default; records an error when there is neither.
    pub fn required(&mut self, key: &str) -> String {
        let value = self.text(key);
        if value.is_empty() {
            let label = self.fields.iter().find(|f| f.key == key).map(|f| f.label.clone()).unwrap_or(key.into());
            self.error(key, &format!("{label} is required"));
        }
        value
    }

    /// A whole number from `min` to `max` (value or default); on error, `min`.
    pub fn integer(&mut self, key: &str, min: u64, max: u64) -> u64 {
        let raw = self.text(key);
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.error(key, &format!("expected a whole number from {min} to {max}, got `{raw}`"));
                min
            }
        }
    }

    /// `true`/`false` (also `yes`/`no`, `1`/`0`); on error, `false`.
    pub fn boolean(&mut self, key: &str) -> bool {
        let raw = self.text(key);
        match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" | "" => false,
            _ => {
                self.error(key, &format!("expected true or false, got `{raw}`"));
                false
            }
        }
    }

    /// One of `choices` (case-insensitive, returned in lower case); on error, the first.
    pub fn choice(&mut self, key: &str, choices: &[&str]) -> String {
        let raw = self.text(key).to_ascii_lowercase();
        if choices.contains(&raw.as_str()) {
            return raw;
        }
        self.error(key, &format!("expected {}, got `{raw}`", one_of(choices)));
        choices.first().map(|c| c.to_string()).unwrap_or_default()
    }

    /// A host field as a base URL without a trailing slash: a bare host name becomes
    /// `https://host`. On error, an empty string.
    pub fn base_url(&mut self, key: &str) -> String {
        let raw = self.text(key);
        match base_url(&raw) {
            Ok(url) => url,
            Err(message) => {
                self.error(key, &message);
                String::new()
            }
        }
    }

    /// Records a problem with a field.
    pub fn error(&mut self, key: &str, message: &str) {
        self.errors.push(FieldError { key: key.into(), message: message.into() });
    }

    /// The problems found so far.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// `Ok` when every setting was valid, else every problem found.
    pub fn finish(&mut self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(std::mem::take(&mut self.errors))
        }
    }

    fn default_of(&self, key: &str) -> Option<String> {
        self.fields.iter().find(|f| f.key == key).and_then(|f| f.default_value.clone())
    }
}

fn one_of(choices: &[&str]) -> String {
    match choices {
        [] => "nothing".into(),
        [only] => (*only).into(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// `host`, `host:port`, `https://host[:port][/]` or `http://...` as a base URL
/// without a trailing slash; a path, query or credentials are refused.
pub fn base_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("a host is required".into());
    }
    let (scheme, rest) = match value.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http") => {
            (s.to_ascii_lowercase(), r)
        }
        Some((s, _)) => return Err(format!("expected an https:// URL or a host name, got scheme `{s}`")),
        None => ("https".to_owned(), value),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("expected a host name such as api.example.com, got `{value}`"));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<ConfigField> {
        vec![
            field("token", "Token", "", FieldKind::Secret, true, None),
            field("host", "Host", "", FieldKind::Host, true, Some("api.example.com")),
            field("size", "Size", "", FieldKind::Integer, false, Some("10")),
            field("mode", "Mode", "", FieldKind::Text, false, Some("fast")),
            field("archived", "Archived", "", FieldKind::Boolean, false, Some("false")),
        ]
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(&fields(), pairs.iter().map(|(k, v)| Setting { key: (*k).into(), value: (*v).into() }).collect())
    }

    #[test]
    fn defaults_apply_and_values_convert() {
        let mut c = config(&[("token", " t "), ("archived", "yes")]);
        assert_eq!(c.required("token"), "t");
        assert_eq!(c.base_url("host"), "https://api.example.com");
        assert_eq!(c.integer("size", 1, 100), 10);
        assert_eq!(c.choice("mode", &["fast", "slow"]), "fast");
        assert!(c.boolean("archived"));
        assert_eq!(c.finish(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut c = config(&[("size", "0"), ("mode", "Turbo"), ("host", "ftp://x"), ("colour", "red")]);
        c.required("token");
        c.integer("size", 1, 100);
        c.choice("mode", &["fast", "slow", "off"]);
        c.base_url("host");
        let errors = c.finish().unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["colour", "token", "size", "mode", "host"]);
        assert!(errors[3].message.contains("expected fast, slow or off, got `turbo`"), "{:?}", errors[3]);
    }

    #[test]
    fn base_urls_accept_hosts_and_urls_but_not_paths() {
        assert_eq!(base_url("API.example.com/").unwrap(), "https://api.example.com");
        assert_eq!(base_url("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert!(base_url("https://x.com/api").is_err());
        assert!(base_url("https://user@x.com").is_err());
    }
}
