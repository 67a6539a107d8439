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
pub(crate) const MASK: &str = "[REDACTED]";

/// The secret values of one run.
#[derive(Default, Clone, Debug)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<Secret>,
}

/// One secret value: its characters, and a searcher for it as is, built once. Every
/// string a plugin emits is masked, so building the searcher for each string cost
/// more than the search (4% of a run's CPU before it was kept here).
#[derive(Clone, Debug)]
struct Secret {
    chars: Vec<char>,
    literal: memchr::memmem::Finder<'static>,
    escapes: Escapes,
}

/// Which escapes can stand for part of a secret, decided once per secret: a page of
/// JSON has several escapes a row (the backslashes of Windows paths), and deciding
/// each by scanning the secret's characters took 6.5 ms of a 36 MB page's 7 ms of
/// masking, 4.7 ms with these tables (natively, Defender-like rows).
#[derive(Clone, Debug)]
struct Escapes {
    /// Bytes of the secret's UTF-8, for `%XX`.
    bytes: [bool; 256],
    /// By the letter after a backslash (`n` for `\n`, `/` for `\/`): whether the
    /// secret has the character that short JSON escape stands for.
    short: [bool; 128],
    /// A space, which `+` stands for.
    space: bool,
    /// A character outside the BMP, which a surrogate half may belong to.
    beyond_bmp: bool,
}

impl Escapes {
    fn of(chars: &[char]) -> Self {
        let mut bytes = [false; 256];
        let mut buffer = [0u8; 4];
        for c in chars {
            for b in c.encode_utf8(&mut buffer).as_bytes() {
                bytes[*b as usize] = true;
            }
        }
        let mut short = [false; 128];
        for (letter, c) in SHORT_ESCAPES {
            short[letter as usize] = chars.contains(&c);
        }
        Escapes { bytes, short, space: chars.contains(&' '), beyond_bmp: chars.iter().any(|c| *c as u32 >= 0x10000) }
    }
}

/// JSON's short escapes: the letter after the backslash, and the character.
const SHORT_ESCAPES: [(u8, char); 8] = [
    (b'/', '/'),
    (b'"', '"'),
    (b'\\', '\\'),
    (b'n', '\n'),
    (b'r', '\r'),
    (b't', '\t'),
    (b'b', '\u{8}'),
    (b'f', '\u{c}'),
];

impl Redactor {
    /// A redactor of these secret values (empty ones are ignored).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut values: Vec<&str> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        values.sort_by_key(|s| std::cmp::Reverse(s.chars().count()));
        values.dedup();
        let secrets = values
            .into_iter()
            .map(|s| {
                let chars: Vec<char> = s.chars().collect();
                let escapes = Escapes::of(&chars);
                Secret { chars, literal: memchr::memmem::Finder::new(s).into_owned(), escapes }
            })
            .collect();
        Redactor { secrets }
    }

    /// Whether there is nothing to mask.
    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The text with every secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        self.redact_cow(text).into_owned()
    }

    /// The text with every secret masked, borrowed as it is when it holds none.
    pub(crate) fn redact_cow<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match self.mask(text.as_bytes()) {
            Some(masked) => std::borrow::Cow::Owned(String::from_utf8_lossy(&masked).into_owned()),
            None => std::borrow::Cow::Borrowed(text),
        }
    }

    /// Masks a string in place; most strings hold no secret and stay as they are.
    pub(crate) fn redact_in_place(&self, text: &mut String) {
        if let std::borrow::Cow::Owned(masked) = self.redact_cow(text) {
            *text = masked;
        }
    }

    /// The bytes with every secret masked; the same bytes, uncopied, when none occurs.
    pub(crate) fn redact_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
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

/// The longest log line kept or written, in bytes; longer ones are cut, the cut marked.
pub const MAX_LOG_LINE_BYTES: usize = 8 << 10;

/// Cuts a log line to [`MAX_LOG_LINE_BYTES`] (at a character boundary), saying how
/// much was cut: a plugin or a remote answer cannot make a log line of any size.
pub fn cap_line(text: &mut String) {
    if text.len() <= MAX_LOG_LINE_BYTES {
        return;
    }
    let cut = text.floor_char_boundary(MAX_LOG_LINE_BYTES);
    let removed = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!(" [cut: {removed} more bytes]"));
}

/// The longest name a plugin may give a counter, a skip reason or a progress stage.
pub(crate) const MAX_NAME_CHARS: usize = 200;

/// Text a plugin wrote, made safe to show on one line of a terminal or a log: line
/// breaks and other control characters (terminal escapes start with one) become
/// spaces, so a plugin cannot forge log lines or rewrite the screen.
pub(crate) fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A plugin's name for a counter, skip reason or stage: masked, on one line, at most
/// [`MAX_NAME_CHARS`] characters.
pub(crate) fn plugin_name(redactor: &Redactor, name: &str) -> String {
    let mut clean = one_line(&redactor.redact(name));
    if let Some((cut, _)) = clean.char_indices().nth(MAX_NAME_CHARS) {
        clean.truncate(cut);
        clean.push('…');
    }
    clean
}

/// Every occurrence of `secret` in `input` masked, or `None` when there is none.
///
/// Fast for the common case, a body without the secret: the secret as is is found
/// with a SIMD substring search, and the slower character-by-character matching runs
/// only around escapes that decode to one of the secret's characters (in a page of
/// JSON, escaped backslashes of paths are frequent, but they matter only for a
/// secret with a backslash in it).
fn mask_one(input: &[u8], secret: &Secret) -> Option<Vec<u8>> {
    let length = secret.literal.needle().len();
    let mut spans: Vec<(usize, usize)> = secret.literal.find_iter(input).map(|at| (at, at + length)).collect();
    let (escapes, secret) = (&secret.escapes, &secret.chars[..]);
    // The longest any character can be written: `\uXXXX\uXXXX`, or `%XX` four times.
    let longest = secret.len() * 12;
    let mut covered_to = 0;
    // `+` stands for a space only: look for it only when the secret has one.
    let plus = if escapes.space { b'+' } else { b'%' };
    for escape in memchr3_iter(b'%', b'\\', plus, input) {
        if escape < covered_to || spans.iter().any(|(s, e)| (*s..*e).contains(&escape)) {
            continue;
        }
        if !decodes_to_one_of(input, escape, secret, escapes) {
            continue;
        }
        // A match that holds this escape starts at most `longest` bytes before it.
        let found = (escape.saturating_sub(longest)..=escape)
            .find_map(|start| match_at(input, start, secret).filter(|end| *end > escape).map(|end| (start, end)));
        if let Some((start, end)) = found {
            spans.push((start, end));
            covered_to = end;
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = Vec::with_capacity(input.len());
    let mut copied = 0;
    for (start, end) in spans {
        if start < copied {
            continue;
        }
        out.extend_from_slice(&input[copied..start]);
        out.extend_from_slice(MASK.as_bytes());
        copied = end;
    }
    out.extend_from_slice(&input[copied..]);
    Some(out)
}

/// Whether the escape at `at` (`%XX`, `+`, a JSON escape) stands for a character or
/// byte of the secret: only then can it be part of the secret written escaped.
fn decodes_to_one_of(input: &[u8], at: usize, secret: &[char], escapes: &Escapes) -> bool {
    match input[at] {
        b'+' => escapes.space,
        b'%' => hex_value(input, at + 1, 2).is_some_and(|byte| escapes.bytes[byte as usize]),
        _ => match input.get(at + 1) {
            Some(b'u') => hex_value(input, at + 2, 4).is_some_and(|unit| {
                // A surrogate half may belong to a character outside the BMP.
                (0xD800..0xE000).contains(&unit) && escapes.beyond_bmp
                    || char::from_u32(unit).is_some_and(|c| secret.contains(&c))
            }),
            Some(&letter) => escapes.short.get(letter as usize).copied().unwrap_or(false),
            None => false,
        },
    }
}

/// Where a match of `secret` starting at `start` ends, if one does. A character
/// may be written more than one way from the same place (`%` as is, or `%25`):
/// every way is tried.
fn match_at(input: &[u8], start: usize, secret: &[char]) -> Option<usize> {
    let Some((&c, rest)) = secret.split_first() else { return Some(start) };
    let mut ends = char_ends(input, start, c);
    // A character outside the BMP may also come as a JSON surrogate pair.
    ends.extend(surrogate_pair(input, start, c));
    ends.into_iter().find_map(|end| match_at(input, end, rest))
}

/// The number `digits` hex digits at `at` write, if they are all hex digits.
fn hex_value(input: &[u8], at: usize, digits: usize) -> Option<u32> {
    input.get(at..at + digits)?.iter().try_fold(0, |value, b| Some(value * 16 + char::from(*b).to_digit(16)?))
}

/// Where one character `c` ends if it is written at `at`, in each of the encodings
/// it may be written in there.
fn char_ends(input: &[u8], at: usize, c: char) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut buffer = [0u8; 4];
    let bytes = c.encode_utf8(&mut buffer).as_bytes();
    // As is.
    if input.get(at..at + bytes.len()) == Some(bytes) {
        ends.push(at + bytes.len());
    }
    // Percent-encoded, byte by byte, in either hex case.
    let mut pos = at;
    let mut percent = true;
    for &b in bytes {
        if input.get(pos) == Some(&b'%') && hex_value(input, pos + 1, 2) == Some(u32::from(b)) {
            pos += 3;
        } else {
            percent = false;
            break;
        }
    }
    if percent {
        ends.push(pos);
    }
    if c == ' ' && input.get(at) == Some(&b'+') {
        ends.push(at + 1);
    }
    if input.get(at) != Some(&b'\\') {
        return ends;
    }
    // JSON escapes.
    match (input.get(at + 1), c) {
        (Some(b'u'), _) if hex_value(input, at + 2, 4) == Some(c as u32) => ends.push(at + 6),
        (Some(b'/'), '/') | (Some(b'"'), '"') | (Some(b'\\'), '\\') => ends.push(at + 2),
        (Some(b'n'), '\n')
        | (Some(b'r'), '\r')
        | (Some(b't'), '\t')
        | (Some(b'b'), '\u{8}')
        | (Some(b'f'), '\u{c}') => ends.push(at + 2),
        _ => {}
    }
    ends
}

fn surrogate_pair(input: &[u8], at: usize, c: char) -> Option<usize> {
    // (Called for every character; only those outside the BMP can match.)
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
    fn log_lines_are_capped_in_bytes_and_the_cut_is_marked() {
        let mut short = "short".to_owned();
        cap_line(&mut short);
        assert_eq!(short, "short");
        let mut long = "é".repeat(MAX_LOG_LINE_BYTES);
        cap_line(&mut long);
        assert!(long.len() < MAX_LOG_LINE_BYTES + 40, "{}", long.len());
        assert!(long.ends_with(&format!(" [cut: {} more bytes]", MAX_LOG_LINE_BYTES)), "{}", &long[long.len() - 40..]);
    }

    #[test]
    fn empty_secrets_mask_nothing() {
        assert_eq!(Redactor::new([""]).redact("abc"), "abc");
        assert!(Redactor::new([""]).is_empty());
    }

    // How escapes were decided before `Escapes` (scanning the secret each time): the
    // reference the tables are held to.
    fn decodes_to_one_of_before(input: &[u8], at: usize, secret: &[char]) -> bool {
        fn hex_value(input: &[u8], at: usize, digits: usize) -> Option<u32> {
            let text = std::str::from_utf8(input.get(at..at + digits)?).ok()?;
            u32::from_str_radix(text, 16).ok().filter(|_| text.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        match input[at] {
            b'+' => secret.contains(&' '),
            b'%' => hex_value(input, at + 1, 2).is_some_and(|byte| {
                let mut buffer = [0u8; 4];
                secret.iter().any(|c| c.encode_utf8(&mut buffer).as_bytes().contains(&(byte as u8)))
            }),
            _ => match input.get(at + 1) {
                Some(b'u') => hex_value(input, at + 2, 4).is_some_and(|unit| {
                    (0xD800..0xE000).contains(&unit) && secret.iter().any(|c| *c as u32 >= 0x10000)
                        || char::from_u32(unit).is_some_and(|c| secret.contains(&c))
                }),
                Some(b'/') => secret.contains(&'/'),
                Some(b'"') => secret.contains(&'"'),
                Some(b'\\') => secret.contains(&'\\'),
                Some(b'n') => secret.contains(&'\n'),
                Some(b'r') => secret.contains(&'\r'),
                Some(b't') => secret.contains(&'\t'),
                Some(b'b') => secret.contains(&'\u{8}'),
                Some(b'f') => secret.contains(&'\u{c}'),
                _ => false,
            },
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Every escape is decided as before, for secrets and inputs made of the
        /// characters escapes stand for: the tables change the speed, not what is masked.
        #[test]
        fn escapes_are_decided_as_before(
            secret in proptest::collection::vec(proptest::sample::select(
                vec!['a', 'Z', '0', ' ', '%', '+', '/', '"', '\\', '\n', '\r', '\t', '\u{8}', '\u{c}', 'é', '€', '😀', 'u']), 0..6),
            pieces in proptest::collection::vec(proptest::sample::select(
                vec!["%", "+", "\\", "u", "00", "0a", "2F", "e9", "20", "41", "7a", "d83d", "DE00", "20ac", "n", "r", "t",
                     "b", "f", "/", "\"", "x", "G", "é", "😀", "\u{ff}"]), 0..24),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
        ) {
            let mut input = pieces.concat().into_bytes();
            input.extend_from_slice(&raw);
            let escapes = Escapes::of(&secret);
            for at in 0..input.len() {
                if matches!(input[at], b'%' | b'\\' | b'+') {
                    proptest::prop_assert_eq!(
                        decodes_to_one_of(&input, at, &secret, &escapes),
                        decodes_to_one_of_before(&input, at, &secret),
                        "at {} of {:?}, secret {:?}", at, String::from_utf8_lossy(&input), secret
                    );
                }
                for digits in [2, 4] {
                    let text = input.get(at..at + digits).and_then(|t| std::str::from_utf8(t).ok());
                    let before = text.and_then(|t| u32::from_str_radix(t, 16).ok().filter(|_| t.bytes().all(|b| b.is_ascii_hexdigit())));
                    proptest::prop_assert_eq!(hex_value(&input, at, digits), before);
                }
            }
        }
    }
}
