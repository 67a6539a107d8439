//! An external sort of vulnerability reports, so a run's memory does not grow with
//! its number of rows.
//!
//! Reports arrive in any order. They are kept as small fixed-size records (the asset
//! key and identifier interned to numbers) plus their details text, in a buffer that
//! is sorted and written to an anonymous temporary file whenever it passes its byte
//! budget. Reading merges the sorted runs (and what is still buffered) into one
//! stream ordered by asset key, then identifier: what the join needs to build each
//! asset's vulnerability list and hand it on, one asset at a time.

use crate::bindings::types::Datetime;
use anyhow::{Context, Result};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

/// The default buffer budget before a sorted run is written to disk.
pub const DEFAULT_BUFFER_BYTES: usize = 16 << 20;

/// Interns strings as dense numbers, in first-seen order.
///
/// A run interns every asset key (a tenant has hundreds of thousands), so the
/// strings live end to end in one buffer and the hash table holds only numbers:
/// about 50 bytes a 40-character key, against about 110 as separately allocated
/// strings in a `HashMap<Arc<str>, u32>`.
#[derive(Default)]
pub struct Interner {
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
    pub fn intern(&mut self, text: &str) -> u32 {
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

    pub fn get(&self, id: u32) -> &str {
        nth(&self.text, &self.ends, id)
    }

    /// The number of a string interned before, if it was.
    pub fn find(&self, text: &str) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(text), text)
    }

    fn find_hashed(&self, hash: u64, text: &str) -> Option<u32> {
        self.table.find(hash, |id| self.get(*id) == text).copied()
    }

    /// How many strings are interned.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each id's position in the sorted order of the strings.
    fn ranks(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.len() as u32).collect();
        ids.sort_unstable_by(|a, b| self.get(*a).cmp(self.get(*b)));
        let mut ranks = vec![0; ids.len()];
        for (rank, id) in ids.into_iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
        ranks
    }
}

/// One vulnerability report, as kept by the sorter.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub asset: u32,
    pub identifier: u32,
    pub score: u8,
    pub found: Option<Datetime>,
    pub last_seen: Option<Datetime>,
    pub details: Option<String>,
}

impl Report {
    /// What the report costs in the buffer, roughly.
    fn weight(&self) -> usize {
        std::mem::size_of::<Report>() + self.details.as_ref().map_or(0, String::capacity)
    }
}

/// Orders reports by asset key, then identifier (the strings, not the numbers, so
/// that output order does not depend on arrival order).
#[derive(Clone, Copy)]
pub struct ReportOrder<'a> {
    pub assets: &'a Interner,
    pub identifiers: &'a Interner,
}

impl ReportOrder<'_> {
    pub fn cmp(&self, a: &Report, b: &Report) -> Ordering {
        let asset =
            if a.asset == b.asset { Ordering::Equal } else { self.assets.get(a.asset).cmp(self.assets.get(b.asset)) };
        asset.then_with(|| {
            if a.identifier == b.identifier {
                Ordering::Equal
            } else {
                self.identifiers.get(a.identifier).cmp(self.identifiers.get(b.identifier))
            }
        })
    }
}

/// The string order of every interned asset key and identifier, as numbers: once
/// all keys are known (when the join starts), reports compare by two integers
/// instead of two strings. Consistent with [`ReportOrder`], so runs sorted by it
/// merge correctly by rank.
#[derive(Debug)]
pub struct Ranks {
    assets: Vec<u32>,
    identifiers: Vec<u32>,
}

impl Ranks {
    pub fn new(assets: &Interner, identifiers: &Interner) -> Ranks {
        Ranks { assets: assets.ranks(), identifiers: identifiers.ranks() }
    }

    /// The rank of an interned asset key.
    pub fn asset(&self, id: u32) -> u32 {
        self.assets[id as usize]
    }

    /// Each interned identifier's rank, by identifier number.
    pub fn identifiers(&self) -> &[u32] {
        &self.identifiers
    }

    /// A report's place in the order: asset key, then identifier.
    pub fn key(&self, report: &Report) -> u64 {
        (u64::from(self.assets[report.asset as usize]) << 32) | u64::from(self.identifiers[report.identifier as usize])
    }
}

/// Reports buffered in memory and spilled to sorted runs on disk.
#[derive(Debug)]
pub struct Sorter {
    buffer: Vec<Report>,
    buffered_bytes: usize,
    budget: usize,
    runs: Vec<File>,
    /// Reports written to disk, for the run summary and tests.
    pub spilled: u64,
}

impl Default for Sorter {
    fn default() -> Self {
        Sorter::with_budget(DEFAULT_BUFFER_BYTES)
    }
}

impl Sorter {
    pub fn with_budget(budget: usize) -> Self {
        Sorter { buffer: Vec::new(), buffered_bytes: 0, budget: budget.max(1), runs: Vec::new(), spilled: 0 }
    }

    /// Adds a report; writes a sorted run when the buffer is over its budget.
    pub fn push(&mut self, report: Report, order: ReportOrder) -> Result<()> {
        self.buffered_bytes += report.weight();
        self.buffer.push(report);
        if self.buffered_bytes >= self.budget {
            self.spill(order)?;
        }
        Ok(())
    }

    fn spill(&mut self, order: ReportOrder) -> Result<()> {
        self.buffer.sort_unstable_by(|a, b| order.cmp(a, b));
        let file = tempfile::tempfile().context("cannot create a temporary file to sort vulnerabilities on disk")?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for report in self.buffer.drain(..) {
            encode(&report, &mut out)?;
            self.spilled += 1;
        }
        let mut file = out.into_inner().map_err(|e| e.into_error()).context("cannot write sorted vulnerabilities")?;
        file.rewind()?;
        self.runs.push(file);
        self.buffered_bytes = 0;
        Ok(())
    }

    /// Every report, merged into one stream in the order of `ranks` (which must
    /// know every key pushed).
    pub fn into_sorted(mut self, ranks: Ranks) -> Result<Merged> {
        self.buffer.sort_unstable_by_key(|r| ranks.key(r));
        let mut sources: Vec<Source> = Vec::with_capacity(self.runs.len() + 1);
        for file in self.runs {
            sources.push(Source::Run(BufReader::with_capacity(RUN_READ_BUFFER, file)));
        }
        sources.push(Source::Memory(std::mem::take(&mut self.buffer).into_iter()));
        let mut merged = Merged { heads: Vec::with_capacity(sources.len()), queue: BinaryHeap::new(), sources, ranks };
        for index in 0..merged.sources.len() {
            merged.heads.push(None);
            merged.refill(index)?;
        }
        Ok(merged)
    }
}

/// Read buffer of each sorted run while merging: runs are many at 10 million rows.
const RUN_READ_BUFFER: usize = 64 << 10;

enum Source {
    Run(BufReader<File>),
    Memory(std::vec::IntoIter<Report>),
}

impl Source {
    fn next(&mut self) -> Result<Option<Report>> {
        match self {
            Source::Run(reader) => decode(reader),
            Source::Memory(reports) => Ok(reports.next()),
        }
    }
}

/// The merged stream of every report, in order.
pub struct Merged {
    sources: Vec<Source>,
    /// The next report of each source, while it has one.
    heads: Vec<Option<Report>>,
    /// Sources with a report left, by the rank of that report (lowest first; the
    /// lower source on a tie).
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    ranks: Ranks,
}

impl Merged {
    /// The next report, or `None` after the last.
    pub fn next_report(&mut self) -> Result<Option<Report>> {
        let Some(Reverse((_, source))) = self.queue.pop() else { return Ok(None) };
        let report = self.heads[source].take().expect("a queued source has a head");
        self.refill(source)?;
        Ok(Some(report))
    }

    /// The order the stream is in.
    pub fn ranks(&self) -> &Ranks {
        &self.ranks
    }

    fn refill(&mut self, source: usize) -> Result<()> {
        if let Some(report) = self.sources[source].next()? {
            self.queue.push(Reverse((self.ranks.key(&report), source)));
            self.heads[source] = Some(report);
        }
        Ok(())
    }
}

/// Records appended as bytes and read back by position: in memory up to a budget,
/// then in an anonymous temporary file, so that what a run keeps per record is a
/// position, not the record.
#[derive(Debug)]
pub struct ByteLog {
    memory: Vec<u8>,
    budget: usize,
    file: Option<BufWriter<File>>,
    /// Bytes appended so far (the next record's position).
    len: u64,
}

/// Where [`ByteLog::append`] put a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    at: u64,
    len: u32,
}

impl Default for ByteLog {
    fn default() -> Self {
        ByteLog::with_budget(DEFAULT_LOG_BYTES)
    }
}

/// What a [`ByteLog`] keeps in memory before it moves to disk.
pub const DEFAULT_LOG_BYTES: usize = 8 << 20;

impl ByteLog {
    pub fn with_budget(budget: usize) -> Self {
        ByteLog { memory: Vec::new(), budget, file: None, len: 0 }
    }

    pub fn append(&mut self, bytes: &[u8]) -> Result<Span> {
        let span = Span { at: self.len, len: u32::try_from(bytes.len()).context("a record over 4 GiB")? };
        match &mut self.file {
            Some(file) => file.write_all(bytes).context("cannot write to a temporary file")?,
            None if self.memory.len() + bytes.len() > self.budget => {
                let file = tempfile::tempfile().context("cannot create a temporary file to keep records on disk")?;
                let mut file = BufWriter::with_capacity(1 << 20, file);
                file.write_all(&self.memory).context("cannot write to a temporary file")?;
                file.write_all(bytes).context("cannot write to a temporary file")?;
                self.memory = Vec::new();
                self.file = Some(file);
            }
            None => self.memory.extend_from_slice(bytes),
        }
        self.len += bytes.len() as u64;
        Ok(span)
    }

    /// Whether the records went to disk.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Done appending: the log, ready to read.
    pub fn into_reader(self) -> Result<LogReader> {
        Ok(match self.file {
            Some(file) => LogReader::File(
                file.into_inner().map_err(|e| e.into_error()).context("cannot write to a temporary file")?,
            ),
            None => LogReader::Memory(self.memory),
        })
    }
}

/// Reads the records of a [`ByteLog`].
pub enum LogReader {
    Memory(Vec<u8>),
    File(File),
}

impl LogReader {
    /// The record at `span`, into `buffer` (replacing its contents).
    pub fn read(&mut self, span: Span, buffer: &mut Vec<u8>) -> Result<()> {
        buffer.clear();
        match self {
            LogReader::Memory(bytes) => {
                buffer.extend_from_slice(&bytes[span.at as usize..span.at as usize + span.len as usize])
            }
            LogReader::File(file) => {
                buffer.resize(span.len as usize, 0);
                file.seek(std::io::SeekFrom::Start(span.at)).context("cannot read a temporary file")?;
                file.read_exact(buffer).context("cannot read a temporary file")?;
            }
        }
        Ok(())
    }
}

// Runs are a private, short-lived format: fields in order, little-endian, with a
// flags byte for the options.
const HAS_FOUND: u8 = 1;
const HAS_LAST_SEEN: u8 = 2;
const HAS_DETAILS: u8 = 4;

fn encode(r: &Report, out: &mut impl Write) -> Result<()> {
    let flags = if r.found.is_some() { HAS_FOUND } else { 0 }
        | if r.last_seen.is_some() { HAS_LAST_SEEN } else { 0 }
        | if r.details.is_some() { HAS_DETAILS } else { 0 };
    out.write_all(&r.asset.to_le_bytes())?;
    out.write_all(&r.identifier.to_le_bytes())?;
    out.write_all(&[r.score, flags])?;
    for t in [&r.found, &r.last_seen].into_iter().flatten() {
        out.write_all(&t.seconds.to_le_bytes())?;
        out.write_all(&t.nanoseconds.to_le_bytes())?;
    }
    if let Some(details) = &r.details {
        out.write_all(&u32::try_from(details.len()).unwrap_or(u32::MAX).to_le_bytes())?;
        out.write_all(&details.as_bytes()[..details.len().min(u32::MAX as usize)])?;
    }
    Ok(())
}

fn decode(input: &mut impl Read) -> Result<Option<Report>> {
    let mut head = [0u8; 10];
    match input.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("cannot read sorted vulnerabilities back"),
    }
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let (score, flags) = (head[8], head[9]);
    let mut time = |present: bool| -> Result<Option<Datetime>> {
        if !present {
            return Ok(None);
        }
        let mut b = [0u8; 12];
        input.read_exact(&mut b)?;
        Ok(Some(Datetime {
            seconds: i64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            nanoseconds: u32_at(&b, 8),
        }))
    };
    let found = time(flags & HAS_FOUND != 0)?;
    let last_seen = time(flags & HAS_LAST_SEEN != 0)?;
    let details = if flags & HAS_DETAILS != 0 {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        input.read_exact(&mut bytes)?;
        Some(String::from_utf8(bytes).context("corrupt sorted vulnerabilities")?)
    } else {
        None
    };
    Ok(Some(Report { asset: u32_at(&head, 0), identifier: u32_at(&head, 4), score, found, last_seen, details }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_log_gives_every_record_back_in_memory_and_after_moving_to_disk() {
        let records: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i) * 3]).collect();
        for budget in [1 << 20, 100] {
            let mut log = ByteLog::with_budget(budget);
            let spans: Vec<Span> = records.iter().map(|r| log.append(r).unwrap()).collect();
            assert_eq!(log.on_disk(), budget == 100, "only the small budget moves to disk");
            let mut reader = log.into_reader().unwrap();
            let mut buffer = Vec::new();
            // Read out of order, as the join does (by key, not by arrival).
            for i in (0..records.len()).rev() {
                reader.read(spans[i], &mut buffer).unwrap();
                assert_eq!(buffer, records[i], "record {i} with budget {budget}");
            }
        }
    }

    #[test]
    fn reports_come_back_in_key_order_across_runs_and_the_buffer() {
        let (mut assets, mut identifiers) = (Interner::default(), Interner::default());
        let mut sorter = Sorter::with_budget(300);
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let asset = assets.intern(&format!("device-{:03}", (i * 37) % 50));
            let identifier = identifiers.intern(&format!("CVE-{}", (i * 11) % 23));
            let report = Report {
                asset,
                identifier,
                score: (i % 11) as u8,
                found: (i % 3 == 0).then_some(Datetime { seconds: -(i as i64), nanoseconds: i }),
                last_seen: (i % 4 == 0).then_some(Datetime { seconds: i as i64 * 1000, nanoseconds: 0 }),
                details: (i % 2 == 0).then(|| format!("détails {i}")),
            };
            expected.push(report.clone());
            sorter.push(report, ReportOrder { assets: &assets, identifiers: &identifiers }).unwrap();
        }
        assert!(sorter.runs.len() > 3, "the small budget made several runs");
        let mut merged = sorter.into_sorted(Ranks::new(&assets, &identifiers)).unwrap();
        let mut got = Vec::new();
        while let Some(r) = merged.next_report().unwrap() {
            got.push(r);
        }
        let key = |r: &Report| (assets.get(r.asset).to_owned(), identifiers.get(r.identifier).to_owned());
        assert!(got.windows(2).all(|w| key(&w[0]) <= key(&w[1])), "sorted by asset key, then identifier");
        let canonical = |v: &mut Vec<Report>| v.sort_by_key(|r| (key(r), format!("{r:?}")));
        canonical(&mut expected);
        canonical(&mut got);
        assert_eq!(got, expected, "every report comes back intact");
    }
}
