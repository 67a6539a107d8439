//! Cutting an OData page into its rows without parsing them: `fetch` hands a page
//! of 50,000 rows to the host in parts of whole rows, and only needs to know where
//! each row of `value` begins and ends, and the nextLink. Parsing the page with
//! serde_json for that tokenized every value of every row (about half of the fetch
//! stage's CPU); this scans the page's structure only: strings eight bytes at a
//! time, brackets and braces one at a time, nothing built.
//!
//! What the scan does not check, the mapping does: each part is parsed whole when
//! it is mapped, so a row that is not valid JSON still fails the run, there. A page
//! whose structure the scan cannot follow (not an object, no `value` list, a
//! repeated key, a truncated body, an escaped key) gets `None`, and the caller
//! parses it with serde_json for its exact error.

use std::ops::Range;

/// A page's rows and nextLink, as [`scan`] found them.
#[derive(Debug, PartialEq)]
pub struct ScannedPage {
    /// Where each element of `value` lies in the body.
    pub rows: Vec<Range<usize>>,
    pub next_link: Option<String>,
}

/// Scans `body` (an OData page: `{"value":[...], "@odata.nextLink":"..."}`, other
/// members skipped, a UTF-8 byte order mark allowed).
pub fn scan(body: &[u8]) -> Option<ScannedPage> {
    let mut s = Scanner { body, at: if body.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 } };
    s.expect(b'{')?;
    let (mut rows, mut next_link, mut seen_link) = (None, None, false);
    if s.peek()? == b'}' {
        s.at += 1;
    } else {
        loop {
            let key = s.key()?;
            s.expect(b':')?;
            match key {
                b"value" if rows.is_none() => rows = Some(s.array_elements()?),
                b"@odata.nextLink" | b"@odata.nextlink" if !seen_link => {
                    seen_link = true;
                    let value = s.value()?;
                    next_link = serde_json::from_slice::<Option<String>>(&body[value]).ok()?;
                }
                b"value" | b"@odata.nextLink" | b"@odata.nextlink" => return None,
                _ => {
                    s.value()?;
                }
            }
            match s.next_byte()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    // Nothing but whitespace after the page.
    s.skip_whitespace();
    (s.at == body.len()).then_some(ScannedPage { rows: rows?, next_link })
}

struct Scanner<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn skip_whitespace(&mut self) {
        while self.body.get(self.at).is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.body.get(self.at).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next_byte()? == byte).then_some(())
    }

    /// An object's key, without its quotes; `None` for one with an escape in it.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        self.string_rest()?;
        let key = &self.body[start..self.at - 1];
        (!key.contains(&b'\\')).then_some(key)
    }

    /// The elements of an array, each where it lies.
    fn array_elements(&mut self) -> Option<Vec<Range<usize>>> {
        self.expect(b'[')?;
        let mut elements = Vec::new();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(elements);
        }
        loop {
            elements.push(self.value()?);
            match self.next_byte()? {
                b',' => continue,
                b']' => return Some(elements),
                _ => return None,
            }
        }
    }

    /// Skips one value; where it lies.
    fn value(&mut self) -> Option<Range<usize>> {
        let start = match self.peek()? {
            b'"' => {
                let start = self.at;
                self.at += 1;
                self.string_rest()?;
                return Some(start..self.at);
            }
            b'{' | b'[' => {
                let start = self.at;
                self.nested()?;
                return Some(start..self.at);
            }
            _ => self.at,
        };
        // A number or a literal: up to the next delimiter.
        while self.body.get(self.at).is_some_and(|b| !matches!(b, b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
        (self.at > start).then_some(start..self.at)
    }

    /// Skips an object or array, from its opening bracket to its closing one.
    fn nested(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            let byte = *self.body.get(self.at)?;
            self.at += 1;
            match byte {
                b'"' => self.string_rest()?,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
                _ => {}
            }
        }
    }

    /// Skips the rest of a string whose opening quote was just read, through its
    /// closing quote: eight bytes at a time to the next `"` or `\`.
    fn string_rest(&mut self) -> Option<()> {
        loop {
            while let Some(word) = self.body.get(self.at..self.at + 8) {
                let found = quote_or_backslash(u64::from_le_bytes(word.try_into().expect("8 bytes")));
                if found != 0 {
                    self.at += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                self.at += 8;
            }
            match *self.body.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                // An escape: the byte after the backslash is never the string's end.
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }
}

/// The high bit of each byte of `word` (little-endian) that is `"` or `\`; the
/// lowest flagged byte is always a true one (the "has a zero byte" test's borrow
/// only runs upwards), and a word with neither gives 0.
fn quote_or_backslash(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    ((quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash)) & HIGH
}

#[cfg(test)]
mod tests {
    use super::{scan, ScannedPage};
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    /// What serde_json finds, as `fetch` used to read a page.
    fn parsed(body: &[u8]) -> Option<ScannedPage> {
        let page: crate::model::Page = serde_json::from_slice(crate::lenient::strip_bom(body)).ok()?;
        let base = body.as_ptr() as usize;
        let rows = page
            .value
            .iter()
            .map(|row: &&RawValue| {
                let start = row.get().as_ptr() as usize - base;
                start..start + row.get().len()
            })
            .collect();
        Some(ScannedPage { rows, next_link: page.next_link })
    }

    #[test]
    fn rows_and_the_next_link_are_where_serde_json_finds_them() {
        for body in [
            r#"{"@odata.context":"x","value":[{"a":1},{"b":"}]\"x"}],"@odata.nextLink":"https://h/api?$skip=2"}"#,
            r#"{"@odata.nextlink":"https:\/\/h\/next","value":[ 1 , "two" , [3,{"x":[]}] , null, true ]}"#,
            "\u{feff}{ \"value\" : [ ] }\n",
            r#"{"value":[{"deviceId":"d\\","cveId":"CVE-1"}],"@odata.nextLink":null}"#,
            r#"{"value":[{"k":"\u0022quoted\u0022 and \\\" and ünïcode ✓"}]}"#,
        ] {
            let found = scan(body.as_bytes());
            assert!(found.is_some(), "{body}");
            assert_eq!(found, parsed(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn what_the_scan_cannot_follow_is_left_to_serde_json() {
        for body in [
            "",
            "[]",
            r#"{"value":[1,"#,
            r#"{"value":[1,2]"#,
            r#"{"value":[1,2]} x"#,
            r#"{"value":[1],"value":[2]}"#,
            r#"{"other":1}"#,
            r#"{"val\u0075e":[1]}"#,
            r#"{"value":["unterminated]}"#,
            r#"{"value":[1,]}"#,
            r#"{"value":[1],"@odata.nextLink":5}"#,
        ] {
            assert_eq!(scan(body.as_bytes()), None, "{body}");
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e9f64..1e9).prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
            "[\"\\\\{}\\[\\]a-z ]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-zA-Z\"\\\\]{0,8}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_page_is_cut_where_serde_json_cuts_it(
            rows in proptest::collection::vec(json_value(), 0..8),
            other in json_value(),
            link in proptest::option::of(any::<String>()),
            pretty in any::<bool>(),
            link_first in any::<bool>(),
        ) {
            let json = |value: &serde_json::Value| {
                if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) }.unwrap()
            };
            let mut members = vec![
                format!("\"@odata.context\": {}", json(&other)),
                format!("\"value\":{}", json(&serde_json::Value::Array(rows))),
            ];
            let link = format!("\"@odata.nextLink\" :{}", json(&serde_json::json!(link)));
            if link_first { members.insert(0, link) } else { members.push(link) }
            let body = format!("{{{}}}", members.join(if pretty { ",\n  " } else { "," })).into_bytes();
            let expected = parsed(&body);
            prop_assert!(expected.is_some());
            prop_assert_eq!(scan(&body), expected);
        }
    }
}
