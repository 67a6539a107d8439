//! Masks secret values in anything that leaves the host or reaches the plugin: log
//! lines, errors, the summary, every string a plugin emits, and response bodies.
//!
//! A secret is found however it is written: as is, percent-encoded (either hex case,
//! `+` for a space), or JSON-escaped (`\uXXXX` in either case, surrogate pairs, and
//! the short escapes `\/`, `\"`, `\\`), in any mix of those, character by character.
//! What no masking can catch is a plugin that transforms an echoed secret some other
//! way (reversed, base64); the security model in the README says so.

use memchr::memchr3_iter;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// The secret values of one run.
#[derive(Default, Clone, Debug)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<Vec<char>>,
}

impl Redactor {
    /// A redactor of these secret values (empty ones are ignored).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<Vec<char>> =
            secrets.into_iter().filter(|s| !s.is_empty()).map(|s| s.chars().collect()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The text with every secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        match self.mask(text.as_bytes()) {
            Some(masked) => String::from_utf8_lossy(&masked).into_owned(),
            None => text.to_owned(),
        }
    }

    /// Masks a string in place; most strings hold no secret and stay as they are.
    pub fn redact_in_place(&self, text: &mut String) {
        if let Some(masked) = self.mask(text.as_bytes()) {
            *text = String::from_utf8_lossy(&masked).into_owned();
        }
    }

    /// The bytes with every secret masked; the same bytes, uncopied, when none occurs.
    pub fn redact_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        self.mask(&bytes).unwrap_or(bytes)
    }

    /// The masked bytes, or `None` when no secret occurs.
    fn mask(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for secret in &self.secrets {
            let input = out.as_deref().unwrap_or(bytes);
            if let Some(masked) = mask_one(input, secret) {
                out = Some(masked);
            }
        }
        out
    }
}

/// The longest name a plugin may give a counter, a skip reason or a progress stage.
pub const MAX_NAME_CHARS: usize = 200;

/// Text a plugin wrote, made safe to show on one line of a terminal or a log: line
/// breaks and other control characters (terminal escapes start with one) become
/// spaces, so a plugin cannot forge log lines or rewrite the screen.
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A plugin's name for a counter, skip reason or stage: masked, on one line, at most
/// [`MAX_NAME_CHARS`] characters.
pub fn plugin_name(redactor: &Redactor, name: &str) -> String {
    let mut clean = one_line(&redactor.redact(name));
    if let Some((cut, _)) = clean.char_indices().nth(MAX_NAME_CHARS) {
        clean.truncate(cut);
        clean.push('…');
    }
    clean
}

/// Every occurrence of `secret` in `input` masked, or `None` when there is none.
fn mask_one(input: &[u8], secret: &[char]) -> Option<Vec<u8>> {
    let first = secret[0];
    let mut utf8 = [0u8; 4];
    let first_byte = first.encode_utf8(&mut utf8).as_bytes()[0];
    // Where a match can start: the first character as is, or an escape.
    let start_byte = if first == ' ' { b'+' } else { first_byte };
    let mut out = Vec::new();
    let mut copied = 0;
    let mut resume = 0;
    let candidates = memchr3_iter(first_byte, b'%', b'\\', input).chain(
        // A space may also start as `+`; rare, so looked for only when it matters.
        (first == ' ').then(|| memchr::memchr_iter(start_byte, input)).into_iter().flatten(),
    );
    let mut starts: Vec<usize> = candidates.collect();
    if first == ' ' {
        starts.sort_unstable();
    }
    for start in starts {
        if start < resume {
            continue;
        }
        if let Some(end) = match_at(input, start, secret) {
            out.extend_from_slice(&input[copied..start]);
            out.extend_from_slice(MASK.as_bytes());
            copied = end;
            resume = end;
        }
    }
    (copied > 0).then(|| {
        out.extend_from_slice(&input[copied..]);
        out
    })
}

/// Where a match of `secret` starting at `start` ends, if one does.
fn match_at(input: &[u8], start: usize, secret: &[char]) -> Option<usize> {
    let mut at = start;
    for &c in secret {
        // A character outside the BMP may also come as a JSON surrogate pair.
        at = match_char(input, at, c).or_else(|| surrogate_pair(input, at, c))?;
    }
    Some(at)
}

fn hex_value(input: &[u8], at: usize, digits: usize) -> Option<u32> {
    let text = std::str::from_utf8(input.get(at..at + digits)?).ok()?;
    u32::from_str_radix(text, 16).ok().filter(|_| text.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Where one character `c` ends if it is written at `at`, in any of the encodings.
fn match_char(input: &[u8], at: usize, c: char) -> Option<usize> {
    let mut buffer = [0u8; 4];
    let bytes = c.encode_utf8(&mut buffer).as_bytes();
    // As is.
    if input.get(at..at + bytes.len()) == Some(bytes) {
        return Some(at + bytes.len());
    }
    // Percent-encoded, byte by byte, in either hex case.
    let mut pos = at;
    let mut percent = true;
    for &b in bytes {
        if input.get(pos) == Some(&b'%') && hex_value(input, pos + 1, 2) == Some(u32::from(b)) {
            pos += 3;
        } else if bytes.len() == 1 && input.get(pos) == Some(&b) {
            pos += 1;
        } else {
            percent = false;
            break;
        }
    }
    if percent {
        return Some(pos);
    }
    if c == ' ' && input.get(at) == Some(&b'+') {
        return Some(at + 1);
    }
    if input.get(at) != Some(&b'\\') {
        return None;
    }
    // JSON escapes.
    match (input.get(at + 1), c) {
        (Some(b'u'), _) if hex_value(input, at + 2, 4) == Some(c as u32) => Some(at + 6),
        (Some(b'/'), '/') | (Some(b'"'), '"') | (Some(b'\\'), '\\') => Some(at + 2),
        (Some(b'n'), '\n')
        | (Some(b'r'), '\r')
        | (Some(b't'), '\t')
        | (Some(b'b'), '\u{8}')
        | (Some(b'f'), '\u{c}') => Some(at + 2),
        _ => None,
    }
}

fn surrogate_pair(input: &[u8], at: usize, c: char) -> Option<usize> {
    let code = c as u32;
    if code < 0x10000 || input.get(at..at + 2) != Some(b"\\u") || input.get(at + 6..at + 8) != Some(b"\\u") {
        return None;
    }
    let (high, low) = (hex_value(input, at + 2, 4)?, hex_value(input, at + 8, 4)?);
    let decoded = 0x10000 + ((high.checked_sub(0xD800)?) << 10) + low.checked_sub(0xDC00)?;
    (decoded == code).then_some(at + 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_raw_and_percent_encoded_secrets() {
        let r = Redactor::new(["p@ss w+rd"]);
        assert_eq!(r.redact("body: client_secret=p%40ss+w%2Brd&x=1"), "body: client_secret=[REDACTED]&x=1");
        assert_eq!(r.redact("echo p@ss w+rd!"), "echo [REDACTED]!");
        assert_eq!(r.redact("lower p%40ss%20w%2brd."), "lower [REDACTED].");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn masks_json_escapes_in_any_mix() {
        let r = Redactor::new(["s3cr/t\"ü😀"]);
        let every = "s3cr/t\"ü😀".encode_utf16().map(|u| format!("\\u{u:04x}")).collect::<String>();
        assert_eq!(r.redact(&format!("{{\"h\":\"{every}\"}}")), "{\"h\":\"[REDACTED]\"}");
        let upper = every.to_uppercase().replace("\\U", "\\u");
        assert_eq!(r.redact(&upper), "[REDACTED]");
        assert_eq!(r.redact("x s\\u0033cr\\/t\\\"\\u00FC😀 y"), "x [REDACTED] y");
        assert_eq!(r.redact("s3cr/t\"ü"), "s3cr/t\"ü", "a prefix alone is not the secret");
    }

    #[test]
    fn bodies_without_a_secret_are_not_copied() {
        let r = Redactor::new(["secret"]);
        let body = b"a\\b %41 plain".to_vec();
        let pointer = body.as_ptr();
        let kept = r.redact_bytes(body);
        assert_eq!(kept.as_ptr(), pointer);
        assert_eq!(r.redact_bytes(b"xx%73ecret".to_vec()), b"xx[REDACTED]");
    }

    #[test]
    fn plugin_text_stays_on_one_line_and_names_are_bounded() {
        assert_eq!(one_line("ok\r\nFAKE: line\u{1b}[2J"), "ok  FAKE: line [2J");
        let r = Redactor::new(["tok"]);
        assert_eq!(plugin_name(&r, "seen tok\n"), "seen [REDACTED] ");
        assert_eq!(plugin_name(&r, &"x".repeat(500)).chars().count(), MAX_NAME_CHARS + 1);
    }

    #[test]
    fn empty_secrets_mask_nothing() {
        assert_eq!(Redactor::new([""]).redact("abc"), "abc");
        assert!(Redactor::new([""]).is_empty());
    }
}
