//! An asset's vulnerabilities written as KDI JSON by hand. They are nearly all of a
//! run's output, and serde_json's string escaping (a table lookup for every byte)
//! was half the time of serializing them; here a string is scanned eight bytes at a
//! time. The bytes are exactly those serde_json writes: the tests hold them to it.

use super::Iso;
use crate::run::join::MergedVulnerability;

/// What every vulnerability of a run shares, prepared once.
pub(super) struct VulnerabilityText {
    /// `"scanner_type":"…"` with its value escaped.
    scanner_type: Vec<u8>,
    /// `last_seen_at` of a vulnerability the source gave no time for, escaped.
    run_started: Vec<u8>,
}

impl VulnerabilityText {
    pub(super) fn new(scanner_type: &str, run_started: &str) -> VulnerabilityText {
        let mut field = br#","scanner_type":""#.to_vec();
        escaped(&mut field, scanner_type);
        field.push(b'"');
        let mut started = vec![b'"'];
        escaped(&mut started, run_started);
        started.push(b'"');
        VulnerabilityText { scanner_type: field, run_started: started }
    }

    /// Appends one vulnerability as a KDI object; `name` is its `vuln_def_name`.
    pub(super) fn write(&self, out: &mut Vec<u8>, v: &MergedVulnerability, name: &str) {
        out.extend_from_slice(br#"{"scanner_identifier":""#);
        escaped(out, &v.identifier);
        out.push(b'"');
        out.extend_from_slice(&self.scanner_type);
        out.extend_from_slice(br#","vuln_def_name":""#);
        escaped(out, name);
        out.extend_from_slice(br#"","scanner_score":"#);
        let score = v.score.min(10);
        if score == 10 {
            out.extend_from_slice(b"10");
        } else {
            out.push(b'0' + score);
        }
        out.extend_from_slice(match v.fixed {
            Some(_) => br#","status":"closed""#.as_slice(),
            None => br#","status":"open""#.as_slice(),
        });
        if let Some(fixed) = v.fixed {
            out.extend_from_slice(br#","closed_at":"#);
            time(out, Iso(fixed));
        }
        if let Some(found) = v.found {
            out.extend_from_slice(br#","created_at":"#);
            time(out, Iso(found));
        }
        out.extend_from_slice(br#","last_seen_at":"#);
        match v.last_seen {
            Some(seen) => time(out, Iso(seen)),
            None => out.extend_from_slice(&self.run_started),
        }
        if !v.details.is_empty() {
            // The distinct details of the merged reports, separated by blank lines.
            out.extend_from_slice(br#","details":""#);
            for (i, text) in v.details.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(br"\n\n");
                }
                escaped(out, text);
            }
            out.push(b'"');
        }
        out.push(b'}');
    }
}

/// A time as a JSON string, as [`super::iso`] writes it.
fn time(out: &mut Vec<u8>, t: Iso) {
    out.push(b'"');
    match t.digits() {
        Some((buffer, len)) => out.extend_from_slice(&buffer[..len]),
        None => escaped(out, &super::iso(&t.0)),
    }
    out.push(b'"');
}

/// Appends `text` as the inside of a JSON string, escaped as serde_json escapes:
/// `"` and `\` with a backslash, the five control characters that have one as
/// `\b \t \n \f \r`, the others as `\u00xx`; everything else as it is.
pub(super) fn escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        if let Some(word) = bytes.get(at..at + 8) {
            match escapes(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
                0 => {
                    at += 8;
                    continue;
                }
                // Straight to the first byte that needs escaping.
                found => at += found.trailing_zeros() as usize / 8,
            }
        }
        let byte = bytes[at];
        let short: Option<&[u8]> = match byte {
            b'"' => Some(br#"\""#),
            b'\\' => Some(br"\\"),
            b'\n' => Some(br"\n"),
            b'\r' => Some(br"\r"),
            b'\t' => Some(br"\t"),
            0x08 => Some(br"\b"),
            0x0c => Some(br"\f"),
            0..=0x1f => None,
            _ => {
                at += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..at]);
        match short {
            Some(escape) => out.extend_from_slice(escape),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(br"\u00");
                out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
            }
        }
        at += 1;
        start = at;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The high bit of each of the eight bytes (read little-endian) that is below 0x20,
/// `"` or `\`; 0 if none is. The lowest bit set is always right: a byte can only be
/// flagged wrongly above one that is rightly flagged (the borrow of a subtraction
/// moves up from it), and bytes from 0x80 up never are.
fn escapes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH;
    let equal = |byte: u8| {
        let v = word ^ (ONES * u64::from(byte));
        v.wrapping_sub(ONES) & !v & HIGH
    };
    below(0x20) | equal(b'"') | equal(b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain ascii, longer than eight bytes".into(),
            "Software: google chrome 22.71936.11\nSeverity: Critical (CVSS 3.6)\r\n\ttabbed".into(),
            r#"quote " and backslash \ and both \" at once"#.into(),
            "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f} control characters".into(),
            "élan, 東京, emoji 🦀, and U+2028 \u{2028} stay as they are".into(),
            "1234567\"".into(),
            "12345678\\".into(),
            "\"".repeat(17),
        ];
        // Every byte that can start or sit in a string, at every offset of a word.
        for byte in 0..=255u8 {
            for offset in 0..9 {
                samples.push(format!("{}{}tail of the string", "x".repeat(offset), char::from(byte)));
            }
        }
        for text in &samples {
            let mut out = vec![b'"'];
            escaped(&mut out, text);
            out.push(b'"');
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn the_word_test_finds_the_first_byte_that_needs_escaping() {
        let needs = |byte: u8| byte < 0x20 || byte == b'"' || byte == b'\\';
        for byte in 0..=255u8 {
            for position in 0..8 {
                let mut word = [b'a'; 8];
                word[position] = byte;
                let found = escapes(u64::from_le_bytes(word));
                assert_eq!(found != 0, needs(byte), "byte {byte:#x} at {position}");
                if needs(byte) {
                    assert_eq!(found.trailing_zeros() as usize / 8, position, "byte {byte:#x}");
                }
                // Whatever follows a byte that needs escaping, the first is found.
                for later in 0..=255u8 {
                    if position < 7 && needs(byte) {
                        word[position + 1] = later;
                        assert_eq!(escapes(u64::from_le_bytes(word)).trailing_zeros() as usize / 8, position);
                    }
                }
            }
        }
    }
}
