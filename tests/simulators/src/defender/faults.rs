//! Fault knobs of the simulated tenant: the ways real tenants throttle, fail, page
//! oddly and expire things, each switchable on its own.

use std::time::Duration;

/// How a 429 says when to come back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <HTTP date>` this many seconds ahead.
    HttpDate(u64),
    /// No header.
    Absent,
}

/// Which API endpoint a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Machines,
    Vulnerabilities,
}

/// A server error on one page of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerError {
    pub endpoint: Endpoint,
    /// 0-based page index (by offset / page size).
    pub page: u64,
    /// Every request for that page and the ones after it fails; otherwise only the
    /// first request for that page.
    pub always: bool,
}

/// Every knob is off by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Every Nth API call (machines, vulnerabilities, export list) answers 429.
    pub throttle_every: Option<(u64, RetryAfter)>,
    /// 503 on a page, once or from that page on.
    pub server_error: Option<ServerError>,
    /// Tokens stop working this long after they were issued.
    pub token_valid_for: Option<Duration>,
    /// What the token response says about its lifetime (seconds); default 3599.
    pub token_expires_in: Option<u64>,
    /// Every API response is delayed this long.
    pub slow: Option<Duration>,
    /// The body of this vulnerabilities page is cut off mid-transfer, once.
    pub truncate_page_once: Option<u64>,
    /// This vulnerabilities page is answered with malformed JSON, always.
    pub malformed_page: Option<u64>,
    /// The nextLink after this vulnerabilities page points back to the first page.
    pub next_link_loop_after: Option<u64>,
    /// The first vulnerabilities nextLink points to another origin.
    pub foreign_next_link: bool,
    /// The machine list repeats some machines with an older `lastSeen`, and adds
    /// machines merged into others.
    pub duplicate_machines: bool,
    /// `/api/machines` sends a nextLink (in `$skip` steps) even when `$top` is given.
    pub machines_next_link: bool,
    /// Vulnerabilities calls allowed in any rolling window; more get 429.
    pub vulnerabilities_rate_limit: Option<(usize, Duration)>,
    /// Export files the export is split into (default 3).
    pub export_files: Option<usize>,
    /// The first download of this export file answers 403 (expired signature).
    pub export_expire_once: Option<usize>,
    /// `/api/vulnerabilities` (the catalogue) answers 403, as for an application
    /// whose consent does not cover it.
    pub catalogue_forbidden: bool,
    /// The first range of this export file after its first answers 403 (the
    /// signature expired while the file was being read).
    pub export_expire_mid_file: Option<usize>,
    /// The first download of this export file answers 200 with an empty body.
    pub export_empty_once: Option<usize>,
}
