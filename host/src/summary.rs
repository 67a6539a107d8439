//! The run report: what a person checks against the source's portal.

use crate::cvm::DeliveryReport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize)]
/// What a run did: what a person checks against the source's portal.
pub struct RunSummary {
    /// The plugin's id.
    pub(crate) plugin: String,
    /// The plugin's version.
    pub(crate) plugin_version: String,
    /// What the run covered: `full` (the complete picture) or `incremental`.
    pub(crate) mode: crate::run::Mode,
    /// Why the plugin ran another mode than the one asked, in its words.
    pub(crate) mode_reason: Option<String>,
    /// The plugin's own counters, e.g. `devices fetched`, `vulnerability rows fetched`.
    pub counters: BTreeMap<String, u64>,
    /// The labels the plugin declared for its counters (contract 0.4), by name.
    pub(crate) counter_labels: BTreeMap<String, String>,
    /// Rows read from the source, from the counters the plugin declared as such.
    pub source_rows: Option<u64>,
    /// Assets read from the source, from the counters the plugin declared as such.
    pub(crate) source_assets: Option<u64>,
    /// Source rows skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Pages the plugin's `fetch` returned: a plugin may hand one source page out in
    /// several parts (Defender does, at about 4 MiB), so API calls are `api_calls`.
    pub(crate) pages_fetched: u64,
    /// Assets in the files (each asset once).
    pub assets_written: usize,
    /// Vulnerabilities in the files, after merging.
    pub vulnerabilities_written: usize,
    /// Of those, the ones written closed (fixed, in a run of changes).
    pub(crate) vulnerabilities_closed: usize,
    /// Definitions in the files, counting each file's own.
    pub(crate) definitions_written: usize,
    /// The KDI files written.
    pub files_written: Vec<PathBuf>,
    /// HTTP requests the plugin made.
    pub api_calls: u64,
    /// Responses that were 429 (throttled).
    pub throttled_responses: u64,
    /// The origins the run could reach (its plugin's egress as configured, with the
    /// operator's grants): what an operator reviews.
    pub(crate) egress: Vec<String>,
    /// CPU time of each stage of the run (`fetch`, `map`, `collect`, `join`,
    /// `write`), in the order they run: where the time goes, without a profiler.
    #[serde(serialize_with = "stage_seconds")]
    pub(crate) stage_cpu: Vec<(String, Duration)>,
    /// What the plugin warned of (its warning and error log lines, masked): a run
    /// that went on without something, such as Defender's catalogue.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
    #[serde(serialize_with = "seconds")]
    /// How long the run took.
    pub(crate) duration: Duration,
    /// What was delivered to CVM, with `--upload`.
    pub delivery: Option<DeliveryReport>,
    /// Bytes of state the plugin returned for the next run (none: it keeps none).
    pub(crate) state_bytes: Option<usize>,
    /// The state itself, to commit once the run is delivered ([`crate::checkpoint`]);
    /// never printed.
    #[serde(skip)]
    pub(crate) new_state: Option<Vec<u8>>,
}

fn stage_seconds<S: serde::Serializer>(stages: &[(String, Duration)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(stages.len()))?;
    for (stage, cpu) in stages {
        map.serialize_entry(stage, &((cpu.as_secs_f64() * 1000.0).round() / 1000.0))?;
    }
    map.end()
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "Run summary ({} {}, {} run)", self.plugin, self.plugin_version, self.mode.as_str())?;
        if let Some(reason) = &self.mode_reason {
            writeln!(f, "  {:<34} {reason}", "Why this mode")?;
        }
        for (name, value) in &self.counters {
            let label = self.counter_labels.get(name).cloned().unwrap_or_else(|| capitalize(name));
            writeln!(f, "  {label:<34} {value}")?;
        }
        let skipped: u64 = self.skipped.values().sum();
        writeln!(f, "  {:<34} {skipped}", "Rows skipped")?;
        for (reason, count) in &self.skipped {
            writeln!(f, "    {count:>10}  {reason}")?;
        }
        let mut line = |label: &str, value: String| writeln!(f, "  {label:<34} {value}");
        line("Assets written", self.assets_written.to_string())?;
        line("Vulnerabilities written", self.vulnerabilities_written.to_string())?;
        if self.vulnerabilities_closed > 0 || self.mode == crate::run::Mode::Incremental {
            line("  of which closed (fixed)", self.vulnerabilities_closed.to_string())?;
        }
        line("Vulnerability definitions written", self.definitions_written.to_string())?;
        line("Files written", self.files_written.len().to_string())?;
        line("API calls made", self.api_calls.to_string())?;
        line("Throttled responses (429)", self.throttled_responses.to_string())?;
        line("Time taken", format!("{:.1} s", self.duration.as_secs_f64()))?;
        if !self.stage_cpu.is_empty() {
            let stages: Vec<String> =
                self.stage_cpu.iter().map(|(stage, cpu)| format!("{stage} {:.1} s", cpu.as_secs_f64())).collect();
            line("CPU time by stage", stages.join(", "))?;
        }
        if !self.warnings.is_empty() {
            line("Warnings", self.warnings.len().to_string())?;
            for warning in &self.warnings {
                line("", warning.clone())?;
            }
        }
        line("Origins it could reach", self.egress.len().to_string())?;
        for origin in &self.egress {
            line("", origin.clone())?;
        }
        if let Some(d) = &self.delivery {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
