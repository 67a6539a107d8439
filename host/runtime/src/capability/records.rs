//! What the sandbox hands on of a plugin's `output`: the records it emitted, in the
//! batch format the host reads them into, and the trait of whatever takes them
//! ([`RecordSink`]). The sandbox defines these; the run's pipeline implements the
//! sink (`run::collect`), a verify session discards (`Discard`).

use crate::bindings::types::{Asset, Datetime, Vulnerability, VulnerabilityDefinition, VulnerabilityStatus};

/// Where a session's records go, and where they are counted against the run's
/// limits (a run's sessions share one sink).
pub trait RecordSink: Send + Sync {
    /// Adds `count` records of `bytes` of text to those the run emitted; returns the
    /// new totals.
    fn count_emitted(&self, count: u64, bytes: u64) -> (u64, u64);
    /// Hands records on.
    fn send(&self, message: Message) -> std::io::Result<()>;
}

/// A sink that counts and keeps nothing: the sessions that only check a plugin
/// (info, configure, verify) write no files.
#[derive(Default)]
pub(crate) struct Discard(std::sync::Mutex<(u64, u64)>);

impl RecordSink for Discard {
    fn count_emitted(&self, count: u64, bytes: u64) -> (u64, u64) {
        let mut totals = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *totals = (totals.0.saturating_add(count), totals.1.saturating_add(bytes));
        *totals
    }

    fn send(&self, _: Message) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a plugin emitted, on its way to the collector.
pub enum Message {
    Assets(Vec<Asset>),
    Vulnerabilities(Vec<Vulnerability>),
    /// Vulnerabilities read in place from the plugin's memory (see [`VulnerabilityBatch`]).
    VulnerabilityBatch(VulnerabilityBatch),
    Definitions(Vec<VulnerabilityDefinition>),
    Count(String, u64),
    Skip(String, u64),
}

impl Message {
    /// About how many bytes of text the message carries (for the output limit).
    pub(crate) fn text_bytes(&self) -> u64 {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let bytes: usize = match self {
            Message::Assets(assets) => assets.iter().map(Asset::text_len).sum(),
            Message::Vulnerabilities(v) => {
                v.iter().map(|v| v.asset_key.len() + v.identifier.len() + opt(&v.details)).sum()
            }
            Message::Definitions(d) => {
                d.iter().map(|d| d.identifier.len() + d.name.len() + opt(&d.description) + opt(&d.solution)).sum()
            }
            Message::VulnerabilityBatch(batch) => batch.texts.len() + batch.bytes.len(),
            Message::Count(name, _) | Message::Skip(name, _) => name.len(),
        };
        bytes as u64
    }
}

/// Vulnerabilities copied straight from the plugin's memory into one buffer, one
/// after another, instead of lifted into a `String` for each field: the host reads
/// the guest's strings in place when the plugin emits them (`emit-vulnerabilities`).
/// The format is private to one run: the strings one after another in `texts`, and
/// in `bytes` their lengths as little-endian u32, times as i64 seconds and u32
/// nanoseconds, a flags byte for what is present. The strings stay a `String`, so
/// reading them back checks no UTF-8 again (that was about 2% of a run's CPU).
#[derive(Default)]
pub struct VulnerabilityBatch {
    texts: String,
    bytes: Vec<u8>,
}

/// One vulnerability of a [`VulnerabilityBatch`], borrowing from it.
pub struct BatchedVulnerability<'a> {
    pub asset_key: &'a str,
    pub identifier: &'a str,
    pub score: u8,
    pub found: Option<Datetime>,
    pub last_seen: Option<Datetime>,
    pub details: Option<&'a str>,
    /// When it was fixed; `None`: open.
    pub fixed: Option<Datetime>,
}

impl<'a> From<&'a Vulnerability> for BatchedVulnerability<'a> {
    fn from(v: &'a Vulnerability) -> Self {
        BatchedVulnerability {
            asset_key: &v.asset_key,
            identifier: &v.identifier,
            score: v.score,
            found: v.found,
            last_seen: v.last_seen,
            details: v.details.as_deref(),
            fixed: match v.status {
                VulnerabilityStatus::Open => None,
                VulnerabilityStatus::Fixed(at) => Some(at),
            },
        }
    }
}

impl VulnerabilityBatch {
    /// Appends one vulnerability.
    pub fn push(&mut self, v: &BatchedVulnerability) {
        let text = |batch: &mut VulnerabilityBatch, s: &str| {
            // A string of 4 GiB or more is cut at a character boundary below it.
            let len = s.floor_char_boundary(u32::MAX as usize);
            batch.bytes.extend_from_slice(&(len as u32).to_le_bytes());
            batch.texts.push_str(&s[..len]);
        };
        text(self, v.asset_key);
        text(self, v.identifier);
        let flags = u8::from(v.found.is_some())
            | u8::from(v.last_seen.is_some()) << 1
            | u8::from(v.details.is_some()) << 2
            | u8::from(v.fixed.is_some()) << 3;
        self.bytes.extend_from_slice(&[v.score, flags]);
        for t in [&v.found, &v.last_seen, &v.fixed].into_iter().flatten() {
            self.bytes.extend_from_slice(&t.seconds.to_le_bytes());
            self.bytes.extend_from_slice(&t.nanoseconds.to_le_bytes());
        }
        if let Some(details) = v.details {
            text(self, details);
        }
    }

    /// Every vulnerability, in order.
    pub fn records(&self) -> impl Iterator<Item = BatchedVulnerability<'_>> {
        let (texts, bytes) = (self.texts.as_str(), &self.bytes);
        let (mut at, mut text_at) = (0, 0);
        std::iter::from_fn(move || {
            if at >= bytes.len() {
                return None;
            }
            let mut take = |n: usize| {
                let slice = &bytes[at..at + n];
                at += n;
                slice
            };
            let mut text = |len: &[u8]| {
                let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
                let text = &texts[text_at..text_at + len];
                text_at += len;
                text
            };
            let asset_key = text(take(4));
            let identifier = text(take(4));
            let head = take(2);
            let (score, flags) = (head[0], head[1]);
            let mut time = |present: bool| {
                present.then(|| {
                    let seconds = i64::from_le_bytes(take(8).try_into().expect("8 bytes"));
                    let nanoseconds = u32::from_le_bytes(take(4).try_into().expect("4 bytes"));
                    Datetime { seconds, nanoseconds }
                })
            };
            let (found, last_seen, fixed) = (time(flags & 1 != 0), time(flags & 2 != 0), time(flags & 8 != 0));
            let details = (flags & 4 != 0).then(|| text(take(4)));
            Some(BatchedVulnerability { asset_key, identifier, score, found, last_seen, details, fixed })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_what_was_pushed() {
        let at = |seconds| Some(Datetime { seconds, nanoseconds: 7 });
        let pushed = [
            BatchedVulnerability {
                asset_key: "device-1",
                identifier: "CVE-2024-0001",
                score: 8,
                found: at(1),
                last_seen: at(-2),
                details: Some("Software: café ✓\nSeverity: High"),
                fixed: None,
            },
            BatchedVulnerability {
                asset_key: "",
                identifier: "TVM-😀",
                score: 0,
                found: None,
                last_seen: None,
                details: None,
                fixed: at(i64::MAX),
            },
            BatchedVulnerability {
                asset_key: "device-2",
                identifier: "x",
                score: 10,
                found: None,
                last_seen: at(3),
                details: Some(""),
                fixed: None,
            },
        ];
        let mut batch = VulnerabilityBatch::default();
        pushed.iter().for_each(|v| batch.push(v));
        let read: Vec<_> = batch.records().collect();
        assert_eq!(read.len(), pushed.len());
        for (read, pushed) in read.iter().zip(&pushed) {
            assert_eq!(
                (read.asset_key, read.identifier, read.score, read.details),
                (pushed.asset_key, pushed.identifier, pushed.score, pushed.details)
            );
            let times = |v: &BatchedVulnerability| {
                [v.found, v.last_seen, v.fixed].map(|t| t.map(|t| (t.seconds, t.nanoseconds)))
            };
            assert_eq!(times(read), times(pushed));
        }
    }
}
