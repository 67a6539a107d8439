//! Strings as dense numbers: the run's asset keys and vulnerability identifiers.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// Interns strings as dense numbers, in first-seen order.
///
/// A run interns every asset key (a tenant has hundreds of thousands), so the
/// strings live end to end in one buffer and the hash table holds only numbers:
/// about 50 bytes a 40-character key, against about 110 as separately allocated
/// strings in a `HashMap<Arc<str>, u32>`.
#[derive(Default)]
pub(crate) struct Interner {
    /// Every string, one after another.
    text: String,
    /// Where each string ends in `text`, by number (it starts where the last ends).
    ends: Vec<usize>,
    /// The numbers, found by the hash of their string.
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner").field("strings", &self.ends.len()).finish()
    }
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
        let (buffer, ends, hasher) = (&self.text, &self.ends, &self.hasher);
        self.table.insert_unique(hash, id, |id| hasher.hash_one(nth(buffer, ends, *id)));
        id
    }

    pub(crate) fn get(&self, id: u32) -> &str {
        nth(&self.text, &self.ends, id)
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
        ids.sort_unstable_by(|a, b| self.get(*a).cmp(self.get(*b)));
        let mut ranks = vec![0; ids.len()];
        for (rank, id) in ids.into_iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
        ranks
    }
}
