//! The fault matrix: every way the simulated tenant can misbehave, and the outcome the
//! connector must reach: the same KDI as a clean run, or a clear error and no files.

use connector_e2e::{artifacts, kdi};
use connector_host::config::ConnectorConfig;
use connector_host::engine::{Plugin, PluginHost, SessionOptions};
use connector_host::run::{self, RunOptions};
use connector_host::summary::RunSummary;
use connector_simulators::defender::{DefenderSim, Endpoint, Faults, RetryAfter, ServerError, SimOptions, TenantSpec};
use serde_json::Value;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SPEC: TenantSpec = TenantSpec { seed: 21, devices: 120, rows: 3_000 };
/// Small pages, so that faults can hit a page in the middle; quick retries.
const SETTINGS: &str =
    "page_size = 500\nmachines_page_size = 50\nretry_delay_ms = 50\nmax_retries = 3\nrate_limits = \"off\"\n";

fn host() -> &'static (PluginHost, Plugin) {
    static HOST: OnceLock<(PluginHost, Plugin)> = OnceLock::new();
    HOST.get_or_init(|| {
        let host = PluginHost::new().unwrap();
        let plugin = host.load(&artifacts::plugin("plugin_defender")).unwrap();
        (host, plugin)
    })
}

struct Outcome {
    result: anyhow::Result<RunSummary>,
    files: Vec<(String, Value)>,
    sim: DefenderSim,
    elapsed: Duration,
}

impl Outcome {
    fn summary(&self) -> &RunSummary {
        self.result.as_ref().unwrap_or_else(|e| panic!("the run failed: {e:#}"))
    }

    fn error(&self) -> String {
        match &self.result {
            Ok(_) => panic!("the run should have failed"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn calls(&self, what: &str) -> u64 {
        self.sim.calls().get(what).copied().unwrap_or(0)
    }
}

/// The test settings with `extra` lines overriding keys they share.
fn settings(extra: &str) -> String {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
    let overridden: Vec<String> = extra.lines().map(key).collect();
    let kept: String = SETTINGS.lines().filter(|l| !overridden.contains(&key(l))).map(|l| format!("{l}\n")).collect();
    format!("{kept}{extra}")
}

fn run_with(name: &str, faults: Faults, extra: &str) -> Outcome {
    let sim = DefenderSim::start(SPEC, SimOptions { faults, ..Default::default() }).unwrap();
    let config = ConnectorConfig::parse(&format!("{}{}", sim.config_toml(), settings(extra)), &|_| None).unwrap();
    let out = kdi::temp_dir(&format!("faults-{name}"));
    let (host, plugin) = host();
    let started = Instant::now();
    let result = run::run(
        host,
        plugin,
        &config,
        SessionOptions { allow_insecure_loopback: true, ..Default::default() },
        &RunOptions { out_dir: out.clone(), assets_per_file: 50, ..Default::default() },
    );
    let elapsed = started.elapsed();
    let files = kdi::read_dir(&out);
    Outcome { result, files, sim, elapsed }
}

/// The KDI of a clean run of the same tenant.
fn baseline() -> &'static Vec<(String, Value)> {
    static BASELINE: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let clean = run_with("baseline", Faults::default(), "");
        clean.summary();
        assert!(clean.files.len() > 1);
        clean.files
    })
}

fn assert_same_as_clean_run(outcome: &Outcome) {
    outcome.summary();
    assert!(outcome.files == *baseline(), "the KDI differs from a clean run's");
}

fn assert_nothing_written(outcome: &Outcome) {
    assert!(outcome.files.is_empty(), "a failed run wrote {} files", outcome.files.len());
}

#[test]
fn throttling_with_retry_after_seconds_is_waited_out() {
    let o = run_with(
        "throttle-seconds",
        Faults { throttle_every: Some((3, RetryAfter::Seconds(1))), ..Default::default() },
        "",
    );
    assert_same_as_clean_run(&o);
    let throttled = o.calls("429");
    assert!(throttled >= 3, "{throttled}");
    assert_eq!(o.summary().throttled_responses, throttled);
    assert!(o.elapsed >= Duration::from_secs(throttled), "each 429 waits the second Retry-After asks for");
}

#[test]
fn throttling_with_an_http_date_is_waited_out() {
    let o = run_with(
        "throttle-date",
        Faults { throttle_every: Some((4, RetryAfter::HttpDate(1))), ..Default::default() },
        "",
    );
    assert_same_as_clean_run(&o);
    assert!(o.summary().throttled_responses >= 2);
}

#[test]
fn throttling_without_retry_after_backs_off() {
    let o =
        run_with("throttle-absent", Faults { throttle_every: Some((5, RetryAfter::Absent)), ..Default::default() }, "");
    assert_same_as_clean_run(&o);
    assert!(o.summary().counters["requests retried"] >= 1);
}

#[test]
fn a_server_error_once_is_retried() {
    let fault = ServerError { endpoint: Endpoint::Vulnerabilities, page: 2, always: false };
    let o = run_with("5xx-once", Faults { server_error: Some(fault), ..Default::default() }, "");
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("503"), 1);
    assert_eq!(o.summary().counters["requests retried"], 1);
}

#[test]
fn a_server_error_on_the_machines_endpoint_is_retried() {
    let fault = ServerError { endpoint: Endpoint::Machines, page: 1, always: false };
    let o = run_with("5xx-machines", Faults { server_error: Some(fault), ..Default::default() }, "");
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("503"), 1);
}

#[test]
fn server_errors_from_a_page_on_stop_the_run_with_nothing_written() {
    let fault = ServerError { endpoint: Endpoint::Vulnerabilities, page: 2, always: true };
    let o = run_with("5xx-always", Faults { server_error: Some(fault), ..Default::default() }, "");
    let error = o.error();
    assert!(
        error.contains("/api/machines/SoftwareVulnerabilitiesByMachine answered HTTP 503 4 time(s) in a row"),
        "{error}"
    );
    assert_nothing_written(&o);
    assert_eq!(o.calls("503"), 4, "max_retries = 3: one try and three retries");
}

#[test]
fn a_token_that_expires_mid_run_is_renewed_once_per_401() {
    let faults = Faults {
        token_valid_for: Some(Duration::from_millis(300)),
        slow: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let o = run_with("token-expiry", faults, "");
    assert_same_as_clean_run(&o);
    assert!(o.calls("401") >= 1);
    assert!(o.calls("token") >= 2);
}

#[test]
fn a_token_is_renewed_before_it_expires() {
    // The token says it lives 2 s (so the connector renews it after 1.6 s); the API
    // would refuse it only after 3 s, leaving a margin for a loaded machine.
    let faults = Faults {
        token_expires_in: Some(2),
        token_valid_for: Some(Duration::from_secs(3)),
        slow: Some(Duration::from_millis(350)),
        ..Default::default()
    };
    let o = run_with("token-refresh", faults, "");
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("401"), 0, "renewed before the API had to refuse it");
    assert!(o.calls("token") >= 2);
}

#[test]
fn responses_slower_than_the_timeout_are_retried_then_reported() {
    let faults = Faults { slow: Some(Duration::from_millis(1_500)), ..Default::default() };
    let o = run_with("slow", faults, "request_timeout_seconds = 1\npage_timeout_seconds = 1\nmax_retries = 1\n");
    let error = o.error();
    assert!(
        error.contains("host unreachable") && error.contains("within 1 s") && error.contains("after 2 attempts"),
        "{error}"
    );
    assert_nothing_written(&o);
}

#[test]
fn slow_responses_within_the_timeout_are_fine() {
    let o = run_with("slow-ok", Faults { slow: Some(Duration::from_millis(100)), ..Default::default() }, "");
    assert_same_as_clean_run(&o);
}

#[test]
fn a_body_cut_mid_transfer_is_fetched_again() {
    let o = run_with("truncated", Faults { truncate_page_once: Some(3), ..Default::default() }, "");
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("truncated"), 1);
    assert_eq!(o.summary().counters["requests retried"], 1);
}

#[test]
fn a_malformed_page_is_an_error_naming_endpoint_and_page() {
    let o = run_with("malformed", Faults { malformed_page: Some(2), ..Default::default() }, "");
    let error = o.error();
    assert!(
        error.contains("/api/machines/SoftwareVulnerabilitiesByMachine page 3 is not a readable OData page"),
        "{error}"
    );
    assert_nothing_written(&o);
}

#[test]
fn a_next_link_loop_is_an_error() {
    let o = run_with("loop", Faults { next_link_loop_after: Some(2), ..Default::default() }, "");
    let error = o.error();
    // Page 3 links to the first page's offset under a new token; that page's own link is
    // the one page 1 had: caught there, before the loop goes round again.
    assert!(error.contains("page 4 links back to a page already fetched"), "{error}");
    assert_nothing_written(&o);
}

#[test]
fn a_next_link_to_another_host_is_refused_before_the_token_goes_there() {
    let o = run_with("foreign", Faults { foreign_next_link: true, ..Default::default() }, "");
    let error = o.error();
    assert!(error.contains("nextLink to another origin (127.0.0.2:9); refusing to send the token there"), "{error}");
    assert_eq!(o.calls("vulnerabilities"), 1, "no request followed the foreign link");
    assert_nothing_written(&o);
}

#[test]
fn duplicate_and_merged_machines_give_each_device_once() {
    let o = run_with("duplicates", Faults { duplicate_machines: true, ..Default::default() }, "");
    assert_same_as_clean_run(&o);
    let s = o.summary();
    assert!(s.counters["duplicate asset reports merged (latest last seen kept)"] > 0);
    assert!(s.skipped["machine merged into another (mergedIntoMachineId)"] > 0);
}

#[test]
fn machine_next_links_are_followed() {
    let o = run_with("machines-nextlink", Faults { machines_next_link: true, ..Default::default() }, "");
    assert_same_as_clean_run(&o);
}

#[test]
fn pacing_keeps_the_connector_under_the_rate_limit() {
    let limit = Faults { vulnerabilities_rate_limit: Some((2, Duration::from_secs(1))), ..Default::default() };
    let paced = run_with("paced", limit.clone(), "rate_limits = \"vulnerabilities=2/1s\"\n");
    assert_same_as_clean_run(&paced);
    assert_eq!(paced.calls("429"), 0, "pacing must never provoke throttling");
    // 6 pages at 2 per second: the last two wait for the second window.
    assert!(paced.elapsed >= Duration::from_secs(2), "{:?}", paced.elapsed);

    let unpaced = run_with("unpaced", limit, "");
    assert!(unpaced.calls("429") > 0, "without pacing the same tenant throttles");
}

#[test]
fn export_mode_gives_the_same_kdi_as_json_pages() {
    let o = run_with("export", Faults::default(), "api_mode = \"export\"\n");
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("export list"), 1);
    assert_eq!(o.calls("export file"), 3);
    assert_eq!(o.calls("vulnerabilities"), 0);
    assert_eq!(o.calls("export file with a bearer token"), 0, "the token never goes to storage");
}

#[test]
fn auto_mode_uses_the_export_above_the_device_threshold() {
    let o = run_with("auto", Faults::default(), "export_above_devices = 10\n");
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("export list"), 1);
    let below = run_with("auto-below", Faults::default(), "export_above_devices = 100000\n");
    assert_eq!(below.calls("export list"), 0);
}

#[test]
fn an_expired_export_link_asks_for_a_new_list() {
    let o = run_with(
        "export-expired",
        Faults { export_expire_once: Some(1), ..Default::default() },
        "api_mode = \"export\"\n",
    );
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("export link expired"), 1);
    assert_eq!(o.calls("export list"), 2);
}

/// An export file larger than a range is read in ranges; when its link expires
/// half-way, a new list is asked for and the file is read on from where it stood
/// (same generation, same bytes): the KDI is a JSON-page run's, byte for byte.
#[test]
fn a_large_export_file_is_read_in_ranges_and_read_on_after_its_link_expires() {
    let spec = TenantSpec { seed: 23, devices: 400, rows: 60_000 };
    let run = |name: &str, faults: Faults, extra: &str| {
        let sim = DefenderSim::start(spec.clone(), SimOptions { faults, ..Default::default() }).unwrap();
        let config = ConnectorConfig::parse(&format!("{}{}", sim.config_toml(), settings(extra)), &|_| None).unwrap();
        let out = kdi::temp_dir(&format!("faults-{name}"));
        let (host, plugin) = host();
        run::run(
            host,
            plugin,
            &config,
            SessionOptions { allow_insecure_loopback: true, ..Default::default() },
            &RunOptions { out_dir: out.clone(), assets_per_file: 100, ..Default::default() },
        )
        .unwrap();
        let calls = sim.calls();
        (kdi::read_dir(&out), calls)
    };
    let (json_files, _) = run("ranges-json", Faults::default(), "");
    let faults = Faults { export_files: Some(1), export_expire_mid_file: Some(0), ..Default::default() };
    let (files, calls) = run("ranges-export", faults, "api_mode = \"export\"\n");
    assert!(calls["export file range"] >= 2, "the file came in ranges: {calls:?}");
    assert_eq!(calls["export link expired"], 1);
    assert_eq!(calls["export list"], 2, "a new list after the expiry");
    assert!(files == json_files, "the KDI differs from the JSON pages' run");
}

#[test]
fn an_empty_export_file_is_fetched_again() {
    let o = run_with(
        "export-empty",
        Faults { export_empty_once: Some(2), ..Default::default() },
        "api_mode = \"export\"\n",
    );
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("export file empty"), 1);
}

#[test]
fn the_v1_token_endpoint_works_as_a_fallback() {
    let o = run_with("v1", Faults::default(), "token_endpoint = \"v1\"\n");
    assert_same_as_clean_run(&o);
}

#[test]
fn a_missing_permission_is_not_retried() {
    let sim =
        DefenderSim::start(SPEC, SimOptions { roles: vec!["Machine.Read.All".into()], ..Default::default() }).unwrap();
    let config = ConnectorConfig::parse(&format!("{}{SETTINGS}", sim.config_toml()), &|_| None).unwrap();
    let out = kdi::temp_dir("faults-403");
    let (host, plugin) = host();
    let options = SessionOptions { allow_insecure_loopback: true, ..Default::default() };
    let error = run::run(
        host,
        plugin,
        &config,
        options,
        &RunOptions { out_dir: out.clone(), assets_per_file: 50, ..Default::default() },
    )
    .unwrap_err();
    assert!(format!("{error:#}").contains("missing permission Vulnerability.Read.All"), "{error:#}");
    assert_eq!(sim.calls()["vulnerabilities"], 1);
    assert!(kdi::read_dir(&out).is_empty());
}

#[test]
fn a_404_past_the_end_of_the_machines_list_ends_it_like_a_short_page() {
    // With as many devices per page as there are active devices, the second page's
    // `$skip` is past the end, and Defender answers it with 404.
    let active = connector_simulators::defender::Tenant::generate(SPEC).active_machines().count();
    let o = run_with("machines-404", Faults::default(), &format!("machines_page_size = {active}\n"));
    assert_same_as_clean_run(&o);
    assert_eq!(o.calls("machines"), 2, "one full page, then the 404 that ends the list");
    assert_eq!(o.summary().counters.get("devices fetched").copied(), Some(active as u64));
}
