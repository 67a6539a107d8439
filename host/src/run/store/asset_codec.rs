//! Assets kept as bytes while a run collects them.
//!
//! A run keeps every asset until the join (an asset must be written even when it
//! has no vulnerabilities). As generated records, each costs about 1 KB: a dozen
//! string allocations and a 300-byte struct in a hash table; 200,000 devices took
//! about 200 MB. Encoded as one byte string they take about a quarter of that.
//! The format is private and short-lived: strings are a little-endian u32 length
//! (`u32::MAX` for none) and their bytes.

use crate::bindings::types::{Asset, Datetime, Locators};

const NONE: u32 = u32::MAX;

/// An asset as bytes.
pub(crate) fn encode(asset: &Asset) -> Box<[u8]> {
    let l = &asset.locators;
    let mut out = Vec::with_capacity(256);
    text(&mut out, Some(&asset.key));
    // In the order of `Locators::all`, which `decode` reads back.
    for field in l.all().into_iter().chain([&asset.os, &asset.os_version]) {
        text(&mut out, field.as_deref());
    }
    out.extend_from_slice(&(asset.tags.len() as u32).to_le_bytes());
    for tag in &asset.tags {
        text(&mut out, Some(tag));
    }
    match &asset.last_seen {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.seconds.to_le_bytes());
            out.extend_from_slice(&t.nanoseconds.to_le_bytes());
        }
        None => out.push(0),
    }
    out.into_boxed_slice()
}

fn text(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        None => out.extend_from_slice(&NONE.to_le_bytes()),
    }
}

/// The asset `encode` wrote.
pub(crate) fn decode(bytes: &[u8]) -> Asset {
    let mut reader = Reader { bytes, at: 0 };
    let key = reader.text().unwrap_or_default();
    let mut next = || reader.text();
    let locators = Locators {
        external_id: next(),
        hostname: next(),
        fqdn: next(),
        netbios: next(),
        ip_address: next(),
        mac_address: next(),
        url: next(),
        application: next(),
    };
    let (os, os_version) = (reader.text(), reader.text());
    let tags = (0..reader.u32()).map(|_| reader.text().unwrap_or_default()).collect();
    let last_seen = (reader.byte() == 1).then(|| Datetime { seconds: reader.i64(), nanoseconds: reader.u32() });
    Asset { key, locators, os, os_version, tags, last_seen }
}

/// Reads what `encode` wrote; the bytes never left this process, so a short read
/// is a bug, and panics.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        slice
    }

    fn byte(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }

    fn text(&mut self) -> Option<String> {
        match self.u32() {
            NONE => None,
            len => Some(String::from_utf8(self.take(len as usize).to_vec()).expect("encoded from a String")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_come_back_exactly() {
        let full = Asset {
            key: "device-1".into(),
            locators: Locators {
                external_id: Some("device-1".into()),
                hostname: Some("ws-01".into()),
                fqdn: Some("ws-01.corp.example".into()),
                netbios: Some("WS-01".into()),
                ip_address: Some("10.0.0.1".into()),
                mac_address: Some("00:11:22:33:44:55".into()),
                url: Some("https://github.com/o/r".into()),
                application: Some("o/r".into()),
            },
            os: Some("Windows11".into()),
            os_version: Some("22H2 (build 22621)".into()),
            tags: vec!["rbacGroup: servers".into(), String::new(), "émoji ✓".into()],
            last_seen: Some(Datetime { seconds: -5, nanoseconds: 999_999_999 }),
        };
        assert_eq!(decode(&encode(&full)), full);
        let mut bare = Asset::with_external_id("");
        bare.locators.external_id = None;
        assert_eq!(decode(&encode(&bare)), bare);
        assert!(
            encode(&full).len() < std::mem::size_of::<Asset>(),
            "smaller than the record's struct alone, before its dozen allocations"
        );
    }
}
