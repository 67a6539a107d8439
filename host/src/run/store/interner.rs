//! Strings as dense numbers: the run's asset keys and vulnerability identifiers.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// Interns strings as dense numbers, in first-seen order.
///
/// A run interns every asset key (a tenant has hundreds of thousands), so the
/// strings live end to end in one buffer and the hash table holds only numbers:
/// about 60 bytes a 40-character key, against about 110 as separately allocated
/// strings in a `HashMap<Arc<str>, u32>`.
#[derive(Default)]
pub(crate) struct Interner {
    /// Every string, one after another.
    text: String,
    /// Where each string ends in `text`, by number (it starts where the last ends).
    ends: Vec<usize>,
    /// Each string's first eight bytes as a big-endian number (zero-padded), by
    /// number: sorting a run's reports compares keys millions of times, and these
    /// settle almost every comparison without reaching into `text`, whose strings
    /// are scattered far beyond the processor's caches.
    prefixes: Vec<u64>,
    /// The numbers, found by the hash of their string.
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner").field("strings", &self.ends.len()).finish()
    }
}

/// A string's first eight bytes as a number that orders as the strings do.
fn prefix(text: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let head = &text.as_bytes()[..text.len().min(8)];
    bytes[..head.len()].copy_from_slice(head);
    u64::from_be_bytes(bytes)
}

/// The string numbered `id` in an interner's buffer.
fn nth<'a>(text: &'a str, ends: &[usize], id: u32) -> &'a str {
    let id = id as usize;
    let start = if id == 0 { 0 } else { ends[id - 1] };
    &text[start..ends[id]]
}

impl Interner {
    pub(crate) fn intern(&mut self, text: &str) -> u32 {
        let hash = self.hasher.hash_one(text);
        if let Some(id) = self.find_hashed(hash, text) {
            return id;
        }
        let id = u32::try_from(self.ends.len()).expect("fewer than 4 billion distinct keys");
        self.text.push_str(text);
        self.ends.push(self.text.len());
        self.prefixes.push(prefix(text));
        let (buffer, ends, hasher) = (&self.text, &self.ends, &self.hasher);
        self.table.insert_unique(hash, id, |id| hasher.hash_one(nth(buffer, ends, *id)));
        id
    }

    pub(crate) fn get(&self, id: u32) -> &str {
        nth(&self.text, &self.ends, id)
    }

    /// Orders two interned strings as `str` does: by their first eight bytes, and
    /// only when those are equal by the whole strings. (Where the prefixes differ,
    /// the first byte that differs is inside one string at least, and a string that
    /// ended there pads with 0, below any byte the other has.)
    pub(crate) fn cmp(&self, a: u32, b: u32) -> std::cmp::Ordering {
        if a == b {
            return std::cmp::Ordering::Equal;
        }
        self.prefixes[a as usize].cmp(&self.prefixes[b as usize]).then_with(|| self.get(a).cmp(self.get(b)))
    }

    /// The number of a string interned before, if it was.
    pub(crate) fn find(&self, text: &str) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(text), text)
    }

    fn find_hashed(&self, hash: u64, text: &str) -> Option<u32> {
        self.table.find(hash, |id| self.get(*id) == text).copied()
    }

    /// How many strings are interned.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Each id's position in the sorted order of the strings.
    pub(crate) fn ranks(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.len() as u32).collect();
        ids.sort_unstable_by(|a, b| self.cmp(*a, *b));
        let mut ranks = vec![0; ids.len()];
        for (rank, id) in ids.into_iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
        ranks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_strings_compare_as_str_does_whatever_their_prefixes() {
        let mut strings: Vec<String> = [
            "",
            "a",
            "ab",
            "ab\0",
            "ab\0\0\0\0\0\0",
            "ab\0\0\0\0\0\0x",
            "abcdefgh",
            "abcdefg",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefghh",
            "abcdefgi",
            "CVE-2024-1000",
            "CVE-2024-999",
            "CVE-2024-10000",
            "élan",
            "e\u{301}lan",
            "\u{10ffff}",
            "\u{7f}",
            "ÿÿÿÿÿÿÿÿ",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        // And a spread of machine-id-like keys sharing long prefixes.
        let mut seed = 7u64;
        for _ in 0..200 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let shared = (seed >> 60) as usize;
            strings.push(format!("{}{:x}", "0".repeat(shared), seed >> 8));
        }
        let mut interner = Interner::default();
        let ids: Vec<u32> = strings.iter().map(|s| interner.intern(s)).collect();
        for (a, sa) in ids.iter().zip(&strings) {
            for (b, sb) in ids.iter().zip(&strings) {
                assert_eq!(interner.cmp(*a, *b), sa.as_str().cmp(sb.as_str()), "{sa:?} against {sb:?}");
            }
        }
        let ranks = interner.ranks();
        let mut sorted = strings.clone();
        sorted.sort();
        for (id, s) in ids.iter().zip(&strings) {
            assert_eq!(&sorted[ranks[*id as usize] as usize], s, "rank of {s:?}");
        }
    }
}
