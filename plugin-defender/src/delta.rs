//! Incremental runs on Defender's delta export,
//! `GET /api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime=…`
//! (docs/defender-api.md, "The delta export").
//!
//! The state kept between runs is one time: when the last delivered run began
//! (the plugin's clock, full precision). The next run asks for the changes since
//! that time less one snapshot window (Defender computes changes every 6 hours and
//! answers with the whole window `sinceTime` falls in, so an event computed late is
//! still read), and keeps, of every row `Id`, only its latest event: an event
//! read twice is the same event, and applying it again changes nothing. Nothing
//! is compared with an inclusive bound, so no boundary row is read forever: the
//! watermark moves to each delivered run's start.
//!
//! The run is full instead when there is no state, or when the time asked for would
//! reach back beyond the 14 days Defender keeps.
//!
//! One CVE on one device through two products is two rows; when one product is
//! updated, the delta says `Fixed` for its row and nothing of the other, which still
//! carries the CVE. Before a fixed CVE is reported, the plugin asks Defender which
//! devices it is still on (`GET /api/vulnerabilities/{cveId}/machineReferences`,
//! one call per CVE, only for CVEs fixed and not reopened in the delta) and keeps a
//! device's CVE open while it is listed there.

use crate::client::Client;
use crate::fetch::{check_next_link, parse, SeenLinks, PART_BYTES};
use crate::pacing;
use chrono::{DateTime, Utc};
use connector_sdk::output;
use connector_sdk::types::{Page, PluginError, RunMode, RunPlan, RunRequest};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const ENDPOINT: &str = "/api/machines/SoftwareVulnerabilityChangesByMachine";
/// Pages of change rows, each row the latest event of its `Id`.
pub const CHANGES: &str = "vulnerability-changes";

/// How far back Defender's delta export reaches.
pub const LOOKBACK: chrono::Duration = chrono::Duration::days(14);
/// Defender computes changes once per snapshot window; the overlap re-reads one.
pub const SNAPSHOT_WINDOW: chrono::Duration = chrono::Duration::hours(6);

/// Skip reason for events that a later event of the same row replaced.
pub const SUPERSEDED: &str = "change event superseded by a later one of the same row Id";
/// Skip reason for a `Fixed` row whose CVE the device still has through another product.
pub const STILL_PRESENT: &str = "fixed in one product, still on the device through another";

/// What the plugin keeps between runs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct State {
    /// The format of this state.
    pub version: u32,
    /// When the run that saved it began: the next run reads changes since then
    /// (less one snapshot window). RFC 3339, nanoseconds.
    pub run_started: String,
    /// The vulnerability catalogue as far as it was read (older states have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<crate::catalogue::Kept>,
}

impl State {
    /// The state a run that began at `started` saves.
    pub fn at(started: DateTime<Utc>) -> State {
        State { version: 1, run_started: started.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), catalogue: None }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a state serializes")
    }

    pub fn parse(bytes: &[u8]) -> Option<State> {
        serde_json::from_slice::<State>(bytes).ok().filter(|s| s.version == 1)
    }
}

/// How this run reads vulnerabilities, decided at `start`: the `sinceTime` of an
/// incremental run, or `None` for a full one; and the plan to answer.
pub fn plan(request: &RunRequest, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, RunPlan) {
    if request.mode == RunMode::Full {
        return (None, RunPlan::as_asked(request));
    }
    let Some(state) = request.state.as_deref() else {
        return (None, RunPlan::full("no state of an earlier run"));
    };
    let Some(state) = State::parse(state) else {
        return (None, RunPlan::full("the saved state is not one this plugin version reads"));
    };
    let Ok(started) = DateTime::parse_from_rfc3339(&state.run_started).map(|t| t.with_timezone(&Utc)) else {
        return (None, RunPlan::full("the saved state's time is unreadable"));
    };
    let since = started - SNAPSHOT_WINDOW;
    if now - since > LOOKBACK {
        let days = (now - since).num_days();
        return (
            None,
            RunPlan::full(format!(
                "changes since {} reach back {days} days, beyond the 14 days Defender's delta export keeps",
                since.format("%Y-%m-%d %H:%M UTC")
            )),
        );
    }
    (Some(since), RunPlan::as_asked(request))
}

/// The delta's URL for changes since `since`.
pub fn changes_url(base: &str, since: DateTime<Utc>, page_size: u32) -> String {
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!("{base}{ENDPOINT}?sinceTime={}&pageSize={page_size}", since.replace(':', "%3A").replace('+', "%2B"))
}

/// The change rows of a run: every page read first (the latest event of a row may
/// be on any page), then handed out in parts.
pub struct Changes {
    next: Option<String>,
    sequence: u32,
    seen: SeenLinks,
    /// The latest event of each row `Id` (its hash): its time, whether it opens,
    /// the device and identifier it is about, and the row's bytes.
    latest: HashMap<u64, (Event, Pair, Box<[u8]>)>,
    rows: u64,
    /// Once every page is read: the rows to hand out, and how many were.
    out: Option<(Vec<Box<[u8]>>, usize)>,
    handed: u32,
}

/// What orders two events of one row: the later wins; at the same time, the one
/// that leaves the row open (a device moved between RBAC groups is `Fixed` under
/// the old group and `New` under the new one).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Event {
    at: (i64, u32),
    opens: bool,
}

/// A row's device and vulnerability identifier (as the mapping writes it).
type Pair = Option<(Box<str>, String)>;

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(alias = "DeviceId", rename = "deviceId", borrow)]
    device_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(alias = "CveId", rename = "cveId", borrow)]
    cve_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(alias = "Id", borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(alias = "EventTimestamp", rename = "eventTimestamp", borrow)]
    event_timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(alias = "Status", borrow)]
    status: Option<std::borrow::Cow<'a, str>>,
}

impl Changes {
    pub fn new(base: &str, since: DateTime<Utc>, page_size: u32) -> Changes {
        Changes {
            next: Some(changes_url(base, since, page_size)),
            sequence: 0,
            seen: SeenLinks::default(),
            latest: HashMap::new(),
            rows: 0,
            out: None,
            handed: 0,
        }
    }

    /// The next page of change rows, or `None` after the last.
    pub fn next_page(&mut self, api: &mut Client) -> Result<Option<Page>, PluginError> {
        while let Some(url) = self.next.take() {
            let body = api.get(&url, pacing::VULNERABILITIES, "Vulnerability.Read.All", api.settings.page_timeout)?;
            self.read(&body, &api.settings.api_bases)?;
        }
        if self.out.is_none() {
            let still = self.keep_open_where_still_present(api)?;
            if still > 0 {
                output::count(crate::mapping::ROWS_FETCHED, still);
                output::skip(STILL_PRESENT, still);
            }
        }
        let (rows, at) = self.out.get_or_insert_with(|| {
            let superseded = self.rows - self.latest.len() as u64;
            if superseded > 0 {
                output::count(crate::mapping::ROWS_FETCHED, superseded);
                output::skip(SUPERSEDED, superseded);
            }
            let mut rows: Vec<(u64, Box<[u8]>)> =
                std::mem::take(&mut self.latest).into_iter().map(|(id, (_, _, row))| (id, row)).collect();
            // In a stable order, so that a run's pages do not depend on hashing.
            rows.sort_unstable_by_key(|(id, _)| *id);
            (rows.into_iter().map(|(_, row)| row).collect(), 0)
        });
        if *at >= rows.len() {
            return Ok(None);
        }
        let mut body = Vec::with_capacity(PART_BYTES.min(rows[*at..].iter().map(|r| r.len() + 1).sum()) + 12);
        body.extend_from_slice(b"{\"value\":[");
        let first = *at;
        while *at < rows.len() && (*at == first || body.len() + rows[*at].len() + 3 <= PART_BYTES) {
            if *at > first {
                body.push(b',');
            }
            body.extend_from_slice(&rows[*at]);
            *at += 1;
        }
        body.extend_from_slice(b"]}");
        let page = Page { kind: CHANGES.into(), sequence: self.handed, body };
        self.handed += 1;
        Ok(Some(page))
    }

    /// Drops the `Fixed` rows whose CVE Defender still lists on their device (through
    /// another product), so the device's CVE stays open; returns how many. One call
    /// per CVE fixed and not reopened on the same device in this delta.
    fn keep_open_where_still_present(&mut self, api: &mut Client) -> Result<u64, PluginError> {
        let open: std::collections::HashSet<&(Box<str>, String)> =
            self.latest.values().filter(|(e, _, _)| e.opens).filter_map(|(_, pair, _)| pair.as_ref()).collect();
        let mut fixed: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for (key, (event, pair, _)) in &self.latest {
            if let Some(pair) = pair.as_ref().filter(|p| !event.opens && !open.contains(p) && !p.1.is_empty()) {
                fixed.entry(pair.1.clone()).or_default().push(*key);
            }
        }
        let mut still = 0;
        for (cve, keys) in fixed {
            let devices = devices_with(api, &cve)?;
            for key in keys {
                let on_device = self.latest[&key].1.as_ref().is_some_and(|(device, _)| devices.contains(&**device));
                if on_device {
                    self.latest.remove(&key);
                    still += 1;
                }
            }
        }
        Ok(still)
    }

    /// Reads one page of the delta: keeps the latest event of each row, notes the
    /// next link.
    fn read(&mut self, body: &[u8], api_bases: &[String]) -> Result<(), PluginError> {
        let page: crate::model::Page = parse(body, ENDPOINT, self.sequence)?;
        for row in &page.value {
            self.rows += 1;
            let head: Head = match serde_json::from_str(row.get()) {
                Ok(head) => head,
                // The mapping skips it with its reason.
                Err(_) => Head { device_id: None, cve_id: None, id: None, event_timestamp: None, status: None },
            };
            let event = Event {
                at: head
                    .event_timestamp
                    .as_deref()
                    .and_then(crate::mapping::datetime)
                    .map_or((i64::MIN, 0), |t| (t.seconds, t.nanoseconds)),
                opens: !head.status.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case("fixed")),
            };
            // A row without an Id cannot be matched with its other events: kept
            // on its own (under the hash of its bytes), for the mapping to judge.
            let key = crate::fetch::hash64(head.id.as_deref().map_or(row.get(), str::trim));
            let bytes: Box<[u8]> = row.get().as_bytes().into();
            let pair = head
                .device_id
                .as_deref()
                .zip(head.cve_id.as_deref())
                .map(|(device, cve)| (device.trim().into(), crate::mapping::identifier(cve)));
            match self.latest.get(&key) {
                Some((kept, _, _)) if *kept >= event => {}
                _ => {
                    self.latest.insert(key, (event, pair, bytes));
                }
            }
        }
        output::progress("vulnerability changes", self.rows, None);
        if let Some(link) = page.next_link {
            check_next_link(api_bases, &link, &self.seen, ENDPOINT, self.sequence)?;
            self.seen.insert(&link);
            self.next = Some(link);
            self.sequence += 1;
        }
        Ok(())
    }
}

/// The devices Defender lists as still exposed to `cve` (every page); none when it
/// does not know the id.
fn devices_with(api: &mut Client, cve: &str) -> Result<std::collections::HashSet<String>, PluginError> {
    let endpoint = "/api/vulnerabilities/{cveId}/machineReferences";
    let encoded: String = form_urlencoded::byte_serialize(cve.as_bytes()).collect();
    let mut next = Some(format!("{}/api/vulnerabilities/{encoded}/machineReferences", api.settings.api_base));
    let (mut devices, mut seen, mut sequence) = (std::collections::HashSet::new(), SeenLinks::default(), 0);
    while let Some(url) = next.take() {
        // A listing of machines: paced with the machines listing (100 calls a minute).
        let timeout = api.settings.request_timeout;
        let body = match api.get_found(&url, pacing::MACHINES, "Vulnerability.Read.All", timeout)? {
            crate::client::Found::Body(body) => body,
            crate::client::Found::NotFound(_) => break,
        };
        let page: crate::model::MachinesEnvelope = parse(&body, endpoint, sequence)?;
        devices.extend(page.value.iter().filter_map(|m| m.id.as_deref()).map(|id| id.trim().to_owned()));
        if let Some(link) = page.next_link {
            check_next_link(&api.settings.api_bases, &link, &seen, endpoint, sequence)?;
            seen.insert(&link);
            next = Some(link);
            sequence += 1;
        }
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn request(mode: RunMode, state: Option<&State>) -> RunRequest {
        RunRequest { mode, state: state.map(State::to_bytes) }
    }

    #[test]
    fn a_run_is_incremental_only_with_a_readable_state_within_the_lookback() {
        let now = at("2026-12-03T12:00:00Z");
        let state = State::at(at("2026-12-03T06:00:00.123456789Z"));
        let (since, asked) = plan(&request(RunMode::Incremental, Some(&state)), now);
        assert_eq!(asked.mode, RunMode::Incremental);
        assert_eq!(since, Some(at("2026-12-03T00:00:00.123456789Z")), "one snapshot window of overlap");
        let (since, asked) = plan(&request(RunMode::Full, Some(&state)), now);
        assert_eq!((since, asked.mode), (None, RunMode::Full));
        let (_, first) = plan(&request(RunMode::Incremental, None), now);
        assert_eq!(first.mode, RunMode::Full);
        let old = State::at(at("2026-11-19T11:00:00Z"));
        let (_, too_old) = plan(&request(RunMode::Incremental, Some(&old)), now);
        assert_eq!(too_old.mode, RunMode::Full);
        assert!(too_old.reason.unwrap().contains("beyond the 14 days"));
        let garbage = RunRequest { mode: RunMode::Incremental, state: Some(b"{".to_vec()) };
        assert_eq!(plan(&garbage, now).1.mode, RunMode::Full);
    }

    #[test]
    fn the_latest_event_of_a_row_wins_and_an_open_one_wins_a_tie() {
        let mut changes = Changes::new("https://api.example.com", at("2026-12-01T00:00:00Z"), 10);
        changes.next = None;
        let row = |id: &str, at: &str, status: &str| {
            format!(
                r#"{{"id":"{id}","eventTimestamp":"{at}","status":"{status}","deviceId":"d","cveId":"CVE-2024-0001"}}"#
            )
        };
        let page = format!(
            r#"{{"value":[{},{},{},{},{}]}}"#,
            row("a", "2026-12-01 01:00:00.0000001", "New"),
            row("a", "2026-12-01 01:00:00.0000002", "Fixed"),
            row("b", "2026-12-01 02:00:00", "Fixed"),
            row("b", "2026-12-01 02:00:00", "New"),
            row("c", "2026-12-01 03:00:00", "Updated"),
        );
        changes.read(page.as_bytes(), &["https://api.example.com".into()]).unwrap();
        let kept: Vec<String> =
            changes.latest.values().map(|(_, _, row)| String::from_utf8(row.to_vec()).unwrap()).collect();
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().any(|r| r.contains(r#""id":"a""#) && r.contains("Fixed")), "later by 100 ns: {kept:?}");
        assert!(kept.iter().any(|r| r.contains(r#""id":"b""#) && r.contains("New")), "a tie keeps it open: {kept:?}");
    }

    #[test]
    fn since_time_is_written_at_microseconds_and_url_encoded() {
        let url = changes_url("https://h", at("2026-12-03T00:00:00.123456789Z"), 5);
        assert_eq!(url, "https://h/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime=2026-12-03T00%3A00%3A00.123456Z&pageSize=5");
    }
}
