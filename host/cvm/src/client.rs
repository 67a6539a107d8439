//! The CVM connector API: upload data files, start one run, wait for it to end.
//!
//! The API key goes only in the `X-Risk-Token` header and is masked in every message.
//! Uploads are retried on 422 (CVM could not persist the file, sporadic), 429 and 5xx
//! with exponential backoff; the run is started exactly once (a retried POST after an
//! ambiguous failure could start two), retried only when CVM said 429 or the
//! connection was never made.
//!
//! `POST /connectors/{id}/run` only schedules a run: it can wait queued, with the
//! connector not yet `running`, before it starts. So the host polls the run itself
//! (`GET /connectors/{id}/connector_runs/{run_id}`) until its `end_time` is set, and
//! only then reads `success` and the counts (docs/cvm.md, "Runs are asynchronous").

use super::config::CvmConfig;
use anyhow::{anyhow, bail, Context, Result};
use connector_runtime::capability::http::error_chain;
use connector_runtime::redact::Redactor;
use reqwest::blocking::{multipart, Client, RequestBuilder, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a connector run reported.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunResult {
    /// The connector run's id in CVM.
    pub run_id: u64,
    /// Whether the run has ended (`end_time` is set); until then `success` means nothing.
    pub(crate) ended: bool,
    /// Whether the run succeeded, as CVM says (meaningless until `ended`).
    pub(crate) success: Option<bool>,
    /// Numeric fields of the run (`total_payload_count`, `processed_assets_count`,
    /// `autoclosed_scanner_vuln_count`, ...).
    pub(crate) counts: BTreeMap<String, i64>,
}

impl RunResult {
    fn from_json(run_id: u64, body: &Value) -> RunResult {
        let counts = body
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.ends_with("_count"))
            .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
            .collect();
        let ended = body.get("end_time").is_some_and(|t| !t.is_null());
        RunResult { run_id, ended, success: boolean(&body["success"]), counts }
    }

    /// The run's counts as `name value` pairs, for messages.
    pub fn counts_text(&self) -> String {
        self.counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    }
}

/// A client of one CVM connector: uploads, runs, status.
pub struct CvmClient {
    config: CvmConfig,
    http: Client,
    redactor: Redactor,
}

/// Which failures a request may be retried on.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    /// 422, 429, 5xx and transport errors (uploads, reads).
    Transient,
    /// Only 429 and connections never made (starting a run).
    NotSent,
}

impl CvmClient {
    /// A client for the connector `config` names.
    pub fn new(config: CvmConfig) -> Result<Self> {
        let network = &config.network;
        // A literal address is not resolved: check it here; names are checked after DNS.
        if let Ok(url) = url::Url::parse(&config.base_url) {
            let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                if !connector_runtime::policy::address_allowed(ip, network.allow_loopback, network.allow_private_ips) {
                    bail!(
                        "[cvm] api_host {} is a non-public address; set `allow_private_ips = true` in the [network] table to allow it",
                        config.base_url
                    );
                }
            }
        }
        let builder = match &network.proxy {
            Some(proxy) => Client::builder().proxy(reqwest::Proxy::all(proxy)?),
            None => Client::builder().no_proxy(),
        };
        let resolver = connector_runtime::policy::GuardedResolver {
            allow_loopback: network.allow_loopback,
            allow_private: network.allow_private_ips,
        };
        let http = builder
            .dns_resolver(std::sync::Arc::new(resolver))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(600))
            .user_agent(concat!("connector-host/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let redactor = Redactor::new([config.api_key.as_str()]);
        Ok(CvmClient { config, http, redactor })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/connectors/{}{path}", self.config.base_url, self.config.connector_id)
    }

    /// Sends a request built afresh for each attempt, retrying as `retry` allows.
    fn send(&self, what: &str, retry: Retry, build: impl Fn() -> Result<RequestBuilder>) -> Result<Response> {
        let mut attempt = 0u32;
        loop {
            let result =
                build()?.header("X-Risk-Token", &self.config.api_key).header("Accept", "application/json").send();
            let (transient, wait) = match &result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let transient = match retry {
                        Retry::Transient => status == 422 || status == 429 || status >= 500,
                        Retry::NotSent => status == 429,
                    };
                    (transient, retry_after)
                }
                Err(e) => (retry == Retry::Transient || e.is_connect(), None),
            };
            if !transient || attempt >= self.config.max_retries {
                return match result {
                    Ok(r) => self.check(what, r, attempt),
                    Err(e) => Err(anyhow!(
                        "cannot reach CVM at {} to {what}: {} (after {} attempt(s))",
                        self.config.base_url,
                        self.redactor.redact(&error_chain(&e)),
                        attempt + 1
                    )),
                };
            }
            attempt += 1;
            let backoff = self.config.retry_delay.saturating_mul(1 << attempt.min(10)).min(Duration::from_secs(60));
            let wait = wait.unwrap_or(backoff).min(Duration::from_secs(300));
            let why = match &result {
                Ok(r) => format!("HTTP {}", r.status().as_u16()),
                Err(e) => self.redactor.redact(&error_chain(e)),
            };
            tracing::warn!(
                "CVM {what}: {why}; retry {attempt} of {} in {:.1} s",
                self.config.max_retries,
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
        }
    }

    /// A successful response, or an error that says what to fix.
    fn check(&self, what: &str, response: Response, retries: u32) -> Result<Response> {
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let body = self.redactor.redact(&response.text().unwrap_or_default());
        let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let body: String = body.chars().take(300).collect();
        let id = self.config.connector_id;
        match status {
            401 => bail!("CVM rejected the API key (HTTP 401) when trying to {what}; check [cvm] api_key"),
            403 => bail!("CVM denied access (HTTP 403) when trying to {what}: the API key may not use connector {id}"),
            404 => bail!(
                "CVM has no connector {id} at {} (HTTP 404); check [cvm] connector_id and api_host",
                self.config.base_url
            ),
            _ if retries > 0 => bail!("CVM answered HTTP {status} to {what} {} times in a row: {body}", retries + 1),
            _ => bail!("CVM answered HTTP {status} to {what}: {body}"),
        }
    }

    fn json(&self, what: &str, response: Response) -> Result<Value> {
        response.json::<Value>().with_context(|| format!("CVM sent an unreadable answer to {what}"))
    }

    /// The connector's description (`GET /connectors/{id}`).
    pub fn connector(&self) -> Result<Value> {
        let what = "read the connector";
        let response = self.send(what, Retry::Transient, || Ok(self.http.get(self.url(""))))?;
        let body = self.json(what, response)?;
        body.get("connector").cloned().ok_or_else(|| anyhow!("CVM's answer to {what} has no `connector`"))
    }

    /// Uploads one KDI file; returns its data file id.
    pub(crate) fn upload(&self, path: &Path) -> Result<u64> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "kdi.json".into());
        let what = format!("upload {name}");
        let response = self.send(&what, Retry::Transient, || {
            // The part is typed as JSON, as the toolkit and Kenna's samples send it. (The
            // 400 Kenna documents is for a *request* sent as JSON instead of multipart.)
            let part = multipart::Part::bytes(bytes.clone()).file_name(name.clone()).mime_str("application/json")?;
            Ok(self.http.post(self.url("/data_file")).multipart(multipart::Form::new().part("file", part)))
        })?;
        let body = self.json(&what, response)?;
        if !truthy(&body["success"]) {
            bail!("CVM did not accept {name}: {body}");
        }
        body["data_file"].as_u64().ok_or_else(|| anyhow!("CVM's answer to {what} has no data_file id: {body}"))
    }

    /// Schedules exactly one run over the uploaded files; returns the run id. The
    /// files go as form parameters `data_files[]=1&data_files[]=2`, the way known
    /// clients send them: without them a file-based connector processes only the
    /// most recent upload.
    pub(crate) fn start_run(&self, data_files: &[u64]) -> Result<u64> {
        let what = "start the connector run";
        let form: Vec<(&str, u64)> = data_files.iter().map(|id| ("data_files[]", *id)).collect();
        let response = self.send(what, Retry::NotSent, || Ok(self.http.post(self.url("/run")).form(&form)))?;
        let answer = self.json(what, response)?;
        if !truthy(&answer["success"]) {
            bail!("CVM did not start the run: {answer}");
        }
        answer["connector_run_id"]
            .as_u64()
            .ok_or_else(|| anyhow!("CVM's answer to {what} has no connector_run_id: {answer}"))
    }

    /// Waits for a scheduled run to end, within the deadline, and returns what it
    /// reported. Like the toolkit, it waits one poll interval before the first look
    /// (a run is seldom done at once); then it reads the run every interval until
    /// its `end_time` is set. A queued run and a running one look the same here.
    pub(crate) fn wait_for_run(&self, run_id: u64) -> Result<(RunResult, Duration)> {
        let started = Instant::now();
        loop {
            let left = self.config.run_deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                bail!(
                    "connector run {run_id} of connector {} had not ended after {} minute(s); it continues in CVM, check it there (raise [cvm] run_deadline_minutes to wait longer)",
                    self.config.connector_id,
                    self.config.run_deadline.as_secs().div_ceil(60)
                );
            }
            std::thread::sleep(self.config.poll_interval.min(left));
            let run = self.run_result(run_id)?;
            if run.ended {
                return Ok((run, started.elapsed()));
            }
        }
    }

    /// What a run reports now (`GET /connectors/{id}/connector_runs/{run_id}`).
    pub(crate) fn run_result(&self, run_id: u64) -> Result<RunResult> {
        let what = "read the connector run";
        let response =
            self.send(what, Retry::Transient, || Ok(self.http.get(self.url(&format!("/connector_runs/{run_id}")))))?;
        Ok(RunResult::from_json(run_id, &self.json(what, response)?))
    }
}

/// CVM sends booleans as JSON booleans in some answers and as strings in others.
fn boolean(v: &Value) -> Option<bool> {
    v.as_bool().or_else(|| match v.as_str() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    })
}

/// `success` is the string `"true"` in some answers and a boolean in others.
fn truthy(v: &Value) -> bool {
    boolean(v) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(api_host: &str, allow_loopback: bool) -> CvmConfig {
        let values: BTreeMap<String, String> =
            [("api_host", api_host), ("api_key", "k-0123456789"), ("connector_id", "1"), ("max_retries", "0")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        CvmConfig::from_values(&values, allow_loopback).unwrap()
    }

    #[test]
    fn the_cvm_client_keeps_the_address_rules_of_plugin_requests() {
        // A private literal address: refused before any connection.
        let refused = CvmClient::new(config("https://10.1.2.3", false)).err().unwrap().to_string();
        assert!(refused.contains("non-public address"), "{refused}");
        assert!(refused.contains("allow_private_ips"), "{refused}");
        let mut allowed = config("https://10.1.2.3", false);
        allowed.network.allow_private_ips = true;
        assert!(CvmClient::new(allowed).is_ok());
        // A name that resolves to loopback, without --allow-insecure-loopback: refused
        // after DNS, so the key never leaves.
        let client = CvmClient::new(config("https://localhost:9", false)).unwrap();
        let error = format!("{:#}", client.connector().unwrap_err());
        assert!(error.contains("non-public"), "{error}");
    }
}
