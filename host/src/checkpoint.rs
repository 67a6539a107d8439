//! Where a connector instance's next run starts from (contract 0.4): the state its
//! plugin returned at the end of the last *delivered* run, when that run began,
//! and when the last full run (baseline) was delivered.
//!
//! The rule every embedder follows: commit only after delivery. A run's
//! [`RunSummary`] carries the plugin's new state; the caller stores it with
//! [`Checkpoint::after`] once the files are written (no upload) or once
//! `run_and_deliver` returned, which it does only after CVM ended its run
//! successfully. A run that fails or is cut short commits nothing, so the next run
//! reads again from the old state. The CLI keeps checkpoints in files
//! ([`CheckpointFile`]); the service keeps them in its database.

use crate::run::{Mode, Resume};
use crate::summary::RunSummary;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// How often a baseline runs between incremental runs unless configured: weekly,
/// as Microsoft recommends for Defender's exports.
pub const DEFAULT_BASELINE_EVERY: chrono::Duration = chrono::Duration::days(7);

/// What is kept of an instance between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The plugin's state, opaque to the host; `None`: it keeps none.
    #[serde(skip)]
    pub state: Option<Vec<u8>>,
    /// When the run that produced the state began: an incremental run reads the
    /// changes since about then (the plugin keeps the exact watermark in its state).
    pub state_from: Option<DateTime<Utc>>,
    /// When the last full run that was delivered began.
    pub last_baseline: Option<DateTime<Utc>>,
}

/// The mode of the next run, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextRun {
    /// Full or incremental.
    pub mode: Mode,
    /// Why, in a few words for an operator.
    pub why: String,
}

impl Checkpoint {
    /// The mode the next run asks for: full when forced, when the plugin does not
    /// run on changes, when there is no state, or when the last baseline is older
    /// than `baseline_every`; else incremental.
    pub fn next_run(
        &self,
        plugin_incremental: bool,
        force_full: bool,
        baseline_every: chrono::Duration,
        now: DateTime<Utc>,
    ) -> NextRun {
        let full = |why: &str| NextRun { mode: Mode::Full, why: why.to_owned() };
        if !plugin_incremental {
            return full("the plugin runs full only");
        }
        if force_full {
            return full("a full run was asked for");
        }
        if self.state.is_none() {
            return full("no state of a delivered run (a first run, or the state was cleared)");
        }
        match self.last_baseline {
            None => full("no baseline was delivered yet"),
            Some(at) if now - at >= baseline_every => full(&format!(
                "the last baseline began {} ago; one runs every {}",
                human(now - at),
                human(baseline_every)
            )),
            Some(_) => NextRun { mode: Mode::Incremental, why: "changes since the last delivered run".into() },
        }
    }

    /// What the run starts from, in `mode`.
    pub fn resume(&self, mode: Mode) -> Resume {
        Resume { mode, state: self.state.clone() }
    }

    /// The checkpoint after the run `summary` reports, begun at `started`, was
    /// delivered.
    pub fn after(&self, summary: &RunSummary, started: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            state: summary.new_state.clone(),
            state_from: summary.new_state.as_ref().map(|_| started),
            last_baseline: if summary.mode == Mode::Full { Some(started) } else { self.last_baseline },
        }
    }
}

fn human(d: chrono::Duration) -> String {
    match (d.num_days(), d.num_hours()) {
        (days, _) if days >= 2 => format!("{days} days"),
        (_, hours) if hours >= 2 => format!("{hours} hours"),
        _ => format!("{} minutes", d.num_minutes()),
    }
}

/// A checkpoint kept in a file: `<state-dir>/checkpoints/<instance>.state`, one per
/// instance, written whole and renamed into place.
pub struct CheckpointFile {
    path: PathBuf,
}

/// The file starts with this line, then the metadata as one JSON line, then the
/// state's bytes.
const MAGIC: &str = "connector-host checkpoint 1";

impl CheckpointFile {
    /// The checkpoint of `instance` under `state_dir`. The name keeps letters,
    /// digits, `-`, `_` and `.`; anything else becomes `_`.
    pub fn new(state_dir: &Path, instance: &str) -> CheckpointFile {
        let name: String = instance
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
            .collect();
        CheckpointFile { path: state_dir.join("checkpoints").join(format!("{name}.state")) }
    }

    /// Where it is kept.
    #[cfg(test)]
    fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint, or an empty one when none was saved.
    pub fn load(&self) -> Result<Checkpoint> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoint::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.path.display())),
        };
        let damaged = || format!("{} is damaged; remove it to make the next run a full one", self.path.display());
        let mut lines = bytes.splitn(3, |b| *b == b'\n');
        if lines.next() != Some(MAGIC.as_bytes()) {
            bail!("{}", damaged());
        }
        let meta = lines.next().with_context(damaged)?;
        let mut checkpoint: Checkpoint = serde_json::from_slice(meta).with_context(damaged)?;
        let mark: StateMark = serde_json::from_slice(meta).with_context(damaged)?;
        let state = lines.next().unwrap_or_default();
        checkpoint.state = match mark.state_bytes {
            Some(n) if n == state.len() => Some(state.to_vec()),
            None if state.is_empty() => None,
            _ => bail!("{}", damaged()),
        };
        Ok(checkpoint)
    }

    /// Saves the checkpoint (after a delivered run).
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        let dir = self.path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut meta = serde_json::to_value(checkpoint)?;
        meta["state_bytes"] = serde_json::json!(checkpoint.state.as_ref().map(Vec::len));
        let tmp = self.path.with_extension("state.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{MAGIC}")?;
            writeln!(f, "{meta}")?;
            f.write_all(checkpoint.state.as_deref().unwrap_or_default())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The metadata's note of how many bytes of state follow it.
#[derive(Deserialize)]
struct StateMark {
    state_bytes: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_next_run_is_full_without_state_when_forced_or_when_a_baseline_is_due() {
        let now = at("2026-12-03T12:00:00Z");
        let week = DEFAULT_BASELINE_EVERY;
        let fresh = Checkpoint {
            state: Some(b"w".to_vec()),
            state_from: Some(at("2026-12-03T06:00:00Z")),
            last_baseline: Some(at("2026-12-01T00:00:00Z")),
        };
        assert_eq!(fresh.next_run(true, false, week, now).mode, Mode::Incremental);
        assert_eq!(fresh.next_run(false, false, week, now).mode, Mode::Full);
        assert_eq!(fresh.next_run(true, true, week, now).mode, Mode::Full);
        assert_eq!(Checkpoint::default().next_run(true, false, week, now).mode, Mode::Full);
        let old = Checkpoint { last_baseline: Some(at("2026-11-25T00:00:00Z")), ..fresh.clone() };
        let due = old.next_run(true, false, week, now);
        assert_eq!(due.mode, Mode::Full);
        assert!(due.why.contains("8 days ago; one runs every 7 days"), "{}", due.why);
    }

    #[test]
    fn a_checkpoint_file_round_trips_and_a_damaged_one_is_named() {
        let dir = std::env::temp_dir().join(format!("checkpoint-unit-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let file = CheckpointFile::new(&dir, "defender prod/1");
        assert!(file.path().ends_with("checkpoints/defender_prod_1.state"));
        assert_eq!(file.load().unwrap(), Checkpoint::default());
        let saved = Checkpoint {
            state: Some(b"\n{binary}\n\x00\xff".to_vec()),
            state_from: Some(at("2026-12-03T06:00:00Z")),
            last_baseline: Some(at("2026-12-01T00:00:00Z")),
        };
        file.save(&saved).unwrap();
        assert_eq!(file.load().unwrap(), saved);
        let none = Checkpoint { state: None, ..saved.clone() };
        file.save(&none).unwrap();
        assert_eq!(file.load().unwrap(), none);
        std::fs::write(file.path(), b"connector-host checkpoint 1\n{\"state_bytes\":9}\nshort").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("is damaged; remove it"), "{err}");
        std::fs::remove_file(file.path()).unwrap();
        assert_eq!(file.load().unwrap(), Checkpoint::default());
    }
}
