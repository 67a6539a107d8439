//! Incremental runs in the service (contract 0.4): each connector's checkpoint in
//! the database, the mode of its next run, and what the API shows of them. The rule
//! is the library's (`connector_host::checkpoint`): a run commits its plugin's new
//! state only once it is delivered, so a failed or cut-short run leaves the old one.

use super::store::{CheckpointRow, ConnectorRow};
use chrono::{DateTime, TimeZone, Utc};
use connector_host::checkpoint::{Checkpoint, NextRun, DEFAULT_BASELINE_EVERY};
use connector_host::types::PluginInfo;
use serde_json::{json, Value};

/// A stored checkpoint as the library reads it; none stored: an empty one.
pub(crate) fn from_row(row: Option<CheckpointRow>) -> Checkpoint {
    let at = |ms: Option<i64>| ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    match row {
        None => Checkpoint::default(),
        Some(row) => {
            Checkpoint { state: row.state, state_from: at(row.state_from), last_baseline: at(row.last_baseline) }
        }
    }
}

/// A checkpoint as the database keeps it.
pub(crate) fn to_row(checkpoint: &Checkpoint) -> CheckpointRow {
    CheckpointRow {
        state: checkpoint.state.clone(),
        state_from: checkpoint.state_from.map(|t| t.timestamp_millis()),
        last_baseline: checkpoint.last_baseline.map(|t| t.timestamp_millis()),
    }
}

/// How often the connector's runs are a baseline.
pub(crate) fn baseline_every(connector: &ConnectorRow) -> chrono::Duration {
    connector.baseline_days.map_or(DEFAULT_BASELINE_EVERY, chrono::Duration::days)
}

/// The mode of the connector's next run.
pub(crate) fn next_run(
    connector: &ConnectorRow,
    plugin: &PluginInfo,
    checkpoint: &Checkpoint,
    now: DateTime<Utc>,
) -> NextRun {
    checkpoint.next_run(plugin.incremental, false, baseline_every(connector), now)
}

/// What `GET /api/connectors/{id}` shows: the next run's mode and why, the time
/// the changes are read from (the watermark), when the last baseline began, and
/// the interval between baselines.
pub(crate) fn view(connector: &ConnectorRow, plugin: Option<&PluginInfo>, checkpoint: &Checkpoint) -> Value {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let next = plugin.map(|p| next_run(connector, p, checkpoint, Utc::now()));
    json!({
        "supported": plugin.is_some_and(|p| p.incremental),
        "next_mode": next.as_ref().map(|n| n.mode.as_str()),
        "why": next.map(|n| n.why),
        "changes_since": time(checkpoint.state.as_ref().and(checkpoint.state_from)),
        "last_baseline": time(checkpoint.last_baseline),
        "baseline_days": baseline_every(connector).num_days(),
        "state_bytes": checkpoint.state.as_ref().map(Vec::len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_through_its_row() {
        let checkpoint = Checkpoint {
            state: Some(vec![0, 255, 10]),
            state_from: Some("2026-12-03T06:00:00.123Z".parse().unwrap()),
            last_baseline: Some("2026-12-01T00:00:00Z".parse().unwrap()),
        };
        assert_eq!(from_row(Some(to_row(&checkpoint))), checkpoint);
        assert_eq!(from_row(None), Checkpoint::default());
    }
}
