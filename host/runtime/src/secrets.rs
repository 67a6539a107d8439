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
/// What every placeholder starts with, lowercased (placeholders are looked for in
/// any case).
const MARKER: &[u8] = b"__secret_";

/// A placeholder found in a text: where it starts, and whose it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// Its first byte.
    pub(crate) at: usize,
    secret: usize,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Secrets {
    secrets: Vec<Secret>,
    /// Masks the values in responses.
    redactor: Redactor,
}

impl Secrets {
    /// Placeholders for `(key, value)` pairs, unique to this session; `bindings` says
    /// where each key's value may be sent (none: nowhere).
    pub(crate) fn new(pairs: &[(String, String)], bindings: &[(String, Vec<Origin>)]) -> Secrets {
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

    /// Every placeholder of this session in `text`, where it stands; or why the text
    /// holds something that only looks like one. Anything that starts like a
    /// placeholder (`__SECRET_`, in any case) must be one of this session's, whole
    /// and as issued: a split, partial, nested or re-cased placeholder is refused
    /// rather than guessed at, since a parser or server further on may join or fold
    /// it into the real thing.
    pub(crate) fn scan(&self, text: &[u8]) -> Result<Vec<Found>, String> {
        if self.secrets.is_empty() {
            return Ok(Vec::new());
        }
        let lower = text.to_ascii_lowercase();
        let mut found = Vec::new();
        let mut next = 0;
        for at in memmem::find_iter(&lower, MARKER) {
            if at < next {
                continue;
            }
            let whole = self.secrets.iter().position(|s| text[at..].starts_with(s.placeholder.as_bytes()));
            match whole {
                Some(secret) => {
                    found.push(Found { at, secret });
                    next = at + self.secrets[secret].placeholder.len();
                }
                None => {
                    return Err(
                        "the request holds an altered secret placeholder (split, partial, nested or re-cased); \
                         pass each placeholder exactly as `configure` received it"
                            .into(),
                    )
                }
            }
        }
        Ok(found)
    }

    /// Why a request to `origin` carrying the placeholders `found` must not be sent:
    /// one of them is of a secret not bound to that origin.
    pub(crate) fn refusal(&self, origin: &Origin, found: &[Found]) -> Option<String> {
        let secret =
            found.iter().map(|f| &self.secrets[f.secret]).find(|s| !s.sent_to.iter().any(|o| o.admits(origin)))?;
        let allowed: Vec<String> = secret.sent_to.iter().map(ToString::to_string).collect();
        Some(format!(
            "the secret `{}` may not be sent to {origin} (the plugin binds it to: {})",
            secret.key,
            if allowed.is_empty() { "no origin".to_owned() } else { allowed.join(", ") }
        ))
    }

    /// The key of the secret a placeholder found in a text stands for.
    pub(crate) fn key_of(&self, found: &Found) -> &str {
        &self.secrets[found.secret].key
    }

    /// The placeholder the plugin receives for a secret field.
    pub(crate) fn placeholder(&self, value: &str) -> Option<&str> {
        self.secrets.iter().find(|s| s.value == value).map(|s| s.placeholder.as_str())
    }

    /// `text` with each placeholder `found` in it replaced by its secret, written by
    /// `encode`: exactly the places the checks saw, nothing found anew.
    pub(crate) fn substitute(&self, text: &[u8], found: &[Found], encode: Encoding) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + found.len() * 32);
        let mut copied = 0;
        for f in found {
            let secret = &self.secrets[f.secret];
            out.extend_from_slice(&text[copied..f.at]);
            out.extend_from_slice(encode.apply(&secret.value).as_bytes());
            copied = f.at + secret.placeholder.len();
        }
        out.extend_from_slice(&text[copied..]);
        out
    }

    /// Masks every secret, however encoded, in response bytes; most bodies hold
    /// none and stay as they are, uncopied (pages run to tens of megabytes).
    pub(crate) fn mask(&self, bytes: Vec<u8>) -> Vec<u8> {
        self.redactor.redact_bytes(bytes)
    }
}

/// How a secret is written where its placeholder stood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Every byte but ASCII letters and digits percent-encoded: a URL's path or query.
    Url,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// Inside a JSON string.
    Json,
    /// As it is: headers and other bodies.
    Raw,
}

impl Encoding {
    /// The encoding of a body of this content type.
    pub(crate) fn of_body(content_type: Option<&str>) -> Encoding {
        let content_type = content_type.unwrap_or("").to_ascii_lowercase();
        if content_type.contains("x-www-form-urlencoded") {
            Encoding::Form
        } else if content_type.contains("json") {
            Encoding::Json
        } else {
            Encoding::Raw
        }
    }

    /// The value written this way.
    pub(crate) fn apply(self, value: &str) -> String {
        match self {
            Encoding::Url => utf8_percent_encode(value, NON_ALPHANUMERIC).to_string(),
            Encoding::Form => url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
            Encoding::Json => {
                let quoted = serde_json::to_string(value).unwrap_or_default();
                quoted[1..quoted.len() - 1].to_owned()
            }
            Encoding::Raw => value.to_owned(),
        }
    }
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
        let found = s.scan(format!("x {p} y").as_bytes()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(s.refusal(&login, &found), None);
        let refused = s.refusal(&api, &found).unwrap();
        assert!(refused.contains("`client_secret` may not be sent to https://api.example.com:443"), "{refused}");
        assert_eq!(s.refusal(&api, &s.scan(b"no placeholder here").unwrap()), None);
    }

    #[test]
    fn placeholders_survive_encoding_and_are_unique_per_session() {
        let s = secrets();
        let p = s.placeholder("p@ss w+rd/\"x\"").unwrap().to_owned();
        assert!(p.starts_with("__SECRET_") && p.ends_with("_client_secret__"));
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_eq!(Encoding::Form.apply(&p), p);
        assert_eq!(Encoding::Url.apply(&p), p.replace('_', "%5F"), "in a URL only the underscores change");
        assert_ne!(secrets().placeholder("p@ss w+rd/\"x\"").unwrap(), p, "a new session, a new placeholder");
    }

    #[test]
    fn substitution_encodes_for_where_the_placeholder_stands() {
        let s = secrets();
        let p = s.placeholder("p@ss w+rd/\"x\"").unwrap().to_owned();
        let fill = |text: String, encoding| {
            let found = s.scan(text.as_bytes()).unwrap();
            String::from_utf8(s.substitute(text.as_bytes(), &found, encoding)).unwrap()
        };
        let form = Encoding::of_body(Some("application/x-www-form-urlencoded"));
        assert_eq!(fill(format!("a=1&client_secret={p}"), form), "a=1&client_secret=p%40ss+w%2Brd%2F%22x%22");
        let json = Encoding::of_body(Some("application/json"));
        assert_eq!(fill(format!("{{\"k\":\"{p}\"}}"), json), r#"{"k":"p@ss w+rd/\"x\""}"#);
        assert_eq!(fill(format!("https://h/x?k={p}"), Encoding::Url), "https://h/x?k=p%40ss%20w%2Brd%2F%22x%22");
        assert_eq!(fill(format!("Bearer {p}&{p}"), Encoding::Raw), "Bearer p@ss w+rd/\"x\"&p@ss w+rd/\"x\"");
    }

    #[test]
    fn every_encoding_the_host_writes_a_secret_in_is_masked() {
        // The host writes secrets into requests in these encodings; an echo of any of
        // them (in a response, an error, a log line), with its hex digits in either
        // case, must be masked.
        let values = ["tok-3n_S3cr/t", "p@ss w+rd/\"x\"", "a.b~c!d*e'f(g)h", "ünï 😀 %41+", "x\\y\tz"];
        for value in values {
            let s = Secrets::new(&[("k".into(), value.into())], &[]);
            for encoding in [Encoding::Url, Encoding::Form, Encoding::Json, Encoding::Raw] {
                let written = encoding.apply(value);
                let mut echoes = vec![written.clone()];
                if matches!(encoding, Encoding::Url | Encoding::Form) {
                    echoes.push(lower_hex(&written));
                }
                for echoed in echoes {
                    let masked = String::from_utf8(s.mask(format!("before {echoed} after").into_bytes())).unwrap();
                    assert_eq!(masked, "before [REDACTED] after", "{value:?} as {encoding:?}");
                }
            }
        }
    }

    /// Percent-escapes with lowercase hex digits.
    fn lower_hex(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            out.push('%');
            out.push_str(&rest[at + 1..at + 3].to_ascii_lowercase());
            rest = &rest[at + 3..];
        }
        out + rest
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
