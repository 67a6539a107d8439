//! Writing KDI (Kenna Data Importer) version 2 JSON files.
//!
//! Every active asset goes in, also those without vulnerabilities (an empty `vulns`
//! list is what lets CVM close what was fixed), each asset in exactly one file with
//! its complete vulnerability list, `skip_autoclose: false`, and `vuln_def_name` on
//! every vulnerability naming a `vuln_defs[].name` of the same file. A run of
//! changes only (contract 0.4's incremental mode) writes `skip_autoclose: true`, its
//! fixed vulnerabilities as `status: closed` with `closed_at`.
//! The format and why it is written this way: docs/cvm.md.

mod emit;

use super::ahead::Ahead;
use super::join::{Catalog, JoinCounts, Joined, JoinedAsset, JoinedAssets};
use crate::bindings::types::{Asset, Datetime, VulnerabilityDefinition};
use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use emit::VulnerabilityText;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Assets per file unless configured otherwise (the toolkit's batch size).
pub const DEFAULT_ASSETS_PER_FILE: usize = 500;
/// File names the writer owns in the output directory.
pub const FILE_PREFIX: &str = "kdi-";

#[derive(Serialize)]
struct KdiAsset<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fqdn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netbios: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    tags: &'a [String],
    /// Not in the documented KDI asset table, but sent by Kenna's own connectors.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<Iso>,
    // `vulns` comes last, written by `emit` (see `serialize_asset`).
}

/// A time written as [`iso`] writes it, without building a string first (the
/// writer writes two per vulnerability, and one per asset through serde).
struct Iso(Datetime);

impl Iso {
    /// The text in a stack buffer: formatting through `Display` and serde's
    /// `collect_str` cost more than the rest of a vulnerability. `None` for years
    /// outside 0..=9999 (never seen from a real source), which [`iso`] writes.
    fn digits(&self) -> Option<([u8; 30], usize)> {
        use chrono::{Datelike, Timelike};
        let t = DateTime::<Utc>::from_timestamp(self.0.seconds, self.0.nanoseconds)
            .filter(|t| (0..=9999).contains(&t.year()))?;
        let mut buffer = *b"0000-00-00T00:00:00.000000000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for i in (at..at + width).rev() {
                buffer[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, t.year() as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        let nanos = t.nanosecond();
        put(20, 9, nanos);
        // Fractions as chrono's `SecondsFormat::AutoSi`: none, or 3, 6 or 9 digits.
        let end = match nanos {
            0 => 19,
            n if n % 1_000_000 == 0 => 23,
            n if n % 1_000 == 0 => 26,
            _ => 29,
        };
        buffer[end] = b'Z';
        Some((buffer, end + 1))
    }
}

impl Serialize for Iso {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.digits() {
            Some((buffer, len)) => serializer.serialize_str(std::str::from_utf8(&buffer[..len]).expect("ASCII digits")),
            None => serializer.serialize_str(&iso(&self.0)),
        }
    }
}

#[derive(Serialize)]
struct KdiVulnDef<'a> {
    scanner_type: &'a str,
    scanner_identifier: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cve_identifiers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    solution: Option<&'a str>,
}

/// ISO 8601 UTC, e.g. `2024-05-01T10:00:00Z` (fractions kept when present).
pub(crate) fn iso(t: &Datetime) -> String {
    DateTime::<Utc>::from_timestamp(t.seconds, t.nanoseconds)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// What was written.
#[derive(Debug, Default, Clone)]
pub struct Written {
    /// The files, in order, where they are now.
    pub(crate) files: Vec<PathBuf>,
    /// Assets written.
    pub(crate) assets: usize,
    /// Vulnerabilities written.
    pub(crate) vulnerabilities: usize,
    /// Definitions written, counting each file's own.
    pub(crate) definitions: usize,
    /// Files over the byte cap because a single asset is larger than the cap.
    pub(crate) oversized_files: usize,
}

/// How to write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The scanner type every vulnerability and definition carries.
    pub scanner_type: String,
    /// The most assets in one file.
    pub assets_per_file: usize,
    /// A file grows to at most this many bytes, unless one asset alone is larger
    /// (an asset is never split: CVM must see its complete vulnerability list).
    pub max_file_bytes: usize,
    /// `last_seen_at` for vulnerabilities the source gave no time for.
    pub run_started: DateTime<Utc>,
    /// Set `reset_tags`: CVM replaces each asset's tags instead of adding to them.
    pub reset_tags: bool,
    /// Set `skip_autoclose`: the run reports changes only (contract 0.4's
    /// incremental mode), so CVM must not close what it does not report.
    pub skip_autoclose: bool,
}

/// CVM's upload limit is not documented; 100 MiB keeps files well inside what
/// HTTP uploads usually allow.
pub const DEFAULT_MAX_FILE_BYTES: usize = 100 << 20;

/// The JSON Schema of KDI v2 files (`host/schema/kdi-v2.schema.json`).
pub const SCHEMA: &str = include_str!("../../../schema/kdi-v2.schema.json");

/// Writes KDI files into a directory, one asset at a time, as the run hands them
/// over ([`KdiWriter::add`]).
///
/// Files are first written to a staging directory inside the output directory, and
/// flushed to disk (fsync) on a second thread while the next is filled; only
/// [`KdiWriter::finish`] moves them into place and then removes files of an earlier
/// run. A writer dropped before `finish` (a failed run) removes its staging
/// directory and leaves the earlier run's files untouched.
pub(crate) struct KdiWriter {
    dir: PathBuf,
    staging: PathBuf,
    options: WriteOptions,
    run_started: String,
    definitions: SerializedDefinitions,
    /// Which file carries each identifier's definition (0: none yet).
    carried: Vec<u32>,
    file: Option<OpenFile>,
    written: Written,
    /// Closed files on their way to the fsync thread.
    to_sync: Option<std::sync::mpsc::Sender<(PathBuf, fs::File)>>,
    syncing: Option<std::thread::JoinHandle<Result<()>>>,
}

impl KdiWriter {
    /// Starts writing into `dir` (created if needed); `catalog` has the run's
    /// identifiers and their definitions.
    pub(crate) fn create(dir: &Path, options: WriteOptions, catalog: Arc<Catalog>) -> Result<KdiWriter> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let staging = dir.join(format!(".staging-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).ok();
        }
        fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
        let (to_sync, files) = std::sync::mpsc::channel::<(PathBuf, fs::File)>();
        let syncing = std::thread::Builder::new()
            .name("fsync".into())
            .spawn(move || -> Result<()> {
                for (path, file) in files {
                    file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
                }
                Ok(())
            })
            .context("cannot start the thread that flushes KDI files to disk")?;
        let identifiers = catalog.len();
        Ok(KdiWriter {
            dir: dir.to_owned(),
            staging,
            run_started: options.run_started.to_rfc3339_opts(SecondsFormat::Secs, true),
            definitions: SerializedDefinitions {
                scanner_type: options.scanner_type.clone(),
                catalog,
                bytes: vec![None; identifiers],
            },
            options,
            carried: vec![0; identifiers],
            file: None,
            written: Written::default(),
            to_sync: Some(to_sync),
            syncing: Some(syncing),
        })
    }

    /// Serializes the joined assets as KDI on a `serialize` thread, ahead of
    /// [`KdiWriter::add`]: after the last page, the join, the serializing and the
    /// writing are the run's only work, and this way they share both cores (the
    /// serializing alone took as long as the rest of the writer).
    pub(crate) fn serialize_ahead(&self, mut assets: JoinedAssets) -> Result<SerializedAssets> {
        let catalog = self.definitions.catalog.clone();
        let vulnerability = VulnerabilityText::new(&self.options.scanner_type, &self.run_started);
        let assets = Ahead::spawn("serialize", SERIALIZE_AHEAD_ASSETS, move |hand_over| {
            let started = crate::limits::thread_cpu_time();
            while let Some(next) = assets.next().transpose() {
                let serialized = next.and_then(|asset| {
                    let mut bytes = Vec::new();
                    serialize_asset(&mut bytes, &asset, &catalog, &vulnerability)
                        .map(|()| SerializedAsset { asset, bytes })
                });
                if !hand_over(serialized) {
                    break;
                }
            }
            let cpu = crate::limits::thread_cpu_time().saturating_sub(started);
            assets.finish().map(|counts| (counts, cpu))
        })?;
        Ok(SerializedAssets { assets })
    }

    /// Adds an asset: to the open file if it has room for it and the definitions it
    /// adds; otherwise the file is closed and the asset starts the next one.
    pub(crate) fn add(&mut self, serialized: &SerializedAsset) -> Result<()> {
        let SerializedAsset { asset, bytes } = serialized;
        let fits = match &self.file {
            Some(open) if open.assets < self.options.assets_per_file.max(1) => {
                let added = new_definition_bytes(asset, open, &self.carried, &mut self.definitions)?;
                (open.bytes + bytes.len() + 1 + added <= self.options.max_file_bytes).then_some(added)
            }
            _ => None,
        };
        let definition_bytes = match fits {
            Some(added) => added,
            None => {
                self.close_file()?;
                let number = self.written.files.len() as u32 + 1;
                let open = self.file.insert(OpenFile::create(&self.staging, number, file_start(&self.options))?);
                new_definition_bytes(asset, open, &self.carried, &mut self.definitions)?
            }
        };
        let open = self.file.as_mut().expect("a file is open");
        open.add(bytes, asset, definition_bytes, &mut self.carried)
    }

    /// Closes the last file, waits until every file is on disk, moves them into
    /// place and removes the files of an earlier run.
    pub(crate) fn finish(mut self) -> Result<Written> {
        self.close_file()?;
        self.to_sync = None;
        if let Some(syncing) = self.syncing.take() {
            syncing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        }
        let new_names: BTreeSet<_> =
            self.written.files.iter().filter_map(|p| p.file_name().map(|n| n.to_owned())).collect();
        let mut files = Vec::new();
        for path in &self.written.files {
            let target = self.dir.join(path.file_name().expect("staged files have names"));
            fs::rename(path, &target).with_context(|| format!("cannot move {} into place", target.display()))?;
            files.push(target);
        }
        fs::remove_dir_all(&self.staging).ok();
        remove_stale(&self.dir, &new_names)?;
        Ok(Written { files, ..std::mem::take(&mut self.written) })
    }

    /// Ends the open file, if any, with the definitions its vulnerabilities use.
    fn close_file(&mut self) -> Result<()> {
        let Some(file) = self.file.take() else { return Ok(()) };
        let to_sync = self.to_sync.as_ref().expect("open until finished");
        close(file, &mut self.definitions, &self.options, &mut self.written, to_sync)
    }
}

impl Drop for KdiWriter {
    fn drop(&mut self) {
        // Not finished (a failed run): nothing staged may reach the output directory.
        if self.syncing.is_some() {
            self.to_sync = None;
            self.file = None;
            if let Some(syncing) = self.syncing.take() {
                syncing.join().ok();
            }
            fs::remove_dir_all(&self.staging).ok();
        }
    }
}

/// Writes every joined asset of a run as KDI files into `dir`, as a run does.
pub fn write(joined: Joined, dir: &Path, options: WriteOptions) -> Result<Written> {
    let assets = joined.read_ahead()?;
    let mut writer = KdiWriter::create(dir, options, assets.catalog.clone())?;
    let mut serialized = writer.serialize_ahead(assets)?;
    while let Some(asset) = serialized.next()? {
        writer.add(&asset)?;
    }
    serialized.finish()?;
    writer.finish()
}

/// Serialized assets the `serialize` thread may run ahead of the writer. Few: the
/// join thread before it already smooths out assets of very different sizes, and
/// each one here holds its KDI text besides.
const SERIALIZE_AHEAD_ASSETS: usize = 8;

/// A joined asset with its KDI text (its size decides the file it goes into).
pub(crate) struct SerializedAsset {
    pub(crate) asset: JoinedAsset,
    bytes: Vec<u8>,
}

/// The joined assets as the `serialize` thread hands them over
/// ([`KdiWriter::serialize_ahead`]); at the end, what the join counted and the CPU
/// time the serializing took.
pub(crate) struct SerializedAssets {
    assets: Ahead<SerializedAsset, Result<(JoinCounts, Duration)>>,
}

impl SerializedAssets {
    /// The next asset, or `None` after the last.
    pub(crate) fn next(&mut self) -> Result<Option<SerializedAsset>> {
        self.assets.next()
    }

    /// Stops the thread (and the join behind it) and returns what the join counted
    /// and the CPU time the serializing took.
    pub(crate) fn finish(self) -> Result<(JoinCounts, Duration)> {
        self.assets.stop()
    }
}

/// How a file opens, before its first asset.
fn file_start(options: &WriteOptions) -> &'static [u8] {
    match (options.skip_autoclose, options.reset_tags) {
        (false, true) => br#"{"skip_autoclose":false,"reset_tags":true,"version":2,"assets":["#,
        (false, false) => br#"{"skip_autoclose":false,"version":2,"assets":["#,
        (true, true) => br#"{"skip_autoclose":true,"reset_tags":true,"version":2,"assets":["#,
        (true, false) => br#"{"skip_autoclose":true,"version":2,"assets":["#,
    }
}

/// Bytes of a file around its assets and definitions, beyond its start.
const FRAME_END_BYTES: usize = r#"],"vuln_defs":[]}"#.len();

type SyncQueue = std::sync::mpsc::Sender<(PathBuf, fs::File)>;

/// Each identifier's definition, serialized once per run (an identifier recurs on
/// many assets and in many files), by identifier number.
struct SerializedDefinitions {
    catalog: Arc<Catalog>,
    scanner_type: String,
    bytes: Vec<Option<Box<[u8]>>>,
}

impl SerializedDefinitions {
    fn get(&mut self, id: u32) -> Result<&[u8]> {
        let slot = &mut self.bytes[id as usize];
        if slot.is_none() {
            let definition = self.catalog.definition(id);
            *slot = Some(serde_json::to_vec(&kdi_definition(&definition, &self.scanner_type))?.into_boxed_slice());
        }
        Ok(slot.as_deref().expect("filled above"))
    }
}

/// The file being written: its assets are streamed into it as they come, its
/// definitions are written after them when it is closed.
struct OpenFile {
    path: PathBuf,
    out: BufWriter<fs::File>,
    /// The file's number, from 1: `carried[id] == number` marks its definitions.
    number: u32,
    assets: usize,
    vulnerabilities: usize,
    /// Bytes the file will have once closed, frame included.
    bytes: usize,
    /// The identifiers whose definitions the file carries.
    definitions: Vec<u32>,
}

impl OpenFile {
    fn create(dir: &Path, number: u32, start: &'static [u8]) -> Result<OpenFile> {
        let path = dir.join(format!("{FILE_PREFIX}{number:05}.json"));
        let handle = fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, handle);
        out.write_all(start).with_context(|| format!("cannot write {}", path.display()))?;
        let bytes = start.len() + FRAME_END_BYTES;
        Ok(OpenFile { path, out, number, assets: 0, vulnerabilities: 0, bytes, definitions: Vec::new() })
    }

    /// Writes a serialized asset into the file and notes the definitions it needs
    /// that the file does not carry yet (`definition_bytes` of them).
    fn add(&mut self, bytes: &[u8], asset: &JoinedAsset, definition_bytes: usize, carried: &mut [u32]) -> Result<()> {
        let context = || format!("cannot write {}", self.path.display());
        if self.assets > 0 {
            self.out.write_all(b",").with_context(context)?;
        }
        self.out.write_all(bytes).with_context(context)?;
        self.bytes += bytes.len() + usize::from(self.assets > 0) + definition_bytes;
        for v in &asset.vulnerabilities {
            let id = v.identifier_id as usize;
            if carried[id] != self.number {
                carried[id] = self.number;
                self.definitions.push(v.identifier_id);
            }
        }
        self.assets += 1;
        self.vulnerabilities += asset.vulnerabilities.len();
        Ok(())
    }
}

/// The bytes `asset` adds to `file` with definitions the file does not carry yet
/// (merged vulnerabilities are distinct, so each is counted once).
fn new_definition_bytes(
    asset: &JoinedAsset,
    file: &OpenFile,
    carried: &[u32],
    definitions: &mut SerializedDefinitions,
) -> Result<usize> {
    let mut sum = 0;
    for v in &asset.vulnerabilities {
        if carried[v.identifier_id as usize] != file.number {
            sum += definitions.get(v.identifier_id)?.len() + 1;
        }
    }
    Ok(sum)
}

/// Ends a file with the definitions its vulnerabilities use, sorted by identifier.
fn close(
    mut file: OpenFile,
    definitions: &mut SerializedDefinitions,
    options: &WriteOptions,
    written: &mut Written,
    to_sync: &SyncQueue,
) -> Result<()> {
    let path = file.path.clone();
    let context = || format!("cannot write {}", path.display());
    file.out.write_all(br#"],"vuln_defs":["#).with_context(context)?;
    let catalog = definitions.catalog.clone();
    file.definitions.sort_unstable_by_key(|id| catalog.rank(*id));
    for (i, id) in file.definitions.iter().enumerate() {
        if i > 0 {
            file.out.write_all(b",").with_context(context)?;
        }
        file.out.write_all(definitions.get(*id)?).with_context(context)?;
    }
    file.out.write_all(b"]}").with_context(context)?;
    let handle = file.out.into_inner().map_err(|e| e.into_error()).with_context(context)?;
    let size = handle.metadata().map(|m| m.len() as usize).unwrap_or(0);
    if size > options.max_file_bytes {
        written.oversized_files += 1;
        tracing::warn!(
            "{} is {size} bytes, over the cap of {}: it holds a single asset, which is never split",
            path.display(),
            options.max_file_bytes
        );
    }
    written.assets += file.assets;
    written.vulnerabilities += file.vulnerabilities;
    written.definitions += file.definitions.len();
    // A syncer that stopped on an error reports it when joined.
    to_sync.send((path.clone(), handle)).ok();
    written.files.push(path);
    Ok(())
}

/// Appends an asset as a KDI object: its own fields through serde, then its
/// vulnerabilities, the bulk of the bytes, by [`emit`].
fn serialize_asset(
    out: &mut Vec<u8>,
    joined_asset: &JoinedAsset,
    catalog: &Catalog,
    vulnerability: &VulnerabilityText,
) -> Result<()> {
    serde_json::to_writer(&mut *out, &kdi_asset(&joined_asset.asset)).context("cannot serialize an asset")?;
    // The object is open again for its last field (`tags` is always written before).
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.extend_from_slice(br#","vulns":["#);
    for (i, v) in joined_asset.vulnerabilities.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A definition the plugin never emitted is named by its identifier.
        vulnerability.write(out, v, catalog.definition_name(v.identifier_id));
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// An asset's own KDI fields, without its vulnerabilities.
fn kdi_asset(a: &Asset) -> KdiAsset<'_> {
    KdiAsset {
        external_id: a.locators.external_id.as_deref(),
        hostname: a.locators.hostname.as_deref(),
        fqdn: a.locators.fqdn.as_deref(),
        netbios: a.locators.netbios.as_deref(),
        ip_address: a.locators.ip_address.as_deref(),
        mac_address: a.locators.mac_address.as_deref(),
        url: a.locators.url.as_deref(),
        application: a.locators.application.as_deref(),
        os: a.os.as_deref(),
        os_version: a.os_version.as_deref(),
        tags: &a.tags,
        last_seen: a.last_seen.map(Iso),
    }
}

fn kdi_definition<'a>(d: &'a VulnerabilityDefinition, scanner_type: &'a str) -> KdiVulnDef<'a> {
    KdiVulnDef {
        scanner_type,
        scanner_identifier: &d.identifier,
        name: &d.name,
        cve_identifiers: (!d.cve_ids.is_empty()).then(|| d.cve_ids.join(",")),
        description: d.description.as_deref(),
        solution: d.solution.as_deref(),
    }
}

/// Removes `kdi-*.json` files of an earlier run that this run did not write.
fn remove_stale(dir: &Path, keep: &BTreeSet<std::ffi::OsString>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text.starts_with(FILE_PREFIX) && text.ends_with(".json") && !keep.contains(&name) {
            fs::remove_file(entry.path()).with_context(|| format!("cannot remove stale {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // How vulnerabilities were written through serde before `emit`: the reference
    // its bytes are held to.
    #[derive(Serialize)]
    struct KdiVuln<'a> {
        scanner_identifier: &'a str,
        scanner_type: &'a str,
        vuln_def_name: &'a str,
        scanner_score: u8,
        status: &'static str,
        /// When a fixed vulnerability was closed (required with `status: closed`).
        #[serde(skip_serializing_if = "Option::is_none")]
        closed_at: Option<Iso>,
        #[serde(skip_serializing_if = "Option::is_none")]
        created_at: Option<Iso>,
        last_seen_at: LastSeen<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<Details<'a>>,
    }

    /// `last_seen_at`: the vulnerability's own time, or the run's start.
    enum LastSeen<'a> {
        At(Iso),
        RunStarted(&'a str),
    }

    impl Serialize for LastSeen<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self {
                LastSeen::At(time) => time.serialize(serializer),
                LastSeen::RunStarted(text) => serializer.serialize_str(text),
            }
        }
    }

    /// The distinct details of the merged reports, separated by blank lines, written
    /// without joining them into a new string first.
    struct Details<'a>(&'a BTreeSet<String>);

    impl std::fmt::Display for Details<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for (i, text) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str("\n\n")?;
                }
                f.write_str(text)?;
            }
            Ok(())
        }
    }

    impl Serialize for Details<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self.0.first() {
                Some(only) if self.0.len() == 1 => serializer.serialize_str(only),
                _ => serializer.collect_str(self),
            }
        }
    }

    fn reference(v: &MergedVulnerability, name: &str, scanner_type: &str, run_started: &str) -> String {
        serde_json::to_string(&KdiVuln {
            scanner_identifier: &v.identifier,
            scanner_type,
            vuln_def_name: name,
            scanner_score: v.score.min(10),
            status: if v.fixed.is_some() { "closed" } else { "open" },
            closed_at: v.fixed.map(Iso),
            created_at: v.found.map(Iso),
            last_seen_at: v.last_seen.map_or(LastSeen::RunStarted(run_started), |t| LastSeen::At(Iso(t))),
            details: (!v.details.is_empty()).then_some(Details(&v.details)),
        })
        .unwrap()
    }

    #[test]
    fn vulnerabilities_are_written_byte_for_byte_as_serde_json_wrote_them() {
        let at = |seconds, nanoseconds| Some(Datetime { seconds, nanoseconds });
        let mut cases = Vec::new();
        for score in [0, 1, 9, 10, 11, 255] {
            for (found, last_seen, fixed) in [
                (None, None, None),
                (at(1_714_557_600, 0), at(1_714_557_601, 120_000_000), None),
                (at(-70_000_000_000, 0), at(i64::MAX, 0), at(1_714_557_599, 999_999_999)),
            ] {
                for details in [vec![], vec!["one line"], vec!["b \"quoted\"\n\tpath\\x", "a", "\u{1}é"]] {
                    cases.push(MergedVulnerability {
                        identifier: "CVE-2024-\"1000\"".into(),
                        identifier_id: 0,
                        score,
                        found,
                        last_seen,
                        details: details.into_iter().map(str::to_owned).collect(),
                        reports: 1,
                        fixed,
                    });
                }
            }
        }
        let text = VulnerabilityText::new("MS \"Defender\" TVM", "2024-05-01T10:00:00Z");
        for v in &cases {
            let mut out = Vec::new();
            text.write(&mut out, v, "name with \\ backslash");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                reference(v, "name with \\ backslash", "MS \"Defender\" TVM", "2024-05-01T10:00:00Z")
            );
        }
    }

    #[test]
    fn times_are_written_as_chrono_writes_them_without_a_string_first() {
        for (seconds, nanoseconds) in [
            (0, 0),
            (1_714_557_600, 0),
            (1_714_557_600, 120_000_000),
            (1_714_557_600, 5_000),
            (-86_400, 7),
            (-70_000_000_000, 0),
            (i64::MAX, 0),
            (1_714_557_599, 999_999_999),
        ] {
            let t = Datetime { seconds, nanoseconds };
            assert_eq!(serde_json::to_string(&Iso(t)).unwrap(), format!("\"{}\"", iso(&t)), "{seconds}.{nanoseconds}");
        }
        assert_eq!(
            serde_json::to_string(&Iso(Datetime { seconds: 1_714_557_600, nanoseconds: 5_000 })).unwrap(),
            r#""2024-05-01T10:00:00.000005Z""#
        );
    }

    #[test]
    fn several_details_are_separated_by_blank_lines() {
        let details: BTreeSet<String> = ["b\"quoted\"".to_owned(), "a".to_owned()].into();
        assert_eq!(serde_json::to_string(&Details(&details)).unwrap(), r#""a\n\nb\"quoted\"""#);
        let one: BTreeSet<String> = ["only".to_owned()].into();
        assert_eq!(serde_json::to_string(&Details(&one)).unwrap(), r#""only""#);
    }
    use crate::bindings::types::{Vulnerability, VulnerabilityStatus};
    use crate::run::collect::Collector;
    use crate::run::join::MergedVulnerability;

    fn joined(assets: usize, vulns_each: usize) -> Joined {
        let mut c = Collector::default();
        for a in 0..assets {
            let key = format!("device-{a:03}");
            c.add_assets(vec![Asset::with_external_id(&key)]);
            c.add_vulnerabilities(
                (0..vulns_each)
                    .map(|v| Vulnerability {
                        asset_key: key.clone(),
                        identifier: format!("CVE-2024-{:04}", 1000 + v),
                        score: 5,
                        found: None,
                        last_seen: Some(Datetime { seconds: 1_700_000_000, nanoseconds: 0 }),
                        details: Some("x".repeat(200)),
                        status: VulnerabilityStatus::Open,
                    })
                    .collect(),
            );
        }
        c.finish().unwrap()
    }

    fn options(per_file: usize, max_bytes: usize) -> WriteOptions {
        WriteOptions {
            scanner_type: "Test".into(),
            assets_per_file: per_file,
            max_file_bytes: max_bytes,
            run_started: Utc::now(),
            reset_tags: false,
            skip_autoclose: false,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kdi-unit-{name}-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        dir
    }

    #[test]
    fn files_respect_the_asset_count_and_the_byte_cap() {
        let by_count = write(joined(10, 20), &temp("count"), options(4, DEFAULT_MAX_FILE_BYTES)).unwrap();
        assert_eq!(by_count.files.len(), 3);
        let cap = 12_000;
        let dir = temp("bytes");
        let by_bytes = write(joined(10, 20), &dir, options(500, cap)).unwrap();
        assert!(by_bytes.files.len() > 1);
        assert_eq!(by_bytes.oversized_files, 0);
        let mut seen = 0;
        for f in &by_bytes.files {
            let text = fs::read_to_string(f).unwrap();
            assert!(text.len() <= cap, "{} is {} bytes", f.display(), text.len());
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            seen += v["assets"].as_array().unwrap().len();
            // Each file defines exactly what its vulnerabilities use.
            assert_eq!(v["vuln_defs"].as_array().unwrap().len(), 20);
        }
        assert_eq!(seen, 10);
        assert_eq!(by_bytes.assets, 10);
    }

    #[test]
    fn an_asset_is_written_byte_for_byte_as_serde_json_wrote_it() {
        #[derive(Serialize)]
        struct ReferenceAsset<'a> {
            #[serde(flatten)]
            fields: KdiAsset<'a>,
            vulns: Vec<Box<serde_json::value::RawValue>>,
        }
        let mut assets = joined(3, 4).read_ahead().unwrap();
        let text = VulnerabilityText::new("Test", "2024-05-01T10:00:00Z");
        while let Some(joined) = assets.next().unwrap() {
            let mut out = Vec::new();
            serialize_asset(&mut out, &joined, &assets.catalog, &text).unwrap();
            let vulns = joined
                .vulnerabilities
                .iter()
                .map(|v| reference(v, assets.catalog.definition_name(v.identifier_id), "Test", "2024-05-01T10:00:00Z"))
                .map(|json| serde_json::value::RawValue::from_string(json).unwrap())
                .collect();
            let expected = ReferenceAsset { fields: kdi_asset(&joined.asset), vulns };
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&expected).unwrap());
        }
        assets.finish().unwrap();
    }

    #[test]
    fn assets_serialized_ahead_come_in_order_and_a_writer_that_stops_ends_the_threads() {
        let dir = temp("ahead");
        let assets = joined(40, 3).read_ahead().unwrap();
        let writer = KdiWriter::create(&dir, options(500, DEFAULT_MAX_FILE_BYTES), assets.catalog.clone()).unwrap();
        let mut serialized = writer.serialize_ahead(assets).unwrap();
        let mut keys = Vec::new();
        while let Some(next) = serialized.next().unwrap() {
            let text: serde_json::Value = serde_json::from_slice(&next.bytes).unwrap();
            assert_eq!(text["external_id"], next.asset.asset.key.as_str(), "each asset's own text");
            assert_eq!(text["vulns"].as_array().unwrap().len(), 3);
            keys.push(next.asset.asset.key.clone());
        }
        let expected: Vec<String> = (0..40).map(|a| format!("device-{a:03}")).collect();
        assert_eq!(keys, expected);
        let (counts, _cpu) = serialized.finish().unwrap();
        assert!(counts.skipped.is_empty());

        // A writer that fails part-way drops what it reads: both threads end.
        let assets = joined(200, 3).read_ahead().unwrap();
        let mut stopped = writer.serialize_ahead(assets).unwrap();
        assert!(stopped.next().unwrap().is_some());
        let started = std::time::Instant::now();
        drop(stopped);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the serialize and join threads ended");
        drop(writer);
        assert!(!dir.join(format!(".staging-{}", std::process::id())).exists(), "an unfinished writer leaves nothing");
    }

    #[test]
    fn an_asset_larger_than_the_cap_gets_a_file_of_its_own() {
        let w = write(joined(3, 50), &temp("oversized"), options(500, 1_000)).unwrap();
        assert_eq!(w.files.len(), 3);
        assert_eq!(w.oversized_files, 3);
    }

    #[test]
    fn output_is_deterministic() {
        let (a, b) = (temp("det-a"), temp("det-b"));
        let opts = options(3, DEFAULT_MAX_FILE_BYTES);
        write(joined(7, 3), &a, opts.clone()).unwrap();
        write(joined(7, 3), &b, opts).unwrap();
        for name in ["kdi-00001.json", "kdi-00002.json", "kdi-00003.json"] {
            assert_eq!(fs::read(a.join(name)).unwrap(), fs::read(b.join(name)).unwrap());
        }
    }

    #[test]
    fn written_files_match_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
        let w = write(joined(4, 3), &temp("schema"), options(2, DEFAULT_MAX_FILE_BYTES)).unwrap();
        for f in &w.files {
            let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(f).unwrap()).unwrap();
            let errors: Vec<String> =
                validator.iter_errors(&v).map(|e| format!("{} at {}", e, e.instance_path)).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", f.display());
        }
        // The schema itself rejects what CVM would: a vuln without vuln_def_name.
        let bad = serde_json::json!({"skip_autoclose": false, "version": 2, "vuln_defs": [],
            "assets": [{"external_id": "a", "vulns": [{"scanner_identifier": "x", "scanner_type": "t", "status": "open", "last_seen_at": "2024-01-01T00:00:00Z"}]}]});
        assert!(!validator.is_valid(&bad));
        let no_locator = serde_json::json!({"skip_autoclose": false, "version": 2, "vuln_defs": [], "assets": [{"os": "x", "vulns": []}]});
        assert!(!validator.is_valid(&no_locator));
    }

    #[test]
    fn a_run_of_changes_keeps_autoclose_off_and_writes_fixed_vulnerabilities_closed() {
        let mut c = Collector::default();
        c.add_assets(vec![Asset::with_external_id("a")]);
        let at = |seconds| Some(Datetime { seconds, nanoseconds: 0 });
        let vuln = |id: &str, status| Vulnerability {
            asset_key: "a".into(),
            identifier: id.into(),
            score: 5,
            found: at(1_700_000_000),
            last_seen: at(1_700_000_100),
            details: None,
            status,
        };
        let fixed_at = Datetime { seconds: 1_700_000_200, nanoseconds: 0 };
        c.add_vulnerabilities(vec![
            vuln("CVE-1", VulnerabilityStatus::Fixed(fixed_at)),
            vuln("CVE-2", VulnerabilityStatus::Open),
        ]);
        let dir = temp("changes");
        let w = write(
            c.finish().unwrap(),
            &dir,
            WriteOptions { skip_autoclose: true, ..options(10, DEFAULT_MAX_FILE_BYTES) },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&w.files[0]).unwrap()).unwrap();
        assert_eq!(v["skip_autoclose"], true);
        let vulns = &v["assets"][0]["vulns"];
        assert_eq!(vulns[0]["status"], "closed");
        assert_eq!(vulns[0]["closed_at"], "2023-11-14T22:16:40Z");
        assert_eq!(vulns[1]["status"], "open");
        assert!(vulns[1].get("closed_at").is_none());
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
        assert!(validator.is_valid(&v), "{v}");
    }
}
