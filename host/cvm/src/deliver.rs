//! Delivering a finished run's files to CVM, guarded by the last upload's state.

use super::baseline::{BaselineDir, BaselineStore, Delta, LastUpload, Snapshot};
use super::client::{CvmClient, RunResult};
use super::config::CvmConfig;
use anyhow::{bail, Result};
use connector_runtime::config::ConnectorConfig;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to deliver.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Where, and with which key.
    pub cvm: CvmConfig,
    /// Where the last successful upload of each connector is kept (the baseline).
    pub baselines: Arc<dyn BaselineStore>,
    /// Show what would be uploaded and how it compares with the last upload; send nothing.
    pub dry_run: bool,
    /// Upload even when the run would send fewer than half of the last upload.
    pub allow_mass_close: bool,
    /// Asked just before the first byte goes to CVM; an error stops the delivery.
    /// A platform with many workers claims the upload here, so that a run taken over
    /// by another worker is never uploaded twice.
    pub upload_gate: Option<UploadGate>,
}

/// A check made just before uploading (see [`DeliveryOptions::upload_gate`]).
#[derive(Clone)]
pub struct UploadGate(pub std::sync::Arc<dyn Fn() -> Result<()> + Send + Sync>);

impl std::fmt::Debug for UploadGate {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("UploadGate")
    }
}

impl DeliveryOptions {
    /// The options of a delivery from a configuration's `[cvm]` table: the one place
    /// the CLI's `run --upload` and `run-all`'s uploading instances build them.
    pub fn from_config(
        config: &ConnectorConfig,
        allow_insecure_loopback: bool,
        state_dir: Option<PathBuf>,
        dry_run: bool,
        allow_mass_close: bool,
    ) -> Result<DeliveryOptions> {
        let cvm = CvmConfig::from_values(super::config::require(config.cvm.as_ref())?, allow_insecure_loopback)?
            .with_grants(&config.network);
        Ok(DeliveryOptions {
            cvm,
            baselines: Arc::new(BaselineDir::new(&state_dir.unwrap_or_else(super::baseline::default_state_dir))),
            dry_run,
            allow_mass_close,
            upload_gate: None,
        })
    }
}

/// What a delivery did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryReport {
    /// Whether nothing was sent (a dry run).
    pub(crate) dry_run: bool,
    /// The CVM connector.
    pub(crate) connector_id: u64,
    /// KDI files of the run.
    pub(crate) files: usize,
    /// Assets in the files.
    pub(crate) assets: usize,
    /// Open vulnerabilities in the files.
    pub(crate) open_vulnerabilities: usize,
    /// The last upload's counts, when there was one.
    pub(crate) last_assets: Option<usize>,
    /// Open vulnerabilities of the last upload, when there was one.
    pub(crate) last_open_vulnerabilities: Option<usize>,
    /// Against the last upload.
    pub(crate) delta: Option<Delta>,
    /// In a dry run: the guard's refusal, if it would refuse.
    pub(crate) would_refuse: Option<String>,
    /// The data file ids CVM gave the uploads.
    pub(crate) data_files: Vec<u64>,
    /// The connector run that processed them, once it ended.
    pub run: Option<RunResult>,
    #[serde(skip)]
    /// How long the host waited for that run to end.
    pub(crate) waited: Duration,
}

/// The delivery as `run` prints it.
impl fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let title = if self.dry_run { "Dry run: nothing was uploaded" } else { "Delivered to CVM" };
        writeln!(f, "{title} (connector {})", self.connector_id)?;
        let mut line = |label: &str, value: String| writeln!(f, "  {label:<34} {value}");
        line("Files", self.files.to_string())?;
        line("Assets", self.assets.to_string())?;
        line("Open vulnerabilities", self.open_vulnerabilities.to_string())?;
        match (self.last_assets, self.last_open_vulnerabilities, &self.delta) {
            (Some(a), Some(v), Some(d)) => {
                line("Last upload", format!("{a} assets, {v} open vulnerabilities"))?;
                line(
                    "Assets vs last upload",
                    format!("{} appear, {} disappear, {} stay", d.assets.appear, d.assets.disappear, d.assets.stay),
                )?;
                line(
                    "Vulnerabilities vs last upload",
                    format!(
                        "{} appear, {} disappear (CVM closes them), {} stay",
                        d.vulnerabilities.appear, d.vulnerabilities.disappear, d.vulnerabilities.stay
                    ),
                )?;
            }
            _ => line("Last upload", "none recorded for this connector".into())?,
        }
        if let Some(refusal) = &self.would_refuse {
            line("An upload would be refused", refusal.clone())?;
        }
        if !self.data_files.is_empty() {
            line("Data files", self.data_files.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))?;
        }
        if let Some(run) = &self.run {
            line("Connector run", format!("{} ({:.1} s waiting)", run.run_id, self.waited.as_secs_f64()))?;
            for (name, value) in &run.counts {
                writeln!(f, "    {value:>10}  {name}")?;
            }
        }
        Ok(())
    }
}

/// A run that ended is judged before the upload becomes the new baseline: it must
/// say it succeeded, and it must have processed every file uploaded (CVM processes
/// only the newest file of a run that does not name them all).
fn judge(run: &RunResult, uploaded: usize) -> Result<()> {
    let id = run.run_id;
    match run.success {
        Some(true) => {}
        Some(false) => bail!(
            "CVM connector run {id} ended unsuccessfully; its counts: {}. The files stay uploaded in CVM; the mass-close baseline was not updated",
            run.counts_text()
        ),
        None => bail!(
            "CVM connector run {id} ended without saying whether it succeeded; its counts: {}. The mass-close baseline was not updated",
            run.counts_text()
        ),
    }
    match run.counts.get("total_payload_count") {
        Some(&total) if total != uploaded as i64 => bail!(
            "CVM connector run {id} processed {total} data file(s), but {uploaded} were uploaded for it: some data was not imported; its counts: {}",
            run.counts_text()
        ),
        Some(_) => {}
        None => tracing::warn!(
            "CVM connector run {id} does not report total_payload_count; cannot check that it processed all {uploaded} files"
        ),
    }
    if let Some(&failed) = run.counts.get("failed_payload_count").filter(|n| **n > 0) {
        bail!(
            "CVM connector run {id} failed to process {failed} of {uploaded} data file(s); its counts: {}",
            run.counts_text()
        );
    }
    Ok(())
}

/// Uploads the files, starts one run over all of them, waits for it, and records
/// the upload as the instance's new state.
pub fn deliver(files: &[PathBuf], snapshot: &Snapshot, options: &DeliveryOptions) -> Result<DeliveryReport> {
    let cvm = &options.cvm;
    let key = cvm.instance_key();
    let last = options.baselines.load(&key)?;
    let refusal = last.as_ref().and_then(|l| l.guard(snapshot).err());
    // What CVM will hold once this run is processed (a run of changes, applied).
    let snapshot = &snapshot.applied_to(last.as_ref());
    let mut report = DeliveryReport {
        dry_run: options.dry_run,
        connector_id: cvm.connector_id,
        files: files.len(),
        assets: snapshot.assets.len(),
        open_vulnerabilities: snapshot.vulnerabilities.len(),
        last_assets: last.as_ref().map(|l| l.assets),
        last_open_vulnerabilities: last.as_ref().map(|l| l.open_vulnerabilities),
        delta: last.as_ref().map(|l| l.delta(snapshot)),
        ..Default::default()
    };
    if options.dry_run {
        report.would_refuse = refusal.filter(|_| !options.allow_mass_close);
        return Ok(report);
    }
    if let Some(refusal) = refusal {
        if !options.allow_mass_close {
            bail!("{refusal}");
        }
        tracing::warn!("--allow-mass-close: uploading although {refusal}");
    }
    if files.is_empty() {
        bail!("the run wrote no files, so there is nothing to upload (the source reported no assets)");
    }
    if let Some(gate) = &options.upload_gate {
        (gate.0)()?;
    }
    let client = CvmClient::new(cvm.clone())?;
    for file in files {
        report.data_files.push(client.upload(file)?);
    }
    let run_id = client.start_run(&report.data_files)?;
    let (run, waited) = client.wait_for_run(run_id)?;
    report.waited = waited;
    judge(&run, report.data_files.len())?;
    report.run = Some(run);
    options.baselines.save(
        &key,
        &LastUpload {
            uploaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            connector_id: cvm.connector_id,
            run_id,
            assets: snapshot.assets.len(),
            open_vulnerabilities: snapshot.vulnerabilities.len(),
            snapshot: snapshot.clone(),
        },
    )?;
    Ok(report)
}
