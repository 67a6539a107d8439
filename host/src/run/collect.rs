//! Collecting a run's records as the plugin emits them, on a thread of their own.
//!
//! The plugin's `output` capability hands records to the run's [`RunOutput`]; a
//! collector thread keeps them ([`Collector`]): assets encoded in a log that moves to
//! disk, vulnerabilities interned and sorted in runs on disk, definitions and
//! counters in memory. When the run has fetched and mapped everything,
//! [`Collector::finish`] hands the records to the join.

use super::join::{key, AssetStream, Catalog, Joined};
use super::store::asset_codec;
use super::store::byte_log::{ByteLog, Span};
use super::store::external_sort::{Ranks, Report, ReportOrder, Sorter};
use super::store::interner::Interner;
use crate::bindings::types::{Asset, Datetime, Vulnerability, VulnerabilityDefinition};
use crate::capability::records::{BatchedVulnerability, Message, RecordSink, VulnerabilityBatch};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The counter of asset reports merged into an earlier, different report of the same
/// key (an identical report changes nothing and is not counted).
pub(crate) const DUPLICATE_ASSETS: &str = "duplicate asset reports merged (latest last seen kept)";

/// The skip reason for assets CVM could not match: no locator at all.
pub(crate) const NO_LOCATOR: &str = "asset without any locator (CVM cannot match it)";

/// The skip reason for assets located by URL alone: CVM needs `application` with `url`.
pub(crate) const URL_WITHOUT_APPLICATION: &str = "asset located by url without an application (CVM needs both)";

/// Why CVM would reject an asset's locators, if it would. Blank values count as absent.
fn locator_problem(asset: &Asset) -> Option<&'static str> {
    let l = &asset.locators;
    let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    if l.standalone().into_iter().any(present) {
        return None;
    }
    match (present(&l.url), present(&l.application)) {
        (true, true) => None,
        (true, false) => Some(URL_WITHOUT_APPLICATION),
        _ => Some(NO_LOCATOR),
    }
}

/// The most distinct counter names (and as many skip reasons) a run keeps; a
/// plugin that makes up more has the rest added under [`OTHER_NAMES`].
pub(crate) const MAX_NAMES: usize = 1_000;

/// Where counts under names past [`MAX_NAMES`] go.
pub(crate) const OTHER_NAMES: &str = "other (the plugin used more names than the host keeps)";

/// Adds to a named count: saturating (a plugin cannot wrap it around), and within
/// [`MAX_NAMES`] names.
fn bump(counts: &mut BTreeMap<String, u64>, name: String, delta: u64) {
    let name = if counts.len() >= MAX_NAMES && !counts.contains_key(&name) { OTHER_NAMES.to_owned() } else { name };
    let count = counts.entry(name).or_default();
    *count = count.saturating_add(delta);
}

/// An asset as the collector keeps it: where its encoding is, and what
/// deduplication compares.
#[derive(Debug)]
struct StoredAsset {
    last_seen: Option<Datetime>,
    span: Span,
    /// A hash of the encoding: a report identical to the kept one changes nothing.
    hash: u64,
}

/// A fixed-key hash of an asset's encoding (the same bytes, the same hash).
fn encoding_hash(encoded: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    encoded.hash(&mut hasher);
    hasher.finish()
}

/// A run's records, shared by the run's sessions.
///
/// The records go to a collector thread: interning, sorting and spilling them to
/// disk then runs beside the plugin instead of between its calls, on the core the
/// fetching instance leaves mostly idle. Messages keep their order, and a few
/// batches at most are in flight, so memory stays bounded.
#[derive(Clone, Default)]
pub(crate) struct RunOutput(Arc<Mutex<Shared>>);

#[derive(Default)]
struct Shared {
    /// Records emitted so far, counted against the run's limit.
    emitted: u64,
    /// Bytes of text emitted so far, counted against the run's limit.
    emitted_bytes: u64,
    /// What the collector may keep ([`Collector::with_limit`]); 0: no limit.
    temp_disk_bytes: u64,
    /// The collector thread, started by the first record.
    worker: Option<Worker>,
}

struct Worker {
    messages: SyncSender<Message>,
    thread: JoinHandle<Collector>,
}

/// Batches waiting for the collector thread (each up to the SDK's 5,000 records).
const BATCHES_IN_FLIGHT: usize = 4;

impl RunOutput {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the count half-updated in a
        // way that matters more than the panic itself.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A run's output whose records may take at most `temp_disk_bytes` to keep.
    pub(crate) fn new(temp_disk_bytes: u64) -> Self {
        let output = RunOutput::default();
        output.lock().temp_disk_bytes = temp_disk_bytes;
        output
    }

    /// Adds `count` records of `bytes` of text to those the run emitted; returns the
    /// new totals.
    fn count(&self, count: u64, bytes: u64) -> (u64, u64) {
        let mut shared = self.lock();
        shared.emitted = shared.emitted.saturating_add(count);
        shared.emitted_bytes = shared.emitted_bytes.saturating_add(bytes);
        (shared.emitted, shared.emitted_bytes)
    }

    fn start_or_send(&self, message: Message) -> std::io::Result<()> {
        let mut shared = self.lock();
        if shared.worker.is_none() {
            let (messages, received) = sync_channel::<Message>(BATCHES_IN_FLIGHT);
            let temp_disk_bytes = shared.temp_disk_bytes;
            let thread = std::thread::Builder::new().name("collector".into()).spawn(move || {
                let mut collector = Collector::default().with_limit(temp_disk_bytes);
                let started = crate::limits::thread_cpu_time();
                for message in received {
                    match message {
                        Message::Assets(assets) => collector.add_assets(assets),
                        Message::Vulnerabilities(vulnerabilities) => collector.add_vulnerabilities(vulnerabilities),
                        Message::VulnerabilityBatch(batch) => collector.add_vulnerability_batch(&batch),
                        Message::Definitions(definitions) => collector.add_definitions(definitions),
                        Message::Count(counter, delta) => collector.count(counter, delta),
                        Message::Skip(reason, count) => collector.skip(reason, count),
                    }
                }
                collector.cpu = crate::limits::thread_cpu_time().saturating_sub(started);
                collector
            })?;
            shared.worker = Some(Worker { messages, thread });
        }
        let messages = shared.worker.as_ref().expect("started above").messages.clone();
        // Not sent under the lock: a full queue must not stop the other session's
        // counters from being counted.
        drop(shared);
        // The thread only stops when the run takes the collector, after both
        // sessions are done; a send can fail only if it panicked, which
        // `take_collector` reports.
        messages.send(message).ok();
        Ok(())
    }

    /// Takes the records collected so far: waits for the collector thread to take
    /// in everything sent to it. A later record starts a new collector.
    pub(crate) fn take_collector(&self) -> Collector {
        let Some(Worker { messages, thread }) = self.lock().worker.take() else {
            return Collector::default();
        };
        drop(messages);
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The pipeline's side of the sandbox's `output`: records go to the collector thread.
impl RecordSink for RunOutput {
    fn count_emitted(&self, count: u64, bytes: u64) -> (u64, u64) {
        self.count(count, bytes)
    }

    fn send(&self, message: Message) -> std::io::Result<()> {
        self.start_or_send(message)
    }
}

/// Gathers a run's records as the plugin emits them.
#[derive(Default, Debug)]
pub struct Collector {
    /// Every asset by the number of its key. A tenant's assets all stay until the
    /// join, encoded ([`compact`]) in a log that moves to disk as it grows.
    assets: Vec<Option<StoredAsset>>,
    asset_log: ByteLog,
    asset_keys: Interner,
    identifiers: Interner,
    vulnerabilities: Sorter,
    definitions: HashMap<String, VulnerabilityDefinition>,
    counters: BTreeMap<String, u64>,
    skipped: BTreeMap<String, u64>,
    /// The first failure to keep vulnerabilities on disk, reported by `finish`.
    failure: Option<String>,
    /// Bytes of records kept so far, and the most that may be (0: no limit).
    kept_bytes: u64,
    limit_bytes: u64,
    /// CPU time the collector thread spent taking records in.
    pub(crate) cpu: std::time::Duration,
}

impl Collector {
    /// A collector that moves vulnerabilities to disk past `bytes` of them in
    /// memory, and assets past as many bytes of their encodings.
    pub fn with_buffer(bytes: usize) -> Self {
        Collector {
            vulnerabilities: Sorter::with_budget(bytes),
            asset_log: ByteLog::with_budget(bytes),
            ..Collector::default()
        }
    }

    /// A collector that keeps at most `bytes` of records (its temporary disk and
    /// memory together); past it, the run fails with the limit named. 0: no limit.
    pub(crate) fn with_limit(mut self, bytes: u64) -> Self {
        self.limit_bytes = bytes;
        self
    }

    /// Counts bytes kept, and fails the run past the limit.
    fn keep(&mut self, bytes: usize) {
        self.kept_bytes = self.kept_bytes.saturating_add(bytes as u64);
        if self.limit_bytes > 0 && self.kept_bytes > self.limit_bytes && self.failure.is_none() {
            self.failure = Some(format!(
                "the run's records need more than its temporary disk limit of {} ([limits] temp_disk_mb)",
                crate::limits::mib(self.limit_bytes)
            ));
        }
    }

    /// Several reports of one asset key (offset paging over a live list repeats
    /// rows) keep the one with the latest `last-seen`, the later report on a tie.
    pub fn add_assets(&mut self, assets: Vec<Asset>) {
        for asset in assets {
            if let Some(problem) = locator_problem(&asset) {
                bump(&mut self.skipped, problem.to_owned(), 1);
                continue;
            }
            let id = self.asset_keys.intern(&asset.key) as usize;
            if self.assets.len() <= id {
                self.assets.resize_with(id + 1, || None);
            }
            let encoded = asset_codec::encode(&asset);
            let hash = encoding_hash(&encoded);
            let newer = match &self.assets[id] {
                // The same report again (several mapping instances each emitting a
                // repository once, a page fetched twice): nothing to merge or count.
                Some(existing) if existing.hash == hash => continue,
                Some(existing) => {
                    bump(&mut self.counters, DUPLICATE_ASSETS.to_owned(), 1);
                    match (&asset.last_seen, &existing.last_seen) {
                        (Some(new), Some(old)) => key(new) >= key(old),
                        (new, old) => new.is_some() || old.is_none(),
                    }
                }
                None => true,
            };
            if newer && self.failure.is_none() {
                self.keep(encoded.len());
                match self.asset_log.append(&encoded) {
                    Ok(span) => self.assets[id] = Some(StoredAsset { last_seen: asset.last_seen, span, hash }),
                    Err(e) => self.failure = Some(format!("{e:#}")),
                }
            }
        }
    }

    /// Interns and sorts vulnerability reports (on disk past the buffer).
    pub fn add_vulnerabilities(&mut self, vulnerabilities: Vec<Vulnerability>) {
        for v in &vulnerabilities {
            self.add_vulnerability(&v.into());
        }
    }

    /// Vulnerabilities the host read in place from the plugin's memory.
    pub(crate) fn add_vulnerability_batch(&mut self, batch: &VulnerabilityBatch) {
        batch.records().for_each(|v| self.add_vulnerability(&v));
    }

    fn add_vulnerability(&mut self, v: &BatchedVulnerability) {
        if self.failure.is_some() {
            return;
        }
        // A report's fixed part (ids, score, times) and its details text.
        self.keep(40 + v.details.map_or(0, str::len));
        let report = Report {
            asset: self.asset_keys.intern(v.asset_key),
            identifier: self.identifiers.intern(v.identifier),
            score: v.score,
            found: v.found,
            last_seen: v.last_seen,
            details: v.details.filter(|d| !d.is_empty()).map(str::to_owned),
            fixed: v.fixed,
        };
        let order = ReportOrder { assets: &self.asset_keys, identifiers: &self.identifiers };
        if let Err(e) = self.vulnerabilities.push(report, order) {
            self.failure = Some(format!("{e:#}"));
        }
    }

    /// Definitions of one identifier merge: each part keeps the first value given
    /// (a name other than the identifier itself, CVE ids, a description, a
    /// solution). A plugin can then define an identifier from its rows and enrich it
    /// from another source, in whatever order its pages are mapped.
    pub(crate) fn add_definitions(&mut self, definitions: Vec<VulnerabilityDefinition>) {
        use std::collections::hash_map::Entry;
        for d in definitions {
            match self.definitions.entry(d.identifier.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(d);
                }
                Entry::Occupied(mut slot) => {
                    let kept = slot.get_mut();
                    if kept.name == kept.identifier && d.name != d.identifier {
                        kept.name = d.name;
                    }
                    if kept.cve_ids.is_empty() {
                        kept.cve_ids = d.cve_ids;
                    }
                    if kept.description.is_none() {
                        kept.description = d.description;
                    }
                    if kept.solution.is_none() {
                        kept.solution = d.solution;
                    }
                }
            }
        }
    }

    /// Adds to a counter of the plugin's.
    pub(crate) fn count(&mut self, counter: String, delta: u64) {
        bump(&mut self.counters, counter, delta);
    }

    /// Counts records skipped for a reason.
    pub(crate) fn skip(&mut self, reason: String, count: u64) {
        bump(&mut self.skipped, reason, count);
    }

    /// Joins everything collected; the result is read one asset at a time.
    pub fn finish(self) -> Result<Joined> {
        if let Some(failure) = self.failure {
            anyhow::bail!("the host could not keep the run's records: {failure}");
        }
        let Collector {
            assets,
            asset_log,
            asset_keys,
            identifiers,
            vulnerabilities,
            definitions,
            counters,
            skipped,
            ..
        } = self;
        let ranks = Ranks::new(&asset_keys, &identifiers);
        let mut assets: Vec<(u32, Span)> = (assets.into_iter().enumerate())
            .filter_map(|(id, stored)| Some((ranks.asset(id as u32), stored?.span)))
            .collect();
        // Descending, so that the next asset in key order is popped from the end.
        assets.sort_unstable_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        // Definitions of identifiers no vulnerability uses are not needed.
        let mut by_id: Vec<Option<VulnerabilityDefinition>> = Vec::new();
        by_id.resize_with(identifiers.len(), || None);
        for (identifier, definition) in definitions {
            if let Some(id) = identifiers.find(&identifier) {
                by_id[id as usize] = Some(definition);
            }
        }
        let catalog = Catalog { ranks: ranks.identifiers().to_vec(), identifiers, definitions: by_id };
        let spilled = vulnerabilities.spilled;
        let log = asset_log.into_reader()?;
        let vulnerabilities = vulnerabilities.into_sorted(ranks)?;
        let stream = AssetStream { assets, log, buffer: Vec::new(), vulnerabilities, pending: None, orphans: 0 };
        Ok(Joined { stream, catalog: Arc::new(catalog), counters, skipped, spilled })
    }
}
