//! The one place where vulnerabilities meet their assets.
//!
//! Plugins emit assets and vulnerabilities independently and in any order; the
//! collector keeps them, and [`Collector::finish`] joins them: every asset with all of
//! its vulnerabilities (an empty list when it has none), vulnerabilities of unknown
//! assets dropped and counted, and several vulnerabilities with the same asset and
//! identifier merged into one (highest score, earliest found, latest last seen, every
//! distinct details text kept). The output is sorted, so the same input always gives
//! the same files.

use crate::bindings::types::{Asset, Datetime, Vulnerability, VulnerabilityDefinition};
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

/// One vulnerability after merging every report of it on an asset.
#[derive(Clone, Debug, PartialEq)]
pub struct MergedVulnerability {
    pub identifier: String,
    pub score: u8,
    pub found: Option<Datetime>,
    pub last_seen: Option<Datetime>,
    pub details: BTreeSet<String>,
    /// How many source reports were merged into this one.
    pub reports: u64,
}

impl MergedVulnerability {
    fn new(v: Vulnerability) -> Self {
        MergedVulnerability {
            identifier: v.identifier,
            score: v.score,
            found: v.found,
            last_seen: v.last_seen,
            details: v.details.into_iter().filter(|d| !d.is_empty()).collect(),
            reports: 1,
        }
    }

    fn merge(&mut self, v: Vulnerability) {
        self.score = self.score.max(v.score);
        self.found = earliest(self.found, v.found);
        self.last_seen = latest(self.last_seen, v.last_seen);
        self.details.extend(v.details.filter(|d| !d.is_empty()));
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

/// The joined result of a run.
#[derive(Debug, Default)]
pub struct Joined {
    /// Sorted by asset key.
    pub assets: Vec<JoinedAsset>,
    /// Every definition a written vulnerability uses, by identifier.
    pub definitions: BTreeMap<String, VulnerabilityDefinition>,
    pub counters: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
}

impl Joined {}

/// Gathers a run's records as the plugin emits them.
#[derive(Default, Debug)]
pub struct Collector {
    assets: HashMap<String, Asset>,
    vulnerabilities: HashMap<String, HashMap<String, MergedVulnerability>>,
    definitions: HashMap<String, VulnerabilityDefinition>,
    counters: BTreeMap<String, u64>,
    skipped: BTreeMap<String, u64>,
}

impl Collector {
    /// Several reports of one asset key (offset paging over a live list repeats
    /// rows) keep the one with the latest `last-seen`, the later report on a tie.
    pub fn add_assets(&mut self, assets: Vec<Asset>) {
        for asset in assets {
            if let Some(problem) = locator_problem(&asset) {
                *self.skipped.entry(problem.to_owned()).or_default() += 1;
                continue;
            }
            match self.assets.get_mut(&asset.key) {
                Some(existing) => {
                    *self.counters.entry(DUPLICATE_ASSETS.to_owned()).or_default() += 1;
                    let newer = match (&asset.last_seen, &existing.last_seen) {
                        (Some(new), Some(old)) => key(new) >= key(old),
                        (new, old) => new.is_some() || old.is_none(),
                    };
                    if newer {
                        *existing = asset;
                    }
                }
                None => {
                    self.assets.insert(asset.key.clone(), asset);
                }
            }
        }
    }

    pub fn add_vulnerabilities(&mut self, vulnerabilities: Vec<Vulnerability>) {
        for v in vulnerabilities {
            // Most vulnerabilities belong to an asset already seen: look up before cloning the key.
            if !self.vulnerabilities.contains_key(&v.asset_key) {
                self.vulnerabilities.insert(v.asset_key.clone(), HashMap::new());
            }
            let on_asset = self.vulnerabilities.get_mut(&v.asset_key).expect("inserted above");
            match on_asset.get_mut(&v.identifier) {
                Some(existing) => existing.merge(v),
                None => {
                    on_asset.insert(v.identifier.clone(), MergedVulnerability::new(v));
                }
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

    /// Joins everything collected.
    pub fn finish(self) -> Joined {
        let Collector { assets, mut vulnerabilities, mut definitions, counters, mut skipped } = self;
        let mut joined_assets: Vec<JoinedAsset> = assets
            .into_values()
            .map(|asset| {
                let mut vulns: Vec<MergedVulnerability> =
                    vulnerabilities.remove(&asset.key).map(|m| m.into_values().collect()).unwrap_or_default();
                vulns.sort_by(|a, b| a.identifier.cmp(&b.identifier));
                JoinedAsset { asset, vulnerabilities: vulns }
            })
            .collect();
        joined_assets.sort_by(|a, b| a.asset.key.cmp(&b.asset.key));

        let orphans: u64 = vulnerabilities.values().flat_map(|m| m.values()).map(|v| v.reports).sum();
        if orphans > 0 {
            *skipped.entry(UNKNOWN_ASSET.to_owned()).or_default() += orphans;
        }

        let mut used = BTreeMap::new();
        for v in joined_assets.iter().flat_map(|a| &a.vulnerabilities) {
            if !used.contains_key(&v.identifier) {
                // A vulnerability whose definition was never emitted still needs one.
                let definition = definitions.remove(&v.identifier).unwrap_or_else(|| VulnerabilityDefinition {
                    identifier: v.identifier.clone(),
                    name: v.identifier.clone(),
                    cve_ids: Vec::new(),
                    description: None,
                    solution: None,
                });
                used.insert(v.identifier.clone(), definition);
            }
        }
        Joined { assets: joined_assets, definitions: used, counters, skipped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::Locators;

    fn asset(key: &str) -> Asset {
        Asset {
            key: key.into(),
            locators: Locators {
                external_id: Some(key.into()),
                hostname: None,
                fqdn: None,
                netbios: None,
                ip_address: None,
                mac_address: None,
                url: None,
                application: None,
            },
            os: None,
            os_version: None,
            tags: vec![],
            last_seen: None,
        }
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
        let j = c.finish();
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
        let j = c.finish();
        let os: Vec<&str> = j.assets.iter().map(|a| a.asset.os.as_deref().unwrap()).collect();
        assert_eq!(os, ["first", "tie", "known"]);
        assert_eq!(j.counters[DUPLICATE_ASSETS], 3);
    }

    #[test]
    fn assets_without_vulnerabilities_are_kept_and_orphans_counted() {
        let mut c = Collector::default();
        c.add_vulnerabilities(vec![vuln("gone", "CVE-1", 6, 1, 2, ""), vuln("gone", "CVE-2", 6, 1, 2, "")]);
        c.add_assets(vec![asset("b"), asset("a")]);
        let j = c.finish();
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
        let j = c.finish();
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
        let j = c.finish();
        assert_eq!(j.assets.len(), 1, "url with application is a locator");
        assert_eq!(j.skipped.get(URL_WITHOUT_APPLICATION), Some(&1));
        assert_eq!(j.skipped.get(NO_LOCATOR), Some(&1));
    }
}
