//! An external sort of vulnerability reports, so a run's memory does not grow with
//! its number of rows.
//!
//! Reports arrive in any order. They are kept as small fixed-size records (the asset
//! key and identifier interned to numbers) plus their details text, in a buffer that
//! is sorted and written to an anonymous temporary file whenever it passes its byte
//! budget. Reading merges the sorted runs (and what is still buffered) into one
//! stream ordered by asset key, then identifier: what the join needs to build each
//! asset's vulnerability list and hand it on, one asset at a time.

use super::interner::Interner;
use crate::bindings::types::Datetime;
use anyhow::{Context, Result};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

/// The default buffer budget before a sorted run is written to disk.
pub(crate) const DEFAULT_BUFFER_BYTES: usize = 16 << 20;
/// One vulnerability report, as kept by the sorter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    pub(crate) asset: u32,
    pub(crate) identifier: u32,
    pub(crate) score: u8,
    pub(crate) found: Option<Datetime>,
    pub(crate) last_seen: Option<Datetime>,
    pub(crate) details: Option<String>,
    /// When the source saw it fixed; `None`: open.
    pub(crate) fixed: Option<Datetime>,
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
pub(crate) struct ReportOrder<'a> {
    pub(crate) assets: &'a Interner,
    pub(crate) identifiers: &'a Interner,
}

impl ReportOrder<'_> {
    pub(crate) fn cmp(&self, a: &Report, b: &Report) -> Ordering {
        self.assets.cmp(a.asset, b.asset).then_with(|| self.identifiers.cmp(a.identifier, b.identifier))
    }
}

/// The string order of every interned asset key and identifier, as numbers: once
/// all keys are known (when the join starts), reports compare by two integers
/// instead of two strings. Consistent with [`ReportOrder`], so runs sorted by it
/// merge correctly by rank.
#[derive(Debug)]
pub(crate) struct Ranks {
    assets: Vec<u32>,
    identifiers: Vec<u32>,
}

impl Ranks {
    pub(crate) fn new(assets: &Interner, identifiers: &Interner) -> Ranks {
        Ranks { assets: assets.ranks(), identifiers: identifiers.ranks() }
    }

    /// The rank of an interned asset key.
    pub(crate) fn asset(&self, id: u32) -> u32 {
        self.assets[id as usize]
    }

    /// Each interned identifier's rank, by identifier number.
    pub(crate) fn identifiers(&self) -> &[u32] {
        &self.identifiers
    }

    /// A report's place in the order: asset key, then identifier.
    pub(crate) fn key(&self, report: &Report) -> u64 {
        (u64::from(self.assets[report.asset as usize]) << 32) | u64::from(self.identifiers[report.identifier as usize])
    }
}

/// Reports buffered in memory and spilled to sorted runs on disk.
#[derive(Debug)]
pub(crate) struct Sorter {
    buffer: Vec<Report>,
    buffered_bytes: usize,
    budget: usize,
    runs: Vec<File>,
    /// Reports written to disk, for the run summary and tests.
    pub(crate) spilled: u64,
}

impl Default for Sorter {
    fn default() -> Self {
        Sorter::with_budget(DEFAULT_BUFFER_BYTES)
    }
}

impl Sorter {
    pub(crate) fn with_budget(budget: usize) -> Self {
        Sorter { buffer: Vec::new(), buffered_bytes: 0, budget: budget.max(1), runs: Vec::new(), spilled: 0 }
    }

    /// Adds a report; writes a sorted run when the buffer is over its budget.
    pub(crate) fn push(&mut self, report: Report, order: ReportOrder) -> Result<()> {
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
    pub(crate) fn into_sorted(mut self, ranks: Ranks) -> Result<Merged> {
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
pub(crate) struct Merged {
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
    pub(crate) fn next_report(&mut self) -> Result<Option<Report>> {
        let Some(Reverse((_, source))) = self.queue.pop() else { return Ok(None) };
        let report = self.heads[source].take().expect("a queued source has a head");
        self.refill(source)?;
        Ok(Some(report))
    }

    /// The order the stream is in.
    pub(crate) fn ranks(&self) -> &Ranks {
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

// Runs are a private, short-lived format: fields in order, little-endian, with a
// flags byte for the options.
const HAS_FOUND: u8 = 1;
const HAS_LAST_SEEN: u8 = 2;
const HAS_DETAILS: u8 = 4;
const HAS_FIXED: u8 = 8;

fn encode(r: &Report, out: &mut impl Write) -> Result<()> {
    let flags = if r.found.is_some() { HAS_FOUND } else { 0 }
        | if r.last_seen.is_some() { HAS_LAST_SEEN } else { 0 }
        | if r.details.is_some() { HAS_DETAILS } else { 0 }
        | if r.fixed.is_some() { HAS_FIXED } else { 0 };
    out.write_all(&r.asset.to_le_bytes())?;
    out.write_all(&r.identifier.to_le_bytes())?;
    out.write_all(&[r.score, flags])?;
    for t in [&r.found, &r.last_seen, &r.fixed].into_iter().flatten() {
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
    let fixed = time(flags & HAS_FIXED != 0)?;
    let details = if flags & HAS_DETAILS != 0 {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        input.read_exact(&mut bytes)?;
        Some(String::from_utf8(bytes).context("corrupt sorted vulnerabilities")?)
    } else {
        None
    };
    Ok(Some(Report { asset: u32_at(&head, 0), identifier: u32_at(&head, 4), score, found, last_seen, details, fixed }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                fixed: (i % 5 == 0).then_some(Datetime { seconds: i as i64 * 7, nanoseconds: 1 }),
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
