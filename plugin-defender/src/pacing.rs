//! Pacing calls to Defender's documented rate limits, per endpoint
//! (docs/defender-api.md, "Rate limits"): machines 100/min and 1,500/h; vulnerabilities 30/min
//! and 1,000/h; export 5/min and 20/h.
//!
//! Each limit is a token bucket whose tokens come back one window after they were
//! spent (a sliding window). Unlike a bucket that refills at a steady rate, it never
//! lets more than `count` calls into any window, so the connector cannot provoke
//! throttling itself, while a small tenant's few calls go out at once.
//!
//! Written here rather than taken from a crate because it runs inside the WebAssembly
//! guest, on the guest's clock and sleep (WASI), which rate-limiting crates do not
//! target; it is a queue of instants per limit.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The documented limits.
pub const DEFAULT_LIMITS: &str = "machines=100/min,1500/h; vulnerabilities=30/min,1000/h; export=5/min,20/h";

/// The endpoints paced separately.
pub const MACHINES: &str = "machines";
pub const VULNERABILITIES: &str = "vulnerabilities";
pub const EXPORT: &str = "export";

#[derive(Clone, Debug, PartialEq)]
struct Window {
    count: usize,
    length: Duration,
    spent: VecDeque<Instant>,
}

/// The limits of every endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pacer {
    limits: BTreeMap<String, Vec<Window>>,
}

impl Pacer {
    /// Parses `endpoint=count/window[,count/window...]; ...`, where a window is `s`,
    /// `min`, `h` or a number of seconds like `10s`; `off` disables pacing.
    pub fn parse(spec: &str) -> Result<Pacer, String> {
        let spec = spec.trim();
        let mut pacer = Pacer::default();
        if spec.eq_ignore_ascii_case("off") || spec.is_empty() {
            return Ok(pacer);
        }
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (endpoint, limits) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected endpoint=count/window, e.g. vulnerabilities=30/min"))?;
            let endpoint = endpoint.trim();
            if ![MACHINES, VULNERABILITIES, EXPORT].contains(&endpoint) {
                return Err(format!("`{endpoint}` is not an endpoint; use machines, vulnerabilities or export"));
            }
            let mut windows = Vec::new();
            for limit in limits.split(',').map(str::trim) {
                let (count, window) =
                    limit.split_once('/').ok_or_else(|| format!("`{limit}`: expected count/window, e.g. 30/min"))?;
                let count: usize = count
                    .trim()
                    .parse()
                    .ok()
                    .filter(|c| *c > 0)
                    .ok_or_else(|| format!("`{limit}`: the count must be a whole number above 0"))?;
                windows.push(Window { count, length: parse_window(window.trim())?, spent: VecDeque::new() });
            }
            pacer.limits.insert(endpoint.to_owned(), windows);
        }
        Ok(pacer)
    }

    /// How long a call to `endpoint` must wait now so that no limit is exceeded.
    pub fn wait_needed(&mut self, endpoint: &str, now: Instant) -> Duration {
        let Some(windows) = self.limits.get_mut(endpoint) else { return Duration::ZERO };
        let mut wait = Duration::ZERO;
        for w in windows.iter_mut() {
            while w.spent.front().is_some_and(|t| now.duration_since(*t) >= w.length) {
                w.spent.pop_front();
            }
            if w.spent.len() >= w.count {
                let oldest = w.spent[w.spent.len() - w.count];
                wait = wait.max((oldest + w.length).saturating_duration_since(now));
            }
        }
        wait
    }

    /// Records a call to `endpoint` made at `at`.
    pub fn record(&mut self, endpoint: &str, at: Instant) {
        if let Some(windows) = self.limits.get_mut(endpoint) {
            for w in windows {
                w.spent.push_back(at);
            }
        }
    }

    /// Waits (sleeping) until a call to `endpoint` is allowed and returns how long it
    /// waited. Record the call with [`Pacer::record`] when its response has arrived:
    /// the server saw the request before that instant, so spacing calls from their
    /// completions keeps any window of the server's clock within the limit, whatever
    /// the network's delays.
    pub fn wait(&mut self, endpoint: &str) -> Duration {
        let start = Instant::now();
        loop {
            let wait = self.wait_needed(endpoint, Instant::now());
            if wait.is_zero() {
                return start.elapsed();
            }
            std::thread::sleep(wait);
        }
    }
}

fn parse_window(text: &str) -> Result<Duration, String> {
    match text {
        "s" | "sec" => Ok(Duration::from_secs(1)),
        "min" | "m" => Ok(Duration::from_secs(60)),
        "h" | "hour" => Ok(Duration::from_secs(3600)),
        _ => text
            .strip_suffix('s')
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{text}` is not a window; use s, min, h or a number of seconds such as 10s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_limits_parse() {
        let p = Pacer::parse(DEFAULT_LIMITS).unwrap();
        assert_eq!(
            p.limits["machines"].iter().map(|w| (w.count, w.length.as_secs())).collect::<Vec<_>>(),
            [(100, 60), (1500, 3600)]
        );
        assert_eq!(p.limits["export"].len(), 2);
        assert_eq!(Pacer::parse("off").unwrap(), Pacer::default());
    }

    #[test]
    fn bad_specs_say_what_is_expected() {
        assert!(Pacer::parse("devices=1/min").unwrap_err().contains("not an endpoint"));
        assert!(Pacer::parse("machines=0/min").unwrap_err().contains("above 0"));
        assert!(Pacer::parse("machines=5/fortnight").unwrap_err().contains("not a window"));
        assert!(Pacer::parse("machines").unwrap_err().contains("expected endpoint=count/window"));
    }

    #[test]
    fn a_burst_within_the_limit_does_not_wait_and_the_next_call_waits_a_window() {
        let mut p = Pacer::parse("vulnerabilities=3/10s").unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(p.wait_needed("vulnerabilities", t0 + Duration::from_secs(i)), Duration::ZERO);
            p.record("vulnerabilities", t0 + Duration::from_secs(i));
        }
        // The fourth call must wait until the first is 10 s old.
        assert_eq!(p.wait_needed("vulnerabilities", t0 + Duration::from_secs(3)), Duration::from_secs(7));
        assert_eq!(p.wait_needed("vulnerabilities", t0 + Duration::from_secs(10)), Duration::ZERO);
        // Other endpoints are not paced by this limit.
        assert_eq!(p.wait_needed("machines", t0), Duration::ZERO);
    }

    #[test]
    fn the_strictest_window_decides() {
        let mut p = Pacer::parse("export=5/min,2/h").unwrap();
        let t0 = Instant::now();
        p.record("export", t0);
        p.record("export", t0 + Duration::from_secs(1));
        let wait = p.wait_needed("export", t0 + Duration::from_secs(2));
        assert_eq!(wait, Duration::from_secs(3598));
    }
}
