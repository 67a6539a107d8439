//! The one place where vulnerabilities meet their assets.
//!
//! Plugins emit assets and vulnerabilities independently and in any order; the
//! collector keeps them, and [`Collector::finish`] joins them: every asset with all of
//! its vulnerabilities (an empty list when it has none), vulnerabilities of unknown
//! assets dropped and counted, and several vulnerabilities with the same asset and
//! identifier merged into one (highest score, earliest found, latest last seen, every
//! distinct details text kept). The output is sorted, so the same input always gives
//! the same files.
//!
//! Memory does not grow with the number of vulnerabilities: they go through an
//! external sort ([`crate::spill`]) and [`Joined`] hands out one asset at a time.
//! Assets are kept encoded in a log that moves to disk as it grows; what stays in
//! memory per asset is its key and a few numbers. Definitions (one per identifier,
//! bounded by the scanner's catalogue, not by the tenant) stay in memory.

use crate::bindings::types::{Asset, Datetime, Vulnerability, VulnerabilityDefinition};
use crate::compact;
use crate::spill::{ByteLog, Interner, LogReader, Merged, Ranks, Report, ReportOrder, Sorter, Span};
use anyhow::Result;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The skip reason for vulnerabilities whose asset did not arrive in the run.
pub const UNKNOWN_ASSET: &str = "vulnerability of an asset not in this run (e.g. an inactive device)";

/// The counter of asset reports merged into an earlier report of the same key.
pub const DUPLICATE_ASSETS: &str = "duplicate asset reports merged (latest last seen kept)";

/// The skip reason for assets CVM could not match: no locator at all.
pub const NO_LOCATOR: &str = "asset without any locator (CVM cannot match it)";

/// The skip reason for assets located by URL alone: CVM needs `application` with `url`.
pub const URL_WITHOUT_APPLICATION: &str = "asset located by url without an application (CVM needs both)";

/// Why CVM would reject an asset's locators, if it would. Blank values count as absent.
fn locator_problem(asset: &Asset) -> Option<&'static str> {
    let l = &asset.locators;
    let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    let others = [&l.external_id, &l.hostname, &l.fqdn, &l.netbios, &l.ip_address, &l.mac_address];
    if others.into_iter().any(present) {
        return None;
    }
    match (present(&l.url), present(&l.application)) {
        (true, true) => None,
        (true, false) => Some(URL_WITHOUT_APPLICATION),
        _ => Some(NO_LOCATOR),
    }
}

/// An asset as the collector keeps it: where its encoding is, and what
/// deduplication compares.
#[derive(Debug)]
struct StoredAsset {
    last_seen: Option<Datetime>,
    span: Span,
}

/// One vulnerability after merging every report of it on an asset.
#[derive(Clone, Debug, PartialEq)]
pub struct MergedVulnerability {
    pub identifier: String,
    /// The identifier's number in this run, for [`Catalog`] lookups without hashing.
    pub identifier_id: u32,
    pub score: u8,
    pub found: Option<Datetime>,
    pub last_seen: Option<Datetime>,
    pub details: BTreeSet<String>,
    /// How many source reports were merged into this one.
    pub reports: u64,
}

impl MergedVulnerability {
    fn new(identifier: &str, r: Report) -> Self {
        MergedVulnerability {
            identifier: identifier.to_owned(),
            identifier_id: r.identifier,
            score: r.score,
            found: r.found,
            last_seen: r.last_seen,
            details: r.details.into_iter().filter(|d| !d.is_empty()).collect(),
            reports: 1,
        }
    }

    fn merge(&mut self, r: Report) {
        self.score = self.score.max(r.score);
        self.found = earliest(self.found, r.found);
        self.last_seen = latest(self.last_seen, r.last_seen);
        self.details.extend(r.details.filter(|d| !d.is_empty()));
        self.reports += 1;
    }
}

fn key(t: &Datetime) -> (i64, u32) {
    (t.seconds, t.nanoseconds)
}

fn earliest(a: Option<Datetime>, b: Option<Datetime>) -> Option<Datetime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if key(&b) < key(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn latest(a: Option<Datetime>, b: Option<Datetime>) -> Option<Datetime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if key(&b) > key(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// An asset and everything found on it, ready to write.
#[derive(Clone, Debug)]
pub struct JoinedAsset {
    pub asset: Asset,
    /// Sorted by identifier.
    pub vulnerabilities: Vec<MergedVulnerability>,
}

/// What a run knows about each vulnerability identifier, by its number
/// ([`MergedVulnerability::identifier_id`]): a writer looks definitions up per
/// vulnerability, so these are vectors, not hash tables of strings.
pub struct Catalog {
    identifiers: Interner,
    /// Each identifier's place in the sorted order of identifiers.
    ranks: Vec<u32>,
    /// The definition the plugin emitted for each identifier, if it emitted one.
    definitions: Vec<Option<VulnerabilityDefinition>>,
}

impl Catalog {
    /// How many identifiers the run has (numbers are below this).
    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }

    /// The identifier's place in the sorted order of identifiers.
    pub fn rank(&self, id: u32) -> u32 {
        self.ranks[id as usize]
    }

    /// The definition of an identifier; one is made up from the identifier when the
    /// plugin emitted none (a vulnerability still needs one).
    pub fn definition(&self, id: u32) -> Cow<'_, VulnerabilityDefinition> {
        match &self.definitions[id as usize] {
            Some(d) => Cow::Borrowed(d),
            None => {
                let identifier = self.identifiers.get(id);
                Cow::Owned(VulnerabilityDefinition {
                    identifier: identifier.to_owned(),
                    name: identifier.to_owned(),
                    cve_ids: Vec::new(),
                    description: None,
                    solution: None,
                })
            }
        }
    }

    /// The name of an identifier's definition (the identifier when there is none).
    pub fn definition_name(&self, id: u32) -> &str {
        match &self.definitions[id as usize] {
            Some(d) => &d.name,
            None => self.identifiers.get(id),
        }
    }
}

/// The assets of a run with their merged vulnerabilities, read in key order.
pub struct AssetStream {
    /// Assets with the rank of their key, sorted by key, reversed (the next one is
    /// popped from the end).
    assets: Vec<(u32, Span)>,
    /// The assets' encodings.
    log: LogReader,
    /// The encoding being decoded.
    buffer: Vec<u8>,
    vulnerabilities: Merged,
    /// A report read ahead of the asset it belongs to.
    pending: Option<Report>,
    /// Reports of assets not in the run, passed so far.
    orphans: u64,
}

impl AssetStream {
    /// The next asset with its merged vulnerabilities, or `None` after the last.
    fn next_asset(&mut self, catalog: &Catalog) -> Result<Option<JoinedAsset>> {
        let Some((rank, span)) = self.assets.pop() else {
            // Whatever is left belongs to no asset of this run.
            while self.next_report()?.is_some() {
                self.orphans += 1;
            }
            return Ok(None);
        };
        self.log.read(span, &mut self.buffer)?;
        let asset = compact::decode(&self.buffer);
        let mut vulnerabilities: Vec<MergedVulnerability> = Vec::new();
        let mut current: Option<u32> = None;
        while let Some(report) = self.next_report()? {
            match self.vulnerabilities.ranks().asset(report.asset).cmp(&rank) {
                std::cmp::Ordering::Less => self.orphans += 1,
                std::cmp::Ordering::Greater => {
                    self.pending = Some(report);
                    break;
                }
                std::cmp::Ordering::Equal => match (current, vulnerabilities.last_mut()) {
                    (Some(id), Some(last)) if id == report.identifier => last.merge(report),
                    _ => {
                        current = Some(report.identifier);
                        let identifier = catalog.identifiers.get(report.identifier);
                        vulnerabilities.push(MergedVulnerability::new(identifier, report));
                    }
                },
            }
        }
        Ok(Some(JoinedAsset { asset, vulnerabilities }))
    }

    fn next_report(&mut self) -> Result<Option<Report>> {
        if let Some(report) = self.pending.take() {
            return Ok(Some(report));
        }
        self.vulnerabilities.next_report()
    }
}

/// Assets a reading thread may run ahead of the writer: enough to smooth out
/// assets of very different sizes, few enough to stay small in memory.
const READ_AHEAD_ASSETS: usize = 64;

/// The joined result of a run, read one asset at a time in key order.
pub struct Joined {
    stream: AssetStream,
    pub catalog: Catalog,
    pub counters: BTreeMap<String, u64>,
    /// Complete once every asset was read: orphans are counted as they are passed.
    pub skipped: BTreeMap<String, u64>,
    /// Vulnerability reports that went through a file on disk.
    pub spilled: u64,
}

impl Joined {
    /// The next asset with its merged vulnerabilities, or `None` after the last.
    pub fn next_asset(&mut self) -> Result<Option<JoinedAsset>> {
        let next = self.stream.next_asset(&self.catalog)?;
        self.count_orphans();
        Ok(next)
    }

    fn count_orphans(&mut self) {
        let orphans = std::mem::take(&mut self.stream.orphans);
        if orphans > 0 {
            *self.skipped.entry(UNKNOWN_ASSET.to_owned()).or_default() += orphans;
        }
    }

    /// Hands the assets in order to `consume`, through its `next` argument, while a
    /// second thread merges them: the merge (reading sorted runs, decoding) and
    /// what `consume` does with each asset (serializing) then use both cores. When
    /// `consume` returns early, the reading thread stops.
    pub fn read_in_parallel<R>(
        &mut self,
        consume: impl FnOnce(&mut dyn FnMut() -> Result<Option<JoinedAsset>>, &Catalog) -> Result<R>,
    ) -> Result<R> {
        let Joined { stream, catalog, .. } = self;
        let catalog: &Catalog = catalog;
        let result = std::thread::scope(|scope| {
            let (sender, assets) = std::sync::mpsc::sync_channel::<Result<JoinedAsset>>(READ_AHEAD_ASSETS);
            let reader = std::thread::Builder::new()
                .name("join".into())
                .spawn_scoped(scope, move || {
                    while let Some(next) = stream.next_asset(catalog).transpose() {
                        let failed = next.is_err();
                        // A consumer that returned early has dropped the receiver.
                        if sender.send(next).is_err() || failed {
                            break;
                        }
                    }
                })
                .map_err(anyhow::Error::from);
            if let Err(e) = reader {
                return Err(e.context("cannot start the thread that joins the run's records"));
            }
            let mut next = || assets.recv().ok().transpose();
            let result = consume(&mut next, catalog);
            drop(assets);
            result
        });
        self.count_orphans();
        result
    }

    /// Reads everything into memory (small runs and tests).
    pub fn collect(mut self) -> Result<JoinedInMemory> {
        let mut assets = Vec::new();
        while let Some(asset) = self.next_asset()? {
            assets.push(asset);
        }
        let mut definitions = BTreeMap::new();
        for v in assets.iter().flat_map(|a: &JoinedAsset| &a.vulnerabilities) {
            if !definitions.contains_key(&v.identifier) {
                definitions.insert(v.identifier.clone(), self.catalog.definition(v.identifier_id).into_owned());
            }
        }
        Ok(JoinedInMemory { assets, definitions, counters: self.counters, skipped: self.skipped })
    }
}

/// A joined run held in memory.
#[derive(Debug, Default)]
pub struct JoinedInMemory {
    /// Sorted by asset key.
    pub assets: Vec<JoinedAsset>,
    /// The definition of every identifier a vulnerability uses.
    pub definitions: BTreeMap<String, VulnerabilityDefinition>,
    pub counters: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
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

    /// Several reports of one asset key (offset paging over a live list repeats
    /// rows) keep the one with the latest `last-seen`, the later report on a tie.
    pub fn add_assets(&mut self, assets: Vec<Asset>) {
        for asset in assets {
            if let Some(problem) = locator_problem(&asset) {
                *self.skipped.entry(problem.to_owned()).or_default() += 1;
                continue;
            }
            let id = self.asset_keys.intern(&asset.key) as usize;
            if self.assets.len() <= id {
                self.assets.resize_with(id + 1, || None);
            }
            let newer = match &self.assets[id] {
                Some(existing) => {
                    *self.counters.entry(DUPLICATE_ASSETS.to_owned()).or_default() += 1;
                    match (&asset.last_seen, &existing.last_seen) {
                        (Some(new), Some(old)) => key(new) >= key(old),
                        (new, old) => new.is_some() || old.is_none(),
                    }
                }
                None => true,
            };
            if newer && self.failure.is_none() {
                match self.asset_log.append(&compact::encode(&asset)) {
                    Ok(span) => self.assets[id] = Some(StoredAsset { last_seen: asset.last_seen, span }),
                    Err(e) => self.failure = Some(format!("{e:#}")),
                }
            }
        }
    }

    pub fn add_vulnerabilities(&mut self, vulnerabilities: Vec<Vulnerability>) {
        for v in vulnerabilities {
            if self.failure.is_some() {
                return;
            }
            let report = Report {
                asset: self.asset_keys.intern(&v.asset_key),
                identifier: self.identifiers.intern(&v.identifier),
                score: v.score,
                found: v.found,
                last_seen: v.last_seen,
                details: v.details.filter(|d| !d.is_empty()),
            };
            let order = ReportOrder { assets: &self.asset_keys, identifiers: &self.identifiers };
            if let Err(e) = self.vulnerabilities.push(report, order) {
                self.failure = Some(format!("{e:#}"));
            }
        }
    }

    /// The first definition of an identifier is kept.
    pub fn add_definitions(&mut self, definitions: Vec<VulnerabilityDefinition>) {
        for d in definitions {
            self.definitions.entry(d.identifier.clone()).or_insert(d);
        }
    }

    pub fn count(&mut self, counter: String, delta: u64) {
        *self.counters.entry(counter).or_default() += delta;
    }

    pub fn skip(&mut self, reason: String, count: u64) {
        *self.skipped.entry(reason).or_default() += count;
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
        Ok(Joined { stream, catalog, counters, skipped, spilled })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(key: &str) -> Asset {
        Asset::with_external_id(key)
    }

    fn at(seconds: i64) -> Option<Datetime> {
        Some(Datetime { seconds, nanoseconds: 0 })
    }

    fn vuln(asset: &str, id: &str, score: u8, found: i64, seen: i64, details: &str) -> Vulnerability {
        Vulnerability {
            asset_key: asset.into(),
            identifier: id.into(),
            score,
            found: at(found),
            last_seen: at(seen),
            details: Some(details.into()),
        }
    }

    #[test]
    fn same_identifier_on_one_asset_merges() {
        let mut c = Collector::default();
        c.add_assets(vec![asset("d1")]);
        c.add_vulnerabilities(vec![
            vuln("d1", "CVE-1", 6, 100, 500, "chrome"),
            vuln("d1", "CVE-1", 8, 200, 400, "edge"),
        ]);
        c.add_vulnerabilities(vec![vuln("d1", "CVE-1", 3, 50, 450, "chrome")]);
        let j = c.finish().unwrap().collect().unwrap();
        let v = &j.assets[0].vulnerabilities[0];
        assert_eq!(v.score, 8);
        assert_eq!(v.found, at(50));
        assert_eq!(v.last_seen, at(500));
        assert_eq!(v.details.iter().cloned().collect::<Vec<_>>(), ["chrome", "edge"]);
        assert_eq!(v.reports, 3);
    }

    #[test]
    fn duplicate_assets_keep_the_latest_last_seen_and_the_later_on_a_tie() {
        let seen = |key: &str, os: &str, t: Option<i64>| Asset {
            os: Some(os.into()),
            last_seen: t.and_then(at),
            ..asset(key)
        };
        let mut c = Collector::default();
        c.add_assets(vec![seen("a", "first", Some(200)), seen("a", "older", Some(100)), seen("b", "first", Some(5))]);
        c.add_assets(vec![seen("b", "tie", Some(5)), seen("c", "unknown", None), seen("c", "known", Some(1))]);
        let j = c.finish().unwrap().collect().unwrap();
        let os: Vec<&str> = j.assets.iter().map(|a| a.asset.os.as_deref().unwrap()).collect();
        assert_eq!(os, ["first", "tie", "known"]);
        assert_eq!(j.counters[DUPLICATE_ASSETS], 3);
    }

    #[test]
    fn assets_without_vulnerabilities_are_kept_and_orphans_counted() {
        let mut c = Collector::default();
        c.add_vulnerabilities(vec![vuln("gone", "CVE-1", 6, 1, 2, ""), vuln("gone", "CVE-2", 6, 1, 2, "")]);
        c.add_assets(vec![asset("b"), asset("a")]);
        let j = c.finish().unwrap().collect().unwrap();
        let keys: Vec<&str> = j.assets.iter().map(|a| a.asset.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(j.assets.iter().all(|a| a.vulnerabilities.is_empty()));
        assert_eq!(j.skipped.get(UNKNOWN_ASSET), Some(&2));
        assert!(j.definitions.is_empty(), "definitions of dropped vulnerabilities are not written");
    }

    #[test]
    fn missing_definitions_are_synthesized_and_unused_ones_dropped() {
        let mut c = Collector::default();
        c.add_assets(vec![asset("a")]);
        c.add_definitions(vec![VulnerabilityDefinition {
            identifier: "CVE-9".into(),
            name: "CVE-9".into(),
            cve_ids: vec!["CVE-9".into()],
            description: None,
            solution: None,
        }]);
        c.add_vulnerabilities(vec![vuln("a", "TVM-1", 0, 1, 2, "")]);
        let j = c.finish().unwrap().collect().unwrap();
        assert_eq!(j.definitions.keys().collect::<Vec<_>>(), ["TVM-1"]);
        assert!(j.definitions["TVM-1"].cve_ids.is_empty());
    }

    #[test]
    fn assets_cvm_cannot_match_are_skipped_with_their_reason() {
        let located = |external_id: Option<&str>, url: Option<&str>, application: Option<&str>| {
            let mut a = asset("k");
            a.locators.external_id = external_id.map(Into::into);
            a.locators.url = url.map(Into::into);
            a.locators.application = application.map(Into::into);
            a
        };
        let mut c = Collector::default();
        c.add_assets(vec![located(None, Some("https://github.com/o/r"), None)]);
        c.add_assets(vec![located(Some("  "), None, None)]);
        c.add_assets(vec![located(None, Some("https://github.com/o/r"), Some("o/r"))]);
        let j = c.finish().unwrap().collect().unwrap();
        assert_eq!(j.assets.len(), 1, "url with application is a locator");
        assert_eq!(j.skipped.get(URL_WITHOUT_APPLICATION), Some(&1));
        assert_eq!(j.skipped.get(NO_LOCATOR), Some(&1));
    }

    #[test]
    fn reading_on_a_second_thread_gives_the_same_assets_and_stops_when_asked() {
        let fill = || {
            let mut c = Collector::with_buffer(400);
            for i in 0..300 {
                c.add_assets(vec![asset(&format!("d-{i:03}"))]);
                c.add_vulnerabilities(vec![
                    vuln(&format!("d-{i:03}"), &format!("CVE-{}", i % 7), 5, 1, 2, "x"),
                    vuln(&format!("gone-{i:03}"), "CVE-1", 5, 1, 2, ""),
                ]);
            }
            c.finish().unwrap()
        };
        let one_thread = fill().collect().unwrap();
        let mut joined = fill();
        let read = joined
            .read_in_parallel(|next, catalog| {
                let mut assets = Vec::new();
                while let Some(a) = next()? {
                    let v = &a.vulnerabilities[0];
                    assert_eq!(catalog.definition_name(v.identifier_id), v.identifier);
                    assets.push(a);
                }
                Ok(assets)
            })
            .unwrap();
        assert_eq!(format!("{read:?}"), format!("{:?}", one_thread.assets));
        assert_eq!(joined.skipped, one_thread.skipped, "orphans are counted after the reading thread ends");
        assert_eq!(joined.skipped[UNKNOWN_ASSET], 300);

        // A consumer that stops early ends the reading thread instead of hanging.
        let stopped = fill().read_in_parallel(|next, _| {
            next()?;
            anyhow::bail!("the disk is full")
        });
        let stopped: Result<()> = stopped;
        assert_eq!(stopped.unwrap_err().to_string(), "the disk is full");
    }

    #[test]
    fn a_run_spilled_to_disk_joins_exactly_like_one_in_memory() {
        let fill = |c: &mut Collector| {
            c.add_assets(vec![asset("d-3"), asset("d-1"), asset("d-2")]);
            for round in 0..30i64 {
                let mut batch = Vec::new();
                for (key, id) in [("d-2", "CVE-2"), ("0-before", "CVE-1"), ("d-1", "CVE-9"), ("m-between", "CVE-3")] {
                    batch.push(vuln(key, id, (round % 10) as u8, 100 - round, round, &format!("path {}", round % 4)));
                }
                batch.push(vuln("z-after", "CVE-4", 1, 1, 1, ""));
                batch.push(vuln("d-1", &format!("CVE-{}", 100 + round % 7), 3, round, round, ""));
                c.add_vulnerabilities(batch);
            }
        };
        let (mut in_memory, mut spilled) = (Collector::default(), Collector::with_buffer(500));
        fill(&mut in_memory);
        fill(&mut spilled);
        let spilled = spilled.finish().unwrap();
        assert!(spilled.spilled > 100, "the small buffer sent most reports to disk");
        let (a, b) = (in_memory.finish().unwrap().collect().unwrap(), spilled.collect().unwrap());
        let keys: Vec<&str> = b.assets.iter().map(|a| a.asset.key.as_str()).collect();
        assert_eq!(keys, ["d-1", "d-2", "d-3"]);
        assert_eq!(format!("{:?}", a.assets), format!("{:?}", b.assets));
        assert_eq!(b.skipped.get(UNKNOWN_ASSET), Some(&90), "orphans before, between and after the assets");
        assert_eq!(a.skipped, b.skipped);
        let d1 = &b.assets[0].vulnerabilities;
        assert_eq!(d1.len(), 8, "CVE-9 and seven CVE-10x");
        let cve9 = d1.iter().find(|v| v.identifier == "CVE-9").unwrap();
        assert_eq!((cve9.reports, cve9.score, cve9.found, cve9.last_seen), (30, 9, at(71), at(29)));
        assert_eq!(cve9.details.len(), 4);
    }
}
