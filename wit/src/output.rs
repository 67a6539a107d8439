//! What a plugin produces: records from `map`, counters and progress from anywhere.
//!
//! [`Output`] is what `map` writes to. In the plugin it batches records and hands
//! them to the host; in unit tests ([`crate::testing`]) it keeps them for
//! assertions. The free functions [`count`] and [`progress`] are for `fetch`
//! (natively they record into a per-thread tally that tests can read).

use crate::types::{Asset, Vulnerability, VulnerabilityDefinition};
use std::collections::BTreeMap;

/// Records are handed to the host in batches of this many, to bound guest memory
/// and the number of boundary crossings.
pub const BATCH: usize = 5_000;

/// Everything `map` produced, as kept by a recording [`Output`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recorded {
    pub assets: Vec<Asset>,
    pub vulnerabilities: Vec<Vulnerability>,
    pub definitions: Vec<VulnerabilityDefinition>,
    /// Counters by name (`count`).
    pub counters: BTreeMap<String, u64>,
    /// Skipped source records by reason (`skip`).
    pub skipped: BTreeMap<String, u64>,
}

/// Where `map` puts records.
pub struct Output {
    to_host: bool,
    pending: Recorded,
}

impl Output {
    /// Batches records to the host (what the exported plugin uses).
    #[doc(hidden)]
    pub fn to_host() -> Self {
        Output { to_host: true, pending: Recorded::default() }
    }

    /// Keeps everything (what unit tests use; see [`crate::testing`]).
    pub fn recording() -> Self {
        Output { to_host: false, pending: Recorded::default() }
    }

    pub fn asset(&mut self, asset: Asset) {
        self.pending.assets.push(asset);
        self.flush_full();
    }

    pub fn vulnerability(&mut self, vulnerability: Vulnerability) {
        self.pending.vulnerabilities.push(vulnerability);
        self.flush_full();
    }

    pub fn definition(&mut self, definition: VulnerabilityDefinition) {
        self.pending.definitions.push(definition);
        self.flush_full();
    }

    pub fn assets(&mut self, assets: impl IntoIterator<Item = Asset>) {
        assets.into_iter().for_each(|a| self.asset(a));
    }

    pub fn vulnerabilities(&mut self, vulnerabilities: impl IntoIterator<Item = Vulnerability>) {
        vulnerabilities.into_iter().for_each(|v| self.vulnerability(v));
    }

    pub fn definitions(&mut self, definitions: impl IntoIterator<Item = VulnerabilityDefinition>) {
        definitions.into_iter().for_each(|d| self.definition(d));
    }

    /// Adds to a named counter shown in the run summary (e.g. "alerts fetched").
    pub fn count(&mut self, counter: &str, delta: u64) {
        if self.to_host {
            sys::count(counter, delta);
        } else {
            *self.pending.counters.entry(counter.to_owned()).or_default() += delta;
        }
    }

    /// Reports source records that were not mapped, and why (shown in the summary).
    pub fn skip(&mut self, reason: &str, count: u64) {
        if self.to_host {
            sys::skip(reason, count);
        } else {
            *self.pending.skipped.entry(reason.to_owned()).or_default() += count;
        }
    }

    /// Hands every pending record to the host (a no-op when recording).
    pub fn flush(&mut self) {
        if !self.to_host {
            return;
        }
        // Definitions and assets before vulnerabilities: the host does not require
        // an order, but this keeps its working set small.
        let p = &mut self.pending;
        if !p.definitions.is_empty() {
            sys::emit_definitions(&std::mem::take(&mut p.definitions));
        }
        if !p.assets.is_empty() {
            sys::emit_assets(&std::mem::take(&mut p.assets));
        }
        if !p.vulnerabilities.is_empty() {
            sys::emit_vulnerabilities(&std::mem::take(&mut p.vulnerabilities));
        }
    }

    /// What a recording output kept.
    pub fn into_recorded(mut self) -> Recorded {
        std::mem::take(&mut self.pending)
    }

    fn flush_full(&mut self) {
        let p = &self.pending;
        if self.to_host && (p.assets.len() >= BATCH || p.vulnerabilities.len() >= BATCH || p.definitions.len() >= BATCH)
        {
            self.flush();
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Adds to a named counter from `fetch` (e.g. "retries").
pub fn count(counter: &str, delta: u64) {
    sys::count(counter, delta)
}

/// Records from `fetch` that `count` source rows were skipped for `reason` (e.g.
/// rows that a later row replaced before they were handed out).
pub fn skip(reason: &str, count: u64) {
    sys::skip(reason, count)
}

/// Reports progress of a stage (`done` of `total`, when known); the CLI draws it.
pub fn progress(stage: &str, done: u64, total: Option<u64>) {
    sys::progress(stage, done, total)
}

/// Counters reported with [`count`] on this thread so far (native builds only, for
/// tests of fetch logic).
#[cfg(not(target_arch = "wasm32"))]
pub fn native_counters() -> BTreeMap<String, u64> {
    sys::COUNTERS.with_borrow(|c| c.clone())
}

#[cfg(target_arch = "wasm32")]
mod sys {
    use crate::bindings::vulnbridge::connector::output as wit;
    use crate::types::{Asset, Vulnerability, VulnerabilityDefinition};

    pub fn emit_assets(a: &[Asset]) {
        wit::emit_assets(a)
    }
    pub fn emit_vulnerabilities(v: &[Vulnerability]) {
        wit::emit_vulnerabilities(v)
    }
    pub fn emit_definitions(d: &[VulnerabilityDefinition]) {
        wit::emit_definitions(d)
    }
    pub fn count(counter: &str, delta: u64) {
        wit::count(counter, delta)
    }
    pub fn skip(reason: &str, count: u64) {
        wit::skip(reason, count)
    }
    pub fn progress(stage: &str, done: u64, total: Option<u64>) {
        wit::progress(stage, done, total)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    //! Natively there is no host: a "to host" output is never built, and counters
    //! from `fetch` are tallied per thread.
    use crate::types::{Asset, Vulnerability, VulnerabilityDefinition};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    thread_local! {
        pub static COUNTERS: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn emit_assets(_: &[Asset]) {
        unreachable!("Output::to_host is only built by the exported plugin")
    }
    pub fn emit_vulnerabilities(_: &[Vulnerability]) {
        unreachable!("Output::to_host is only built by the exported plugin")
    }
    pub fn emit_definitions(_: &[VulnerabilityDefinition]) {
        unreachable!("Output::to_host is only built by the exported plugin")
    }
    pub fn count(counter: &str, delta: u64) {
        COUNTERS.with_borrow_mut(|c| *c.entry(counter.to_owned()).or_default() += delta);
    }
    pub fn skip(reason: &str, count: u64) {
        self::count(reason, count)
    }
    pub fn progress(_: &str, _: u64, _: Option<u64>) {}
}
