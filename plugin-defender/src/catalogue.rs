//! Defender's vulnerability catalogue, `GET /api/vulnerabilities`
//! (docs/defender-api.md, "The vulnerability catalogue"): a name, a description and
//! what CVM has no field for (CVSS v3 and its vector, EPSS, the exploit flags and
//! types, the publication date) for every identifier, CVE ids and Defender's own
//! `TVM-` ids alike. The vulnerability rows carry none of it, and CVM's own
//! intelligence knows nothing of the `TVM-` ids.
//!
//! Read after the tenant's rows: the whole catalogue on the first run (`$top` 8,000,
//! the documented maximum, in `$skip` steps), then only what changed
//! (`$filter=updatedOn gt …`, one day of overlap, de-duplicated by id). What a run
//! read is kept in the plugin's state (contract 0.4) as the text each definition
//! gets, so a daily run reads a few pages, not the catalogue.
//!
//! Reading the whole catalogue beats asking for the identifiers a run needs: that
//! costs one call per identifier (thousands for a tenant), the catalogue a call per
//! 8,000 records.
//!
//! A catalogue that cannot be read (a missing permission, an unreachable host, a
//! broken page) never fails the run: its definitions keep what an earlier run
//! read, or none, and the run says so in a warning and a counter.

use crate::client::{Client, Found};
use crate::fetch::PART_BYTES;
use crate::lenient::strip_bom;
use crate::pacing;
use chrono::{DateTime, Utc};
use connector_sdk::log::{log, Level};
use connector_sdk::output;
use connector_sdk::types::{Page, PluginError, VulnerabilityDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const ENDPOINT: &str = "/api/vulnerabilities";
/// Pages of definitions from the catalogue, as [`Entry`] lists.
pub const DEFINITIONS: &str = "catalogue-definitions";
/// Counter: catalogue records read from Defender in this run.
pub const RECORDS_READ: &str = "catalogue records read";
/// Counter: catalogue reads that failed (the run went on without them).
pub const UNREADABLE: &str = "catalogue reads failed";
/// Defender's maximum `$top` for this endpoint.
pub const PAGE_SIZE: u64 = 8_000;
/// Records updated this long before the newest one seen are read again: an update
/// indexed late is still caught, and reading one twice only replaces it.
const OVERLAP: chrono::Duration = chrono::Duration::days(1);
/// A sanity cap: 8,000 x 2,000 records is far beyond any catalogue.
const MAX_PAGES: u32 = 2_000;
/// Above this the catalogue is not kept in the state (the host's default limit is
/// 64 MiB): the next run reads it whole again instead of failing.
pub const MAX_KEPT_BYTES: usize = 48 << 20;

/// What a definition gets from the catalogue, kept between runs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    /// The catalogue's name, when it is not the id itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The description, followed by the summary line.
    pub description: String,
}

impl Entry {
    /// The definition of this identifier, with the catalogue's text.
    pub fn definition(&self) -> VulnerabilityDefinition {
        let mut definition = crate::mapping::definition(&self.id);
        if let Some(name) = &self.name {
            definition.name = name.clone();
        }
        definition.description = Some(self.description.clone());
        definition
    }
}

/// One record of the catalogue as Defender sends it. Every field may be missing or
/// null (the documentation's own examples differ: one has `cvssVector`, one not,
/// one spells `CveSupportability` with a capital).
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Record {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "cvssV3")]
    pub cvss_v3: Option<f64>,
    pub cvss_vector: Option<String>,
    pub epss: Option<f64>,
    pub published_on: Option<String>,
    pub updated_on: Option<String>,
    pub public_exploit: Option<bool>,
    pub exploit_verified: Option<bool>,
    pub exploit_in_kit: Option<bool>,
    pub exploit_types: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CataloguePage {
    #[serde(default)]
    value: Vec<Record>,
}

impl Record {
    /// The entry a definition gets, or `None` for a record without an id.
    pub fn entry(&self) -> Option<Entry> {
        let id = crate::mapping::identifier(self.id.as_deref()?.trim());
        if id.is_empty() {
            return None;
        }
        let name = self.name.as_deref().map(str::trim).filter(|n| !n.is_empty() && *n != id).map(str::to_owned);
        let summary = self.summary();
        let description = match self.description.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(text) => format!("{text}\n\n{summary}"),
            None => summary,
        };
        Some(Entry { id, name, description })
    }

    /// One line, always the same fields in the same order, `unknown` where Defender
    /// says nothing: what CVM has no field for.
    pub fn summary(&self) -> String {
        let unknown = || "unknown".to_owned();
        let flag = |b: Option<bool>| b.map(|b| if b { "yes" } else { "no" }.to_owned()).unwrap_or_else(unknown);
        let cvss = match (self.cvss_v3, self.cvss_vector.as_deref().map(str::trim).filter(|v| !v.is_empty())) {
            (Some(score), Some(vector)) => format!("{score:.1} ({vector})"),
            (Some(score), None) => format!("{score:.1}"),
            (None, Some(vector)) => format!("unknown ({vector})"),
            (None, None) => unknown(),
        };
        let epss = self.epss.map(|e| format!("{e:.3}")).unwrap_or_else(unknown);
        let types = match self.exploit_types.as_deref() {
            Some([]) => "none".to_owned(),
            Some(types) => types.join(", "),
            None => unknown(),
        };
        let published =
            self.published_on.as_deref().and_then(|p| p.get(..10)).map(str::to_owned).unwrap_or_else(unknown);
        format!(
            "Defender TVM: CVSS v3 {cvss}; EPSS {epss}; public exploit {}; verified exploit {}; exploit kit {}; exploit types {types}; published {published}.",
            flag(self.public_exploit),
            flag(self.exploit_verified),
            flag(self.exploit_in_kit),
        )
    }
}

/// The catalogue as far as earlier runs read it.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Kept {
    /// The newest `updatedOn` read (RFC 3339), once the whole catalogue was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_to: Option<String>,
    #[serde(default)]
    pub entries: Vec<Entry>,
}

/// Where reading the catalogue stands in a run.
pub struct Catalogue {
    entries: BTreeMap<String, Entry>,
    /// What the state had: where this run reads from (`None`: the whole catalogue).
    updated_to: Option<DateTime<Utc>>,
    /// The newest `updatedOn` read so far (starting from `updated_to`).
    newest: Option<DateTime<Utc>>,
    stage: Stage,
}

enum Stage {
    Reading {
        skip: u64,
        sequence: u32,
    },
    Handing {
        after: Option<String>,
        sequence: u32,
    },
    /// Switched off in the settings.
    Off,
}

impl Catalogue {
    /// A run's catalogue: what the state kept, read on from there; or, `enabled`
    /// false, none at all.
    pub fn start(kept: Option<Kept>, enabled: bool) -> Catalogue {
        let kept = kept.unwrap_or_default();
        let updated_to = kept.updated_to.as_deref().and_then(parse_time);
        Catalogue {
            entries: kept.entries.into_iter().map(|e| (e.id.clone(), e)).collect(),
            updated_to,
            newest: updated_to,
            stage: if enabled { Stage::Reading { skip: 0, sequence: 0 } } else { Stage::Off },
        }
    }

    /// The next page of definitions, after reading what changed; `None` at the end.
    pub fn next_page(&mut self, api: &mut Client) -> Result<Option<Page>, PluginError> {
        loop {
            match &mut self.stage {
                Stage::Off => return Ok(None),
                Stage::Reading { skip, sequence } => {
                    let (skip, sequence) = (*skip, *sequence);
                    match self.read_page(api, skip, sequence) {
                        Ok(0) => {
                            // Everything read: the next run reads on from here.
                            self.updated_to = self.newest;
                            self.stage = Stage::Handing { after: None, sequence: 0 };
                        }
                        Ok(_) => self.stage = Stage::Reading { skip: skip + PAGE_SIZE, sequence: sequence + 1 },
                        Err(e) => {
                            output::count(UNREADABLE, 1);
                            let kept = self.entries.len();
                            log(
                                Level::Warn,
                                &format!(
                                    "Defender's vulnerability catalogue could not be read ({}); definitions keep {}",
                                    text_of(&e),
                                    if kept == 0 {
                                        "no description".to_owned()
                                    } else {
                                        format!("the text earlier runs read ({kept} kept)")
                                    }
                                ),
                            );
                            // `updated_to` stays: the next run reads again from there.
                            self.stage = Stage::Handing { after: None, sequence: 0 };
                        }
                    }
                }
                Stage::Handing { after, sequence } => {
                    let mut body = Vec::with_capacity(PART_BYTES.min(64 << 10));
                    body.push(b'[');
                    let from = match after.take() {
                        Some(last) => self
                            .entries
                            .range::<String, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded)),
                        None => self.entries.range::<String, _>(..),
                    };
                    let mut last = None;
                    for (id, entry) in from {
                        if last.is_some() {
                            if body.len() > PART_BYTES {
                                break;
                            }
                            body.push(b',');
                        }
                        serde_json::to_writer(&mut body, entry).expect("an entry serializes");
                        last = Some(id.clone());
                    }
                    let Some(last) = last else { return Ok(None) };
                    body.push(b']');
                    let page = Page { kind: DEFINITIONS.into(), sequence: *sequence, body };
                    self.stage = Stage::Handing { after: Some(last), sequence: *sequence + 1 };
                    return Ok(Some(page));
                }
            }
        }
    }

    /// Reads one page into the entries; the number of records it held.
    fn read_page(&mut self, api: &mut Client, skip: u64, sequence: u32) -> Result<usize, PluginError> {
        if sequence >= MAX_PAGES {
            return Err(PluginError::BadResponse(format!("{ENDPOINT} still had records after {MAX_PAGES} pages")));
        }
        let url = self.url(&api.settings.api_base, skip);
        let timeout = api.settings.page_timeout;
        let body = match api.get_found(&url, pacing::VULNERABILITIES, "Vulnerability.Read.All", timeout)? {
            Found::Body(body) => body,
            // As for machines, a page past the end may be a 404.
            Found::NotFound(_) if skip > 0 => return Ok(0),
            Found::NotFound(message) => {
                return Err(PluginError::BadResponse(format!("{ENDPOINT} answered HTTP 404 ({message})")))
            }
        };
        let records =
            parse_page(&body).map_err(|e| PluginError::BadResponse(format!("{ENDPOINT} page {} {e}", sequence + 1)))?;
        output::count(RECORDS_READ, records.len() as u64);
        for record in &records {
            if let Some(updated) = record.updated_on.as_deref().and_then(parse_time) {
                self.newest = Some(self.newest.map_or(updated, |n| n.max(updated)));
            }
            if let Some(entry) = record.entry() {
                self.entries.insert(entry.id.clone(), entry);
            }
        }
        output::progress("catalogue records", (skip + records.len() as u64).max(self.entries.len() as u64), None);
        // Only an empty page ends the catalogue: a short page may be a cap on the
        // page, not the end (paging guards, docs/defender-api.md).
        Ok(records.len())
    }

    fn url(&self, base: &str, skip: u64) -> String {
        let mut url = format!("{base}{ENDPOINT}?$top={PAGE_SIZE}&$skip={skip}");
        if let Some(since) = self.updated_to {
            let since = (since - OVERLAP).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            url.push_str(&format!("&$filter=updatedOn+gt+{}", since.replace(':', "%3A")));
        }
        url
    }

    /// What the next run starts from; `None` when it is too large to keep.
    pub fn kept(&self) -> Option<Kept> {
        if matches!(self.stage, Stage::Off) {
            return None;
        }
        let kept = Kept {
            updated_to: self.updated_to.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            entries: self.entries.values().cloned().collect(),
        };
        let bytes: usize = kept.entries.iter().map(|e| e.id.len() + e.description.len() + 40).sum();
        if bytes > MAX_KEPT_BYTES {
            log(
                Level::Warn,
                &format!(
                    "the catalogue's {} records are too large to keep ({} MiB); the next run reads it whole again",
                    kept.entries.len(),
                    bytes >> 20
                ),
            );
            return None;
        }
        Some(kept)
    }
}

/// The text of a plugin error, whichever its case.
pub(crate) fn text_of(e: &PluginError) -> &str {
    match e {
        PluginError::NotConfigured(t)
        | PluginError::Authentication(t)
        | PluginError::Permission(t)
        | PluginError::Unreachable(t)
        | PluginError::Throttled(t)
        | PluginError::BadResponse(t)
        | PluginError::Other(t) => t,
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// The records of a catalogue page (`{"value": [...]}`, a BOM tolerated).
pub fn parse_page(body: &[u8]) -> Result<Vec<Record>, String> {
    serde_json::from_slice::<CataloguePage>(strip_bom(body))
        .map(|page| page.value)
        .map_err(|e| format!("is not a page of records: {e}"))
}

/// The definitions of a [`DEFINITIONS`] page.
pub fn map_definitions(body: &[u8]) -> Result<Vec<VulnerabilityDefinition>, String> {
    let entries: Vec<Entry> =
        serde_json::from_slice(body).map_err(|e| format!("not a list of catalogue entries: {e}"))?;
    Ok(entries.iter().map(Entry::definition).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_every_field_in_a_fixed_order() {
        let record = Record {
            id: Some("cve-2024-30051".into()),
            name: Some("CVE-2024-30051".into()),
            description: Some(" Windows DWM Core Library Elevation of Privilege Vulnerability. ".into()),
            cvss_v3: Some(7.8),
            cvss_vector: Some("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H".into()),
            epss: Some(0.04512),
            published_on: Some("2024-05-14T00:00:00Z".into()),
            updated_on: Some("2024-05-20T00:00:00Z".into()),
            public_exploit: Some(true),
            exploit_verified: Some(true),
            exploit_in_kit: Some(false),
            exploit_types: Some(vec!["LocalPrivilegeEscalation".into()]),
        };
        let entry = record.entry().unwrap();
        assert_eq!(entry.id, "CVE-2024-30051");
        assert_eq!(entry.name, None, "a name that is the id is not kept twice");
        assert_eq!(
            entry.description,
            "Windows DWM Core Library Elevation of Privilege Vulnerability.\n\nDefender TVM: CVSS v3 7.8 (CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H); EPSS 0.045; public exploit yes; verified exploit yes; exploit kit no; exploit types LocalPrivilegeEscalation; published 2024-05-14."
        );
        let bare = Record { id: Some("TVM-2020-0002".into()), ..Record::default() };
        assert_eq!(
            bare.entry().unwrap().description,
            "Defender TVM: CVSS v3 unknown; EPSS unknown; public exploit unknown; verified exploit unknown; exploit kit unknown; exploit types unknown; published unknown."
        );
        assert!(Record { id: Some("  ".into()), ..Record::default() }.entry().is_none());
    }

    #[test]
    fn the_state_reads_on_from_a_day_before_the_newest_update() {
        let kept = Kept { updated_to: Some("2026-12-01T06:00:00Z".into()), entries: vec![] };
        let catalogue = Catalogue::start(Some(kept), true);
        assert_eq!(
            catalogue.url("https://api.example", 16_000),
            "https://api.example/api/vulnerabilities?$top=8000&$skip=16000&$filter=updatedOn+gt+2026-11-30T06%3A00%3A00Z"
        );
        let first = Catalogue::start(None, true);
        assert_eq!(first.url("https://api.example", 0), "https://api.example/api/vulnerabilities?$top=8000&$skip=0");
        assert_eq!(Catalogue::start(None, false).kept(), None, "switched off, nothing is kept");
    }

    #[test]
    fn definitions_pages_round_trip() {
        let entry = Entry { id: "TVM-2020-0002".into(), name: Some("Weak TLS".into()), description: "d".into() };
        let body = serde_json::to_vec(&vec![entry]).unwrap();
        let definitions = map_definitions(&body).unwrap();
        assert_eq!(definitions[0].identifier, "TVM-2020-0002");
        assert_eq!(definitions[0].name, "Weak TLS");
        assert!(definitions[0].cve_ids.is_empty());
        assert_eq!(definitions[0].description.as_deref(), Some("d"));
        assert!(map_definitions(b"{").is_err());
    }
}
