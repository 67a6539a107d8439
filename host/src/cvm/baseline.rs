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
    /// Sorted fingerprints of (asset key, identifier).
    pub vulnerabilities: Vec<u64>,
}

impl Snapshot {
    /// Adds an asset by its key, and the identifiers of its vulnerabilities (call
    /// [`Snapshot::seal`] after the last). Keys and identifiers only: delivery does
    /// not depend on how the run joins its records.
    pub fn add<'a>(&mut self, asset_key: &str, identifiers: impl IntoIterator<Item = &'a str>) {
        self.assets.push(fingerprint(&[asset_key]));
        self.vulnerabilities.extend(identifiers.into_iter().map(|identifier| fingerprint(&[asset_key, identifier])));
    }

    /// Sorts the fingerprints, ready for comparison.
    pub fn seal(mut self) -> Snapshot {
        self.assets.sort_unstable();
        self.vulnerabilities.sort_unstable();
        self
    }

    /// The snapshot of assets held in memory, each its key and its vulnerabilities'
    /// identifiers (tests and small runs).
    pub fn of<'a>(assets: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        assets.into_iter().for_each(|(key, identifiers)| snapshot.add(key, identifiers));
        snapshot.seal()
    }
}

/// How one set changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Change {
    /// In this run and not in the last upload.
    pub appear: usize,
    /// In the last upload and not in this run.
    pub disappear: usize,
    /// In both.
    pub stay: usize,
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
    pub assets: Change,
    /// Open vulnerabilities (asset and identifier pairs) against the last upload.
    pub vulnerabilities: Change,
}

/// The last successful upload of a connector instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastUpload {
    /// When the upload happened (RFC 3339, UTC).
    pub uploaded_at: String,
    /// The CVM connector it went to.
    pub connector_id: u64,
    /// The CVM connector run that processed it.
    pub run_id: u64,
    /// Assets sent.
    pub assets: usize,
    /// Open vulnerabilities sent.
    pub open_vulnerabilities: usize,
    #[serde(skip)]
    /// Fingerprints of what was sent.
    pub snapshot: Snapshot,
}

impl LastUpload {
    /// How `now` differs from this upload.
    pub fn delta(&self, now: &Snapshot) -> Delta {
        Delta {
            assets: change(&self.snapshot.assets, &now.assets),
            vulnerabilities: change(&self.snapshot.vulnerabilities, &now.vulnerabilities),
        }
    }

    /// Refuses a run that would send fewer than half the assets or open
    /// vulnerabilities of the last upload: CVM would close the rest.
    pub fn guard(&self, now: &Snapshot) -> Result<(), String> {
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

/// The state directory of one connector instance.
pub struct StateStore {
    dir: PathBuf,
}

const META: &str = "last-upload.json";
const KEYS: &str = "last-upload.keys";

impl StateStore {
    /// The state of the connector instance `instance_key` under `state_dir`.
    pub fn new(state_dir: &Path, instance_key: &str) -> Self {
        StateStore { dir: state_dir.join(instance_key) }
    }

    /// The last successful upload, if there was one.
    pub fn load(&self) -> Result<Option<LastUpload>> {
        let meta = self.dir.join(META);
        if !meta.exists() {
            return Ok(None);
        }
        let text = fs::read_to_string(&meta).with_context(|| format!("cannot read {}", meta.display()))?;
        let mut last: LastUpload = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; remove it to start afresh", meta.display()))?;
        let keys_path = self.dir.join(KEYS);
        let bytes = fs::read(&keys_path).with_context(|| format!("cannot read {}", keys_path.display()))?;
        let numbers: Vec<u64> = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        if numbers.len() != last.assets + last.open_vulnerabilities || bytes.len() % 8 != 0 {
            bail!("{} does not match {}; remove both to start afresh", keys_path.display(), meta.display());
        }
        last.snapshot =
            Snapshot { assets: numbers[..last.assets].to_vec(), vulnerabilities: numbers[last.assets..].to_vec() };
        Ok(Some(last))
    }

    /// Records a successful upload (each file written whole, then renamed).
    pub fn save(&self, last: &LastUpload) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create state directory {}", self.dir.display()))?;
        let mut keys = Vec::with_capacity(8 * (last.snapshot.assets.len() + last.snapshot.vulnerabilities.len()));
        for n in last.snapshot.assets.iter().chain(&last.snapshot.vulnerabilities) {
            keys.extend_from_slice(&n.to_le_bytes());
        }
        self.write_atomically(KEYS, &keys)?;
        self.write_atomically(META, serde_json::to_string_pretty(last)?.as_bytes())
    }

    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
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
    fn state_round_trips_and_fingerprints_are_stable() {
        let dir = std::env::temp_dir().join(format!("state-unit-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        let store = StateStore::new(&dir, "api.example.com-connector-7");
        assert_eq!(store.load().unwrap(), None);
        let saved = last(snapshot(&["a", "b"], &[("a", "CVE-1")]));
        store.save(&saved).unwrap();
        assert_eq!(store.load().unwrap(), Some(saved));
        // Known FNV-1a values: the state must read the same in every build.
        assert_eq!(fingerprint(&[""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(&["a"]), 0xaf63_dc4c_8601_ec8c);
    }
}
