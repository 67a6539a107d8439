//! Secrets stay out of the plugin.
//!
//! A configuration field of kind `secret` reaches the plugin as a placeholder,
//! `__SECRET_<nonce>_<key>__`, made only of letters, digits and underscores so that it
//! survives form-, URL- and JSON-encoding unchanged. The plugin puts the placeholder
//! where the secret belongs in a request; the host substitutes the value when it sends
//! the request, after the network policy allowed its destination, encoded for where it
//! stands: percent-encoded in the URL's path and query and in form bodies,
//! JSON-escaped in JSON bodies, as is in headers and other bodies; and only when the
//! request goes to an origin the secret is bound to (the plugin's declared `sent-to`).
//! A request that would carry a secret anywhere else is refused. A response that
//! echoes a secret back, however encoded, has it masked before the plugin sees it.

use crate::policy::Origin;
use crate::redact::Redactor;
use memchr::memmem;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

#[derive(Clone, Debug)]
struct Secret {
    key: String,
    placeholder: String,
    value: String,
    /// The origins the value may be sent to.
    sent_to: Vec<Origin>,
}

/// The secrets of one session.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    secrets: Vec<Secret>,
    /// Masks the values in responses.
    redactor: Redactor,
}

impl Secrets {
    /// Placeholders for `(key, value)` pairs, unique to this session; `bindings` says
    /// where each key's value may be sent (none: nowhere).
    pub fn new(pairs: &[(String, String)], bindings: &[(String, Vec<Origin>)]) -> Secrets {
        let nonce = session_nonce();
        let secrets: Vec<Secret> = pairs
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| {
                let safe_key: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
                let sent_to = bindings.iter().find(|(k, _)| k == key).map(|(_, o)| o.clone()).unwrap_or_default();
                Secret {
                    key: key.clone(),
                    placeholder: format!("__SECRET_{nonce}_{safe_key}__"),
                    value: value.clone(),
                    sent_to,
                }
            })
            .collect();
        let redactor = Redactor::new(secrets.iter().map(|s| s.value.as_str()));
        Secrets { secrets, redactor }
    }

    /// Why a request to `origin` carrying these parts must not be sent: a secret's
    /// placeholder in it, toward an origin that secret is not bound to.
    pub fn refusal(&self, origin: &Origin, parts: &[&[u8]]) -> Option<String> {
        let carried = |s: &Secret| parts.iter().any(|p| memmem::find(p, s.placeholder.as_bytes()).is_some());
        let secret =
            self.secrets.iter().filter(|s| carried(s)).find(|s| !s.sent_to.iter().any(|o| o.admits(origin)))?;
        let allowed: Vec<String> = secret.sent_to.iter().map(ToString::to_string).collect();
        Some(format!(
            "the secret `{}` may not be sent to {origin} (the plugin binds it to: {})",
            secret.key,
            if allowed.is_empty() { "no origin".to_owned() } else { allowed.join(", ") }
        ))
    }

    /// The placeholder the plugin receives for a secret field.
    pub fn placeholder(&self, value: &str) -> Option<&str> {
        self.secrets.iter().find(|s| s.value == value).map(|s| s.placeholder.as_str())
    }

    /// Whether a text holds a placeholder of this session.
    pub fn carries_placeholder(&self, text: &str) -> bool {
        let text = text.to_ascii_lowercase();
        self.secrets.iter().any(|s| text.contains(&s.placeholder.to_ascii_lowercase()))
    }

    /// The URL with secrets percent-encoded in place of their placeholders.
    pub fn substitute_url(&self, url: &str) -> String {
        self.substitute_text(url, |v| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string())
    }

    /// A header value with secrets in place of their placeholders; `None` if a
    /// secret would break the header (line breaks).
    pub fn substitute_header(&self, value: &str) -> Option<String> {
        let out = self.substitute_text(value, str::to_owned);
        (!out.contains(['\r', '\n'])).then_some(out)
    }

    /// A body with secrets in place of their placeholders, encoded for its type.
    pub fn substitute_body(&self, body: Vec<u8>, content_type: Option<&str>) -> Vec<u8> {
        let content_type = content_type.unwrap_or("").to_ascii_lowercase();
        let encode: fn(&str) -> String = if content_type.contains("x-www-form-urlencoded") {
            form_encode
        } else if content_type.contains("json") {
            json_escape
        } else {
            str::to_owned
        };
        let mut body = body;
        for s in &self.secrets {
            body = replace_all(&body, s.placeholder.as_bytes(), encode(&s.value).as_bytes());
        }
        body
    }

    fn substitute_text(&self, text: &str, encode: impl Fn(&str) -> String) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(&s.placeholder) {
                out = out.replace(&s.placeholder, &encode(&s.value));
            }
        }
        out
    }

    /// Masks every secret, however encoded, in response bytes; most bodies hold
    /// none and stay as they are, uncopied (pages run to tens of megabytes).
    pub fn mask(&self, bytes: Vec<u8>) -> Vec<u8> {
        self.redactor.redact_bytes(bytes)
    }
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn json_escape(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || memmem::find(haystack, needle).is_none() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut last = 0;
    for at in memmem::find_iter(haystack, needle) {
        if at < last {
            continue;
        }
        out.extend_from_slice(&haystack[last..at]);
        out.extend_from_slice(with);
        last = at + needle.len();
    }
    out.extend_from_slice(&haystack[last..]);
    out
}

/// 16 hex digits from the OS's randomness (std seeds `RandomState` from it).
fn session_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        let login = Origin::parse_config_value("https://login.example.com").unwrap();
        Secrets::new(&[("client_secret".into(), "p@ss w+rd/\"x\"".into())], &[("client_secret".into(), vec![login])])
    }

    #[test]
    fn a_secret_goes_only_to_the_origins_it_is_bound_to() {
        let s = secrets();
        let p = s.placeholder("p@ss w+rd/\"x\"").unwrap().to_owned();
        let login = Origin::parse_config_value("https://login.example.com").unwrap();
        let api = Origin::parse_config_value("https://api.example.com").unwrap();
        assert_eq!(s.refusal(&login, &[p.as_bytes()]), None);
        let refused = s.refusal(&api, &[b"x", p.as_bytes()]).unwrap();
        assert!(refused.contains("`client_secret` may not be sent to https://api.example.com:443"), "{refused}");
        assert_eq!(s.refusal(&api, &[b"no placeholder here"]), None);
    }

    #[test]
    fn placeholders_survive_encoding_and_are_unique_per_session() {
        let s = secrets();
        let p = s.placeholder("p@ss w+rd/\"x\"").unwrap().to_owned();
        assert!(p.starts_with("__SECRET_") && p.ends_with("_client_secret__"));
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_eq!(form_encode(&p), p);
        assert_ne!(secrets().placeholder("p@ss w+rd/\"x\"").unwrap(), p, "a new session, a new placeholder");
    }

    #[test]
    fn substitution_encodes_for_where_the_placeholder_stands() {
        let s = secrets();
        let p = s.placeholder("p@ss w+rd/\"x\"").unwrap().to_owned();
        let form =
            s.substitute_body(format!("a=1&client_secret={p}").into_bytes(), Some("application/x-www-form-urlencoded"));
        assert_eq!(String::from_utf8(form).unwrap(), "a=1&client_secret=p%40ss+w%2Brd%2F%22x%22");
        let json = s.substitute_body(format!("{{\"k\":\"{p}\"}}").into_bytes(), Some("application/json"));
        assert_eq!(String::from_utf8(json).unwrap(), r#"{"k":"p@ss w+rd/\"x\""}"#);
        assert_eq!(s.substitute_url(&format!("https://h/x?k={p}")), "https://h/x?k=p%40ss%20w%2Brd%2F%22x%22");
        assert_eq!(s.substitute_header(&format!("Bearer {p}")).unwrap(), "Bearer p@ss w+rd/\"x\"");
        let broken = Secrets::new(&[("k".into(), "a\r\nInjected: 1".into())], &[]);
        let bp = broken.placeholder("a\r\nInjected: 1").unwrap().to_owned();
        assert_eq!(broken.substitute_header(&bp), None);
    }

    #[test]
    fn echoed_secrets_are_masked_in_every_encoding() {
        let s = secrets();
        let echoed = b"raw p@ss w+rd/\"x\" form p%40ss+w%2Brd%2F%22x%22 json p@ss w+rd/\\\"x\\\" url p%40ss%20w%2Brd%2F%22x%22 end".to_vec();
        assert_eq!(
            String::from_utf8(s.mask(echoed)).unwrap(),
            "raw [REDACTED] form [REDACTED] json [REDACTED] url [REDACTED] end"
        );
    }
}
