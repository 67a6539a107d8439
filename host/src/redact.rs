//! Masks secret values in any text that came from a plugin or a remote server before
//! it reaches logs, errors or the summary.

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// The secret values of one run, in every encoding they may appear in.
#[derive(Default, Clone, Debug)]
pub struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            needles.push(secret.to_owned());
            // A secret sent in a form body or query appears percent-encoded.
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            if encoded != secret {
                needles.push(encoded);
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Redactor { needles }
    }

    /// The text with every secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_raw_and_percent_encoded_secrets() {
        let r = Redactor::new(["p@ss w+rd"]);
        assert_eq!(r.redact("body: client_secret=p%40ss+w%2Brd&x=1"), "body: client_secret=[REDACTED]&x=1");
        assert_eq!(r.redact("echo p@ss w+rd!"), "echo [REDACTED]!");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn empty_secrets_mask_nothing() {
        assert_eq!(Redactor::new([""]).redact("abc"), "abc");
    }
}
