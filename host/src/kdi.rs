//! Writing KDI (Kenna Data Importer) version 2 JSON files.
//!
//! Every active asset goes in, also those without vulnerabilities (an empty `vulns`
//! list is what lets CVM close what was fixed), each asset in exactly one file with
//! its complete vulnerability list, `skip_autoclose: false`, and `vuln_def_name` on
//! every vulnerability naming a `vuln_defs[].name` of the same file.
//! See ../shared/docs/kdi-and-cvm-api.md §2.

use crate::bindings::types::Datetime;
use crate::join::{Joined, JoinedAsset};
use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Assets per file unless configured otherwise (the toolkit's batch size).
pub const DEFAULT_ASSETS_PER_FILE: usize = 500;
/// File names the writer owns in the output directory.
pub const FILE_PREFIX: &str = "kdi-";

#[derive(Serialize)]
struct KdiFile<'a> {
    skip_autoclose: bool,
    version: u8,
    assets: Vec<KdiAsset<'a>>,
    vuln_defs: Vec<KdiVulnDef<'a>>,
}

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
    os: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    tags: &'a [String],
    /// Not in the documented KDI asset table, but sent by Kenna's own connectors.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
    vulns: Vec<KdiVuln<'a>>,
}

#[derive(Serialize)]
struct KdiVuln<'a> {
    scanner_identifier: &'a str,
    scanner_type: &'a str,
    vuln_def_name: &'a str,
    scanner_score: u8,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    last_seen_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<String>,
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
pub fn iso(t: &Datetime) -> String {
    DateTime::<Utc>::from_timestamp(t.seconds, t.nanoseconds)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// What was written.
#[derive(Debug, Default, Clone)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub assets: usize,
    pub vulnerabilities: usize,
    pub definitions: usize,
}

/// How to write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub scanner_type: String,
    pub assets_per_file: usize,
    /// `last_seen_at` for vulnerabilities the source gave no time for.
    pub run_started: DateTime<Utc>,
}

/// Writes the joined records as KDI files into `dir`.
///
/// Files are first written to a staging directory inside `dir`, then moved into
/// place, and only then are files of an earlier run removed; a failure leaves the
/// earlier run's files untouched.
pub fn write(joined: &Joined, dir: &Path, options: &WriteOptions) -> Result<Written> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let staging = dir.join(format!(".staging-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).ok();
    }
    fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let result = write_batches(joined, &staging, options);
    let staged = match result {
        Ok(staged) => staged,
        Err(e) => {
            fs::remove_dir_all(&staging).ok();
            return Err(e);
        }
    };
    let new_names: BTreeSet<_> = staged.files.iter().filter_map(|p| p.file_name().map(|n| n.to_owned())).collect();
    let mut files = Vec::new();
    for path in &staged.files {
        let target = dir.join(path.file_name().expect("staged files have names"));
        fs::rename(path, &target).with_context(|| format!("cannot move {} into place", target.display()))?;
        files.push(target);
    }
    fs::remove_dir_all(&staging).ok();
    remove_stale(dir, &new_names)?;
    Ok(Written { files, ..staged })
}

fn write_batches(joined: &Joined, dir: &Path, options: &WriteOptions) -> Result<Written> {
    let mut written = Written::default();
    let per_file = options.assets_per_file.max(1);
    for (index, batch) in joined.assets.chunks(per_file).enumerate() {
        let path = dir.join(format!("{FILE_PREFIX}{:05}.json", index + 1));
        let file = build_file(batch, joined, options);
        written.assets += file.assets.len();
        written.vulnerabilities += file.assets.iter().map(|a| a.vulns.len()).sum::<usize>();
        written.definitions += file.vuln_defs.len();
        let handle = fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(handle);
        serde_json::to_writer(&mut out, &file).with_context(|| format!("cannot write {}", path.display()))?;
        out.flush().with_context(|| format!("cannot write {}", path.display()))?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.files.push(path);
    }
    Ok(written)
}

fn build_file<'a>(batch: &'a [JoinedAsset], joined: &'a Joined, options: &'a WriteOptions) -> KdiFile<'a> {
    let scanner_type = options.scanner_type.as_str();
    let run_started = options.run_started.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut used = BTreeSet::new();
    let assets = batch
        .iter()
        .map(|joined_asset| {
            let a = &joined_asset.asset;
            let vulns = joined_asset
                .vulnerabilities
                .iter()
                .map(|v| {
                    let definition = &joined.definitions[&v.identifier];
                    used.insert(v.identifier.as_str());
                    KdiVuln {
                        scanner_identifier: &v.identifier,
                        scanner_type,
                        vuln_def_name: &definition.name,
                        scanner_score: v.score.min(10),
                        status: "open",
                        created_at: v.found.as_ref().map(iso),
                        last_seen_at: v.last_seen.as_ref().map(iso).unwrap_or_else(|| run_started.clone()),
                        details: (!v.details.is_empty())
                            .then(|| v.details.iter().cloned().collect::<Vec<_>>().join("\n\n")),
                    }
                })
                .collect();
            KdiAsset {
                external_id: a.locators.external_id.as_deref(),
                hostname: a.locators.hostname.as_deref(),
                fqdn: a.locators.fqdn.as_deref(),
                netbios: a.locators.netbios.as_deref(),
                ip_address: a.locators.ip_address.as_deref(),
                mac_address: a.locators.mac_address.as_deref(),
                os: a.os.as_deref(),
                os_version: a.os_version.as_deref(),
                tags: &a.tags,
                last_seen: a.last_seen.as_ref().map(iso),
                vulns,
            }
        })
        .collect();
    let vuln_defs = used
        .into_iter()
        .map(|id| {
            let d = &joined.definitions[id];
            KdiVulnDef {
                scanner_type,
                scanner_identifier: &d.identifier,
                name: &d.name,
                cve_identifiers: (!d.cve_ids.is_empty()).then(|| d.cve_ids.join(",")),
                description: d.description.as_deref(),
                solution: d.solution.as_deref(),
            }
        })
        .collect();
    KdiFile { skip_autoclose: false, version: 2, assets, vuln_defs }
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
