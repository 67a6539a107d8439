//! `GET /metrics`: Prometheus text, read from the database so every worker's runs
//! count wherever they ran. Labels name the connector (id and name), never a setting.

use super::domain::RunStatus;
use super::store::Db;
use anyhow::Result;
use std::fmt::Write;

/// The metrics text.
pub(crate) async fn render(db: &Db) -> Result<String> {
    let totals = db.run_totals().await?;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, i64)>| {
        writeln!(out, "# HELP {name} {help}").ok();
        writeln!(out, "# TYPE {name} {kind}").ok();
        for (labels, value) in rows {
            writeln!(out, "{name}{{{labels}}} {value}").ok();
        }
    };
    let labels = |t: &super::store::RunTotals| {
        format!("connector_id=\"{}\",connector=\"{}\"", escape(&t.connector_id), escape(&t.connector_name))
    };
    family(
        "connector_runs",
        "gauge",
        "Runs by connector and status (queued, running, succeeded, failed).",
        totals.iter().map(|t| (format!("{},status=\"{}\"", labels(t), escape(&t.status)), t.runs)).collect(),
    );
    let ended: Vec<_> =
        totals.iter().filter(|t| RunStatus::parse(&t.status).is_some_and(RunStatus::has_ended)).collect();
    let sum = |pick: fn(&super::store::RunTotals) -> Option<i64>| {
        let mut by: std::collections::BTreeMap<String, i64> = Default::default();
        for t in &ended {
            *by.entry(labels(t)).or_default() += pick(t).unwrap_or(0);
        }
        by.into_iter().collect::<Vec<_>>()
    };
    let seconds: Vec<(String, i64)> = sum(|t| t.duration_ms).into_iter().map(|(l, ms)| (l, ms / 1000)).collect();
    family("connector_run_duration_seconds_total", "counter", "Seconds spent in ended runs.", seconds);
    family("connector_run_ended_total", "counter", "Runs that ended (succeeded or failed).", sum(|t| Some(t.runs)));
    family("connector_rows_total", "counter", "Source rows read by succeeded runs.", sum(|t| t.rows_read));
    family("connector_api_calls_total", "counter", "API calls made by succeeded runs.", sum(|t| t.api_calls));
    family(
        "connector_throttled_responses_total",
        "counter",
        "Throttled (429) responses met by succeeded runs.",
        sum(|t| t.throttled),
    );
    Ok(out)
}

/// A label value as Prometheus's text format writes it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
