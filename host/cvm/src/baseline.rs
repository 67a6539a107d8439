//! What the last successful upload of a connector instance sent, kept in a state
//! directory, and how a new run compares with it.
//!
//! The state holds counts (assets, open vulnerabilities) and the sorted 64-bit
//! fingerprints of every asset key and every asset-and-identifier pair, so a dry run
//! can say what would appear, disappear (be closed by CVM) or stay, at 8 bytes per
//! key. Fingerprints are FNV-1a, written out here because they must stay the same
//! across builds and Rust versions (std's hasher makes no such promise).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// FNV-1a, 64 bits.
fn fingerprint(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// What a run would send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Sorted fingerprints of asset keys.
    pub assets: Vec<u64>,
    /// Sorted fingerprints of (asset key, identifier) of open vulnerabilities.
    pub vulnerabilities: Vec<u64>,
    /// Sorted fingerprints of (asset key, identifier) the run reports fixed.
    pub fixed: Vec<u64>,
    /// The run reports changes only (contract 0.4's incremental mode): what it does
    /// not report stays as the last upload left it.
    pub changes_only: bool,
}

impl Snapshot {
    /// Adds an asset by its key, and the identifiers of its vulnerabilities (call
    /// [`Snapshot::seal`] after the last). Keys and identifiers only: delivery does
    /// not depend on how the run joins its records.
    pub fn add<'a>(&mut self, asset_key: &str, identifiers: impl IntoIterator<Item = &'a str>) {
        self.assets.push(fingerprint(&[asset_key]));
        self.vulnerabilities.extend(identifiers.into_iter().map(|identifier| fingerprint(&[asset_key, identifier])));
    }

    /// Adds a vulnerability the run reports fixed.
    pub fn add_fixed(&mut self, asset_key: &str, identifier: &str) {
        self.fixed.push(fingerprint(&[asset_key, identifier]));
    }

    /// Sorts the fingerprints, ready for comparison.
    pub fn seal(mut self) -> Snapshot {
        self.assets.sort_unstable();
        self.assets.dedup();
        self.vulnerabilities.sort_unstable();
        self.fixed.sort_unstable();
        self
    }

    /// What CVM holds after this run is applied to what `last` left: for a full
    /// run, the run itself; for a run of changes, the last upload's assets and open
    /// vulnerabilities with the run's added and its fixed ones removed.
    pub(crate) fn applied_to(&self, last: Option<&LastUpload>) -> Snapshot {
        let Some(last) = last.filter(|_| self.changes_only) else {
            return Snapshot { fixed: Vec::new(), changes_only: false, ..self.clone() };
        };
        let union = |a: &[u64], b: &[u64]| {
            let mut all: Vec<u64> = a.iter().chain(b).copied().collect();
            all.sort_unstable();
            all.dedup();
            all
        };
        let open = union(&last.snapshot.vulnerabilities, &self.vulnerabilities);
        let open_now: Vec<u64> = open
            .into_iter()
            .filter(|v| self.vulnerabilities.binary_search(v).is_ok() || self.fixed.binary_search(v).is_err())
            .collect();
        Snapshot {
            assets: union(&last.snapshot.assets, &self.assets),
            vulnerabilities: open_now,
            fixed: Vec::new(),
            changes_only: false,
        }
    }
}

/// How one set changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Change {
    /// In this run and not in the last upload.
    pub(crate) appear: usize,
    /// In the last upload and not in this run.
    pub(crate) disappear: usize,
    /// In both.
    pub(crate) stay: usize,
}

fn change(before: &[u64], after: &[u64]) -> Change {
    let (mut i, mut j) = (0, 0);
    let mut c = Change::default();
    while i < before.len() && j < after.len() {
        match before[i].cmp(&after[j]) {
            std::cmp::Ordering::Equal => {
                c.stay += 1;
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                c.disappear += 1;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                c.appear += 1;
                j += 1;
            }
        }
    }
    c.disappear += before.len() - i;
    c.appear += after.len() - j;
    c
}

/// Assets and open vulnerabilities against the last upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Delta {
    /// Assets against the last upload.
    pub(crate) assets: Change,
    /// Open vulnerabilities (asset and identifier pairs) against the last upload.
    pub(crate) vulnerabilities: Change,
}

/// The last successful upload of a connector instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastUpload {
    /// When the upload happened (RFC 3339, UTC).
    pub(crate) uploaded_at: String,
    /// The CVM connector it went to.
    pub(crate) connector_id: u64,
    /// The CVM connector run that processed it.
    pub(crate) run_id: u64,
    /// Assets sent.
    pub(crate) assets: usize,
    /// Open vulnerabilities sent.
    pub(crate) open_vulnerabilities: usize,
    #[serde(skip)]
    /// Fingerprints of what was sent.
    pub(crate) snapshot: Snapshot,
}

impl LastUpload {
    /// How `now` differs from this upload.
    pub(crate) fn delta(&self, now: &Snapshot) -> Delta {
        Delta {
            assets: change(&self.snapshot.assets, &now.assets),
            vulnerabilities: change(&self.snapshot.vulnerabilities, &now.vulnerabilities),
        }
    }

    /// Refuses a run that would send fewer than half the assets or open
    /// vulnerabilities of the last upload: CVM would close the rest. A run of
    /// changes is held to the same share: it may not close more than half of the
    /// open vulnerabilities the last upload left.
    pub(crate) fn guard(&self, now: &Snapshot) -> Result<(), String> {
        if now.changes_only {
            let closes = now.fixed.iter().filter(|v| self.snapshot.vulnerabilities.binary_search(v).is_ok()).count();
            if closes * 2 > self.open_vulnerabilities {
                return Err(format!(
                    "refusing to upload: this run of changes closes {closes} of the {} open vulnerabilities that the last upload to connector {} ({}) left, more than half. If that many really were fixed, run again with --allow-mass-close",
                    self.open_vulnerabilities, self.connector_id, self.uploaded_at
                ));
            }
            return Ok(());
        }
        let (assets, vulns) = (now.assets.len(), now.vulnerabilities.len());
        if assets * 2 < self.assets || vulns * 2 < self.open_vulnerabilities {
            return Err(format!(
                "refusing to upload: this run has {assets} assets and {vulns} open vulnerabilities, but the last upload to connector {} ({}) had {} assets and {} open vulnerabilities; fewer than half would make CVM close the vulnerabilities of the missing ones. If the tenant really shrank, run again with --allow-mass-close",
                self.connector_id, self.uploaded_at, self.assets, self.open_vulnerabilities
            ));
        }
        Ok(())
    }
}

/// Where the last upload of each connector instance is kept, by its instance key
/// ([`crate::CvmConfig::instance_key`]). The CLI keeps it in files
/// ([`BaselineDir`]); a platform with many workers keeps it where every worker
/// sees it (the service's database).
pub trait BaselineStore: std::fmt::Debug + Send + Sync {
    /// The last successful upload, if there was one.
    fn load(&self, instance_key: &str) -> Result<Option<LastUpload>>;
    /// Records a successful upload, replacing the last one whole or not at all.
    fn save(&self, instance_key: &str, last: &LastUpload) -> Result<()>;
}

/// The two parts a baseline is kept in, by name: [`LastUpload`]'s counts as JSON,
/// and its fingerprints as little-endian `u64`s, assets first.
pub const PARTS: [&str; 2] = [META, KEYS];
const META: &str = "last-upload.json";
const KEYS: &str = "last-upload.keys";

impl LastUpload {
    /// The baseline as its two [`PARTS`].
    pub fn encode(&self) -> Result<[Vec<u8>; 2]> {
        let mut keys = Vec::with_capacity(8 * (self.snapshot.assets.len() + self.snapshot.vulnerabilities.len()));
        for n in self.snapshot.assets.iter().chain(&self.snapshot.vulnerabilities) {
            keys.extend_from_slice(&n.to_le_bytes());
        }
        Ok([serde_json::to_vec_pretty(self)?, keys])
    }

    /// The baseline from its two [`PARTS`]; `place` names where they were kept, for
    /// the error of a damaged one.
    pub fn decode(meta: &[u8], keys: &[u8], place: &str) -> Result<LastUpload> {
        let mut last: LastUpload = serde_json::from_slice(meta)
            .with_context(|| format!("the CVM baseline in {place} is damaged; remove it to start afresh"))?;
        let numbers: Vec<u64> = keys.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        if numbers.len() != last.assets + last.open_vulnerabilities || !keys.len().is_multiple_of(8) {
            bail!("the CVM baseline in {place} has keys that do not match its counts; remove it to start afresh");
        }
        last.snapshot = Snapshot {
            assets: numbers[..last.assets].to_vec(),
            vulnerabilities: numbers[last.assets..].to_vec(),
            ..Snapshot::default()
        };
        Ok(last)
    }
}

/// Baselines in a state directory: `<dir>/<instance key>/last-upload.{json,keys}`.
#[derive(Debug, Clone)]
pub struct BaselineDir {
    dir: PathBuf,
}

impl BaselineDir {
    /// The baselines under `state_dir`.
    pub(crate) fn new(state_dir: &Path) -> Self {
        BaselineDir { dir: state_dir.to_owned() }
    }

    fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

impl BaselineStore for BaselineDir {
    fn load(&self, instance_key: &str) -> Result<Option<LastUpload>> {
        let dir = self.dir.join(instance_key);
        let meta = dir.join(META);
        if !meta.exists() {
            return Ok(None);
        }
        let read = |path: PathBuf| fs::read(&path).with_context(|| format!("cannot read {}", path.display()));
        LastUpload::decode(&read(meta)?, &read(dir.join(KEYS))?, &dir.display().to_string()).map(Some)
    }

    /// Each file written whole, then renamed; the keys before the counts, so the
    /// counts never describe keys that are not there.
    fn save(&self, instance_key: &str, last: &LastUpload) -> Result<()> {
        let dir = self.dir.join(instance_key);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create state directory {}", dir.display()))?;
        let [meta, keys] = last.encode()?;
        Self::write_atomically(&dir, KEYS, &keys)?;
        Self::write_atomically(&dir, META, &meta)
    }
}

/// `$XDG_STATE_HOME/connector-host`, else `~/.local/state/connector-host`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("connector-host");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/connector-host"),
        None => PathBuf::from(".connector-host-state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(assets: &[&str], vulns: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot {
            assets: assets.iter().map(|a| fingerprint(&[a])).collect(),
            vulnerabilities: vulns.iter().map(|(a, v)| fingerprint(&[a, v])).collect(),
            ..Snapshot::default()
        };
        s.assets.sort_unstable();
        s.vulnerabilities.sort_unstable();
        s
    }

    fn last(s: Snapshot) -> LastUpload {
        LastUpload {
            uploaded_at: "2026-11-27T00:00:00Z".into(),
            connector_id: 7,
            run_id: 1,
            assets: s.assets.len(),
            open_vulnerabilities: s.vulnerabilities.len(),
            snapshot: s,
        }
    }

    #[test]
    fn deltas_count_what_appears_disappears_and_stays() {
        let before = last(snapshot(&["a", "b", "c"], &[("a", "CVE-1"), ("b", "CVE-1"), ("b", "CVE-2")]));
        let after = snapshot(&["b", "c", "d"], &[("b", "CVE-2"), ("d", "CVE-9")]);
        let d = before.delta(&after);
        assert_eq!(d.assets, Change { appear: 1, disappear: 1, stay: 2 });
        assert_eq!(d.vulnerabilities, Change { appear: 1, disappear: 2, stay: 1 });
    }

    #[test]
    fn the_guard_refuses_losing_more_than_half() {
        let before = last(snapshot(&["a", "b", "c", "d"], &[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]));
        assert!(before.guard(&snapshot(&["a", "b"], &[("a", "1"), ("b", "1")])).is_ok(), "exactly half is allowed");
        let err = before.guard(&snapshot(&["a"], &[("a", "1"), ("a", "2"), ("a", "3")])).unwrap_err();
        assert!(err.contains("this run has 1 assets and 3 open vulnerabilities"), "{err}");
        assert!(err.contains("had 4 assets and 4 open vulnerabilities"), "{err}");
        assert!(before.guard(&snapshot(&["a", "b", "c", "d"], &[("a", "1")])).is_err(), "losing most vulnerabilities");
    }

    #[test]
    fn a_run_of_changes_applies_to_the_last_upload_and_may_not_close_more_than_half() {
        let before = last(snapshot(&["a", "b"], &[("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]));
        let mut changes = Snapshot { changes_only: true, ..Snapshot::default() };
        changes.add("a", ["3"]);
        changes.add("c", ["1"]);
        changes.add_fixed("a", "1");
        let changes = changes.seal();
        assert!(before.guard(&changes).is_ok(), "closing one of four");
        let after = changes.applied_to(Some(&before));
        let expected = snapshot(&["a", "b", "c"], &[("a", "2"), ("a", "3"), ("b", "1"), ("b", "2"), ("c", "1")]);
        assert_eq!(after, expected);
        let mut many = Snapshot { changes_only: true, ..Snapshot::default() };
        for (a, v) in [("a", "1"), ("a", "2"), ("b", "1")] {
            many.add_fixed(a, v);
        }
        let err = before.guard(&many.seal()).unwrap_err();
        assert!(err.contains("closes 3 of the 4 open vulnerabilities"), "{err}");
    }

    #[test]
    fn state_round_trips_and_fingerprints_are_stable() {
        let dir = std::env::temp_dir().join(format!("state-unit-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        let (store, key) = (BaselineDir::new(&dir), "api.example.com-connector-7");
        assert_eq!(store.load(key).unwrap(), None);
        let saved = last(snapshot(&["a", "b"], &[("a", "CVE-1")]));
        store.save(key, &saved).unwrap();
        assert_eq!(store.load(key).unwrap(), Some(saved.clone()));
        // Keys that do not match the counts are refused, naming where they are.
        fs::write(dir.join(key).join(KEYS), [0u8; 8]).unwrap();
        let err = store.load(key).unwrap_err().to_string();
        assert!(err.contains("do not match its counts") && err.contains(key), "{err}");
        // Known FNV-1a values: the state must read the same in every build.
        assert_eq!(fingerprint(&[""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(&["a"]), 0xaf63_dc4c_8601_ec8c);
    }
}
