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
//! external sort ([`super::store::external_sort`]) and [`Joined`] hands out one asset
//! at a time. Assets are kept encoded in a log that moves to disk as it grows; what
//! stays in memory per asset is its key and a few numbers. Definitions (one per
//! identifier, bounded by the scanner's catalogue, not by the tenant) stay in memory.

use super::ahead::Ahead;
use super::store::asset_codec;
use super::store::byte_log::{LogReader, Span};
use super::store::external_sort::{Merged, Report};
use super::store::interner::Interner;
use crate::bindings::types::{Asset, Datetime, VulnerabilityDefinition};
use anyhow::Result;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The skip reason for vulnerabilities whose asset did not arrive in the run.
pub const UNKNOWN_ASSET: &str = "vulnerability of an asset not in this run (e.g. an inactive device)";

/// One vulnerability after merging every report of it on an asset.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MergedVulnerability {
    pub(crate) identifier: String,
    /// The identifier's number in this run, for [`Catalog`] lookups without hashing.
    pub(crate) identifier_id: u32,
    pub(crate) score: u8,
    pub(crate) found: Option<Datetime>,
    pub(crate) last_seen: Option<Datetime>,
    pub(crate) details: BTreeSet<String>,
    /// How many source reports were merged into this one.
    pub(crate) reports: u64,
    /// When it was fixed, if every report of it says fixed (the latest such time);
    /// `None`: open (one open report keeps it open, e.g. one product of two updated).
    pub(crate) fixed: Option<Datetime>,
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
            fixed: r.fixed,
        }
    }

    fn merge(&mut self, r: Report) {
        self.score = self.score.max(r.score);
        self.found = earliest(self.found, r.found);
        self.last_seen = latest(self.last_seen, r.last_seen);
        self.details.extend(r.details.filter(|d| !d.is_empty()));
        self.reports += 1;
        self.fixed = match (self.fixed, r.fixed) {
            (Some(a), Some(b)) => latest(Some(a), Some(b)),
            _ => None,
        };
    }
}

/// A time as something to compare.
pub(super) fn key(t: &Datetime) -> (i64, u32) {
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
pub(crate) struct JoinedAsset {
    pub(crate) asset: Asset,
    /// Sorted by identifier.
    pub(crate) vulnerabilities: Vec<MergedVulnerability>,
}

/// What a run knows about each vulnerability identifier, by its number
/// ([`MergedVulnerability::identifier_id`]): a writer looks definitions up per
/// vulnerability, so these are vectors, not hash tables of strings.
pub(crate) struct Catalog {
    pub(super) identifiers: Interner,
    /// Each identifier's place in the sorted order of identifiers.
    pub(super) ranks: Vec<u32>,
    /// The definition the plugin emitted for each identifier, if it emitted one.
    pub(super) definitions: Vec<Option<VulnerabilityDefinition>>,
}

impl Catalog {
    /// How many identifiers the run has (numbers are below this).
    pub(crate) fn len(&self) -> usize {
        self.ranks.len()
    }

    /// The identifier's place in the sorted order of identifiers.
    pub(crate) fn rank(&self, id: u32) -> u32 {
        self.ranks[id as usize]
    }

    /// The definition of an identifier; one is made up from the identifier when the
    /// plugin emitted none (a vulnerability still needs one).
    pub(crate) fn definition(&self, id: u32) -> Cow<'_, VulnerabilityDefinition> {
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
    pub(crate) fn definition_name(&self, id: u32) -> &str {
        match &self.definitions[id as usize] {
            Some(d) => &d.name,
            None => self.identifiers.get(id),
        }
    }
}

/// The assets of a run with their merged vulnerabilities, read in key order.
pub(super) struct AssetStream {
    /// Assets with the rank of their key, sorted by key, reversed (the next one is
    /// popped from the end).
    pub(super) assets: Vec<(u32, Span)>,
    /// The assets' encodings.
    pub(super) log: LogReader,
    /// The encoding being decoded.
    pub(super) buffer: Vec<u8>,
    pub(super) vulnerabilities: Merged,
    /// A report read ahead of the asset it belongs to.
    pub(super) pending: Option<Report>,
    /// Reports of assets not in the run, passed so far.
    pub(super) orphans: u64,
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
        let asset = asset_codec::decode(&self.buffer);
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

/// Assets the join thread may run ahead of the writer: enough to smooth out
/// assets of very different sizes, few enough to stay small in memory.
const READ_AHEAD_ASSETS: usize = 64;

/// The joined result of a run, read one asset at a time in key order.
pub struct Joined {
    pub(super) stream: AssetStream,
    /// Every identifier of the run, with its definition.
    pub(crate) catalog: Arc<Catalog>,
    /// The plugin's counters.
    pub(crate) counters: BTreeMap<String, u64>,
    /// Records skipped, by reason; complete once every asset was read (orphans are
    /// counted as they are passed).
    pub(crate) skipped: BTreeMap<String, u64>,
    /// Vulnerability reports that went through a file on disk.
    pub(crate) spilled: u64,
}

impl Joined {
    /// The next asset with its merged vulnerabilities, or `None` after the last.
    #[cfg(test)]
    fn next_asset(&mut self) -> Result<Option<JoinedAsset>> {
        let next = self.stream.next_asset(&self.catalog)?;
        add_orphans(&mut self.skipped, std::mem::take(&mut self.stream.orphans));
        Ok(next)
    }

    /// The assets, merged on a `join` thread ahead of whoever reads them: the merge
    /// (reading sorted runs, decoding) and the writing then use both cores.
    pub(crate) fn read_ahead(self) -> Result<JoinedAssets> {
        let Joined { mut stream, catalog, counters, skipped, spilled } = self;
        if spilled > 0 {
            tracing::info!(
                spilled,
                "the run's vulnerability reports exceeded the memory buffer; {spilled} went through a file on disk"
            );
        }
        let shared = catalog.clone();
        let assets = Ahead::spawn("join", READ_AHEAD_ASSETS, move |hand_over| {
            let started = crate::limits::thread_cpu_time();
            while let Some(next) = stream.next_asset(&shared).transpose() {
                if !hand_over(next) {
                    break;
                }
            }
            (stream.orphans, crate::limits::thread_cpu_time().saturating_sub(started))
        })?;
        Ok(JoinedAssets { assets, catalog, counters, skipped })
    }

    /// Reads everything into memory (tests).
    #[cfg(test)]
    fn collect(mut self) -> Result<JoinedInMemory> {
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

fn add_orphans(skipped: &mut BTreeMap<String, u64>, orphans: u64) {
    if orphans > 0 {
        *skipped.entry(UNKNOWN_ASSET.to_owned()).or_default() += orphans;
    }
}

/// The joined assets of a run as a join thread hands them over ([`Joined::read_ahead`]).
pub(crate) struct JoinedAssets {
    /// The assets, and at the end the orphans the thread passed and its CPU time.
    assets: Ahead<JoinedAsset, (u64, std::time::Duration)>,
    /// Every identifier of the run, with its definition.
    pub(crate) catalog: Arc<Catalog>,
    counters: BTreeMap<String, u64>,
    skipped: BTreeMap<String, u64>,
}

/// What the join counted, once every asset was read.
#[derive(Debug, Default)]
pub(crate) struct JoinCounts {
    /// The plugin's counters.
    pub(crate) counters: BTreeMap<String, u64>,
    /// Records skipped, by reason (vulnerabilities of assets not in the run included).
    pub(crate) skipped: BTreeMap<String, u64>,
    /// CPU time the join thread spent merging.
    pub(crate) cpu: std::time::Duration,
}

impl JoinedAssets {
    /// The next asset with its merged vulnerabilities, or `None` after the last.
    pub(crate) fn next(&mut self) -> Result<Option<JoinedAsset>> {
        self.assets.next()
    }

    /// Stops the join thread and returns what it counted.
    pub(crate) fn finish(mut self) -> Result<JoinCounts> {
        let (orphans, cpu) = self.assets.stop();
        add_orphans(&mut self.skipped, orphans);
        Ok(JoinCounts { counters: self.counters, skipped: self.skipped, cpu })
    }
}

/// A joined run held in memory (tests).
#[cfg(test)]
#[derive(Debug, Default)]
struct JoinedInMemory {
    /// Sorted by asset key.
    pub(crate) assets: Vec<JoinedAsset>,
    /// The definition of every identifier a vulnerability uses.
    pub(crate) definitions: BTreeMap<String, VulnerabilityDefinition>,
    pub(crate) counters: BTreeMap<String, u64>,
    pub(crate) skipped: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::super::collect::{Collector, DUPLICATE_ASSETS, NO_LOCATOR, URL_WITHOUT_APPLICATION};
    use super::*;
    use crate::bindings::types::{Vulnerability, VulnerabilityStatus};

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
            status: VulnerabilityStatus::Open,
        }
    }

    fn fixed(mut v: Vulnerability, at_seconds: i64) -> Vulnerability {
        v.status = VulnerabilityStatus::Fixed(Datetime { seconds: at_seconds, nanoseconds: 0 });
        v
    }

    #[test]
    fn definitions_of_one_identifier_merge_whatever_their_order() {
        let thin = |id: &str| VulnerabilityDefinition {
            identifier: id.into(),
            name: id.into(),
            cve_ids: vec![],
            description: None,
            solution: None,
        };
        let rich = |id: &str| VulnerabilityDefinition {
            name: format!("{id} named"),
            cve_ids: vec![id.into()],
            description: Some(format!("{id} described")),
            ..thin(id)
        };
        for rich_first in [false, true] {
            let mut c = Collector::default();
            c.add_assets(vec![asset("a")]);
            c.add_vulnerabilities(vec![vuln("a", "CVE-1", 6, 1, 2, "x")]);
            let (first, second) =
                if rich_first { (rich("CVE-1"), thin("CVE-1")) } else { (thin("CVE-1"), rich("CVE-1")) };
            c.add_definitions(vec![first]);
            c.add_definitions(vec![
                second,
                VulnerabilityDefinition { solution: Some("patch".into()), ..thin("CVE-1") },
            ]);
            let joined = c.finish().unwrap().collect().unwrap();
            let d = &joined.definitions["CVE-1"];
            assert_eq!(d.name, "CVE-1 named", "rich first: {rich_first}");
            assert_eq!(d.cve_ids, vec!["CVE-1".to_owned()]);
            assert_eq!(d.description.as_deref(), Some("CVE-1 described"));
            assert_eq!(d.solution.as_deref(), Some("patch"));
        }
    }

    #[test]
    fn one_open_report_keeps_a_vulnerability_open_and_fixed_ones_close_it_at_the_latest_time() {
        let mut c = Collector::default();
        c.add_assets(vec![asset("a")]);
        c.add_vulnerabilities(vec![
            // One product updated, another still carries the CVE: open.
            fixed(vuln("a", "CVE-1", 6, 1, 2, "chrome"), 50),
            vuln("a", "CVE-1", 6, 1, 3, "edge"),
            // Both fixed: fixed, at the later time.
            fixed(vuln("a", "CVE-2", 3, 1, 2, "x"), 40),
            fixed(vuln("a", "CVE-2", 3, 1, 2, "y"), 70),
        ]);
        let mut joined = c.finish().unwrap().read_ahead().unwrap();
        let a = joined.next().unwrap().expect("asset a");
        assert_eq!(a.vulnerabilities[0].identifier, "CVE-1");
        assert_eq!(a.vulnerabilities[0].fixed, None, "an open report keeps it open");
        assert_eq!(a.vulnerabilities[1].fixed, at(70), "every report fixed: the latest time");
    }

    #[test]
    fn a_run_that_keeps_more_than_its_temporary_disk_limit_fails_naming_it() {
        let mut c = Collector::default().with_limit(10_000);
        for i in 0..200 {
            c.add_assets(vec![asset(&format!("device-{i:04}"))]);
            c.add_vulnerabilities(vec![vuln(&format!("device-{i:04}"), "CVE-1", 5, 1, 2, &"d".repeat(100))]);
        }
        let error = c.finish().err().expect("over the limit").to_string();
        assert!(error.contains("more than its temporary disk limit of 0 MiB ([limits] temp_disk_mb)"), "{error}");
    }

    #[test]
    fn counters_saturate_and_their_names_are_bounded_in_number() {
        let mut c = Collector::default();
        c.count("rows".into(), u64::MAX - 1);
        c.count("rows".into(), 5);
        for i in 0..1_500 {
            c.skip(format!("reason {i}"), 1);
        }
        let j = c.finish().unwrap().collect().unwrap();
        assert_eq!(j.counters["rows"], u64::MAX, "saturates instead of wrapping around");
        assert_eq!(j.skipped.len(), crate::run::collect::MAX_NAMES + 1);
        assert_eq!(j.skipped[crate::run::collect::OTHER_NAMES], 500);
    }

    #[test]
    fn vulnerabilities_read_in_place_join_exactly_like_lifted_ones() {
        use crate::capability::records::VulnerabilityBatch;
        let reports = [
            vuln("a", "CVE-1", 6, 100, 500, "chrome"),
            vuln("a", "CVE-2", 3, 1, 2, ""),
            vuln("b", "CVE-1", 9, 7, 8, "é"),
        ];
        let mut lifted = Collector::default();
        lifted.add_assets(vec![asset("a"), asset("b")]);
        lifted.add_vulnerabilities(reports.to_vec());
        let mut batch = VulnerabilityBatch::default();
        for v in &reports {
            batch.push(&v.into());
        }
        let mut in_place = Collector::default();
        in_place.add_assets(vec![asset("a"), asset("b")]);
        in_place.add_vulnerability_batch(&batch);
        let (lifted, in_place) =
            (lifted.finish().unwrap().collect().unwrap(), in_place.finish().unwrap().collect().unwrap());
        assert_eq!(format!("{:?}", lifted.assets), format!("{:?}", in_place.assets));
        assert_eq!(in_place.assets[1].vulnerabilities[0].details.iter().next().map(String::as_str), Some("é"));
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
    fn a_report_identical_to_the_kept_one_is_not_a_duplicate() {
        let mut c = Collector::default();
        c.add_assets(vec![asset("repo"), asset("repo")]);
        c.add_assets(vec![asset("repo")]);
        let j = c.finish().unwrap().collect().unwrap();
        assert_eq!(j.assets.len(), 1);
        assert!(!j.counters.contains_key(DUPLICATE_ASSETS), "{:?}", j.counters);
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
        let mut assets = fill().read_ahead().unwrap();
        let mut read = Vec::new();
        while let Some(a) = assets.next().unwrap() {
            let v = &a.vulnerabilities[0];
            assert_eq!(assets.catalog.definition_name(v.identifier_id), v.identifier);
            read.push(a);
        }
        let counts = assets.finish().unwrap();
        assert_eq!(format!("{read:?}"), format!("{:?}", one_thread.assets));
        assert_eq!(counts.skipped, one_thread.skipped, "orphans are counted once the join thread ends");
        assert_eq!(counts.skipped[UNKNOWN_ASSET], 300);

        // A reader that stops early ends the join thread instead of hanging.
        let mut stopped = fill().read_ahead().unwrap();
        assert!(stopped.next().unwrap().is_some());
        let started = std::time::Instant::now();
        drop(stopped);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the join thread ended");
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
