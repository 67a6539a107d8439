//! The CVM connector API: upload data files, start one run, wait for it, read it.
//!
//! The API key goes only in the `X-Risk-Token` header and is masked in every message.
//! Uploads are retried on 422 (CVM could not persist the file, sporadic), 429 and 5xx
//! with exponential backoff; the run is started exactly once (a retried POST after an
//! ambiguous failure could start two), retried only when CVM said 429 or the
//! connection was never made.

use super::config::CvmConfig;
use crate::capability::http::error_chain;
use crate::redact::Redactor;
use anyhow::{anyhow, bail, Context, Result};
use reqwest::blocking::{multipart, Client, RequestBuilder, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a finished connector run reported.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunResult {
    pub run_id: u64,
    pub success: Option<bool>,
    /// Numeric fields of the run (`processed_assets_count`, `autoclosed_scanner_vuln_count`, ...).
    pub counts: BTreeMap<String, i64>,
}

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
    pub fn new(config: CvmConfig) -> Result<Self> {
        let http = Client::builder()
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
    pub fn upload(&self, path: &Path) -> Result<u64> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "kdi.json".into());
        let what = format!("upload {name}");
        let response = self.send(&what, Retry::Transient, || {
            // No JSON content type on the part: CVM answers 400 to that.
            let part =
                multipart::Part::bytes(bytes.clone()).file_name(name.clone()).mime_str("application/octet-stream")?;
            Ok(self.http.post(self.url("/data_file")).multipart(multipart::Form::new().part("file", part)))
        })?;
        let body = self.json(&what, response)?;
        if !truthy(&body["success"]) {
            bail!("CVM did not accept {name}: {body}");
        }
        body["data_file"].as_u64().ok_or_else(|| anyhow!("CVM's answer to {what} has no data_file id: {body}"))
    }

    /// Starts exactly one run over the uploaded files; returns the run id.
    pub fn start_run(&self, data_files: &[u64]) -> Result<u64> {
        let what = "start the connector run";
        let body = serde_json::json!({ "data_files": data_files });
        let response = self.send(what, Retry::NotSent, || Ok(self.http.post(self.url("/run")).json(&body)))?;
        let answer = self.json(what, response)?;
        if !truthy(&answer["success"]) {
            bail!("CVM did not start the run: {answer}");
        }
        answer["connector_run_id"]
            .as_u64()
            .ok_or_else(|| anyhow!("CVM's answer to {what} has no connector_run_id: {answer}"))
    }

    /// Polls until the connector is no longer running, within the deadline.
    pub fn wait_until_idle(&self) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let connector = self.connector()?;
            if !connector["running"].as_bool().unwrap_or(false) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= self.config.run_deadline {
                bail!(
                    "connector {} was still running after {} minutes; the run continues in CVM, check it there",
                    self.config.connector_id,
                    self.config.run_deadline.as_secs() / 60
                );
            }
            std::thread::sleep(self.config.poll_interval);
        }
    }

    /// What a run reported (`GET /connectors/{id}/connector_runs/{run_id}`).
    pub fn run_result(&self, run_id: u64) -> Result<RunResult> {
        let what = "read the connector run";
        let response =
            self.send(what, Retry::Transient, || Ok(self.http.get(self.url(&format!("/connector_runs/{run_id}")))))?;
        let body = self.json(what, response)?;
        let counts = body
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.ends_with("_count"))
            .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
            .collect();
        Ok(RunResult {
            run_id,
            success: body["success"].as_bool().or_else(|| body["success"].as_str().map(|s| s == "true")),
            counts,
        })
    }
}

/// CVM sends `success` as the string `"true"` in some answers and as a boolean in others.
fn truthy(v: &Value) -> bool {
    v.as_bool() == Some(true) || v.as_str() == Some("true")
}
