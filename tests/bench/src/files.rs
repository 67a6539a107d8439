//! `connector-bench-files`: what keeping run files costs the service, measured on the
//! real `serve` and `worker` processes (SQLite, the default directory file store)
//! against a simulated Defender tenant:
//!
//! - memory: the worker's peak RSS for a run whose largest KDI file is small, then
//!   one whose largest is about 100 MB; and `serve`'s peak RSS before and after
//!   streaming that file out, decompressed and gzipped. Flat means the large file
//!   adds about nothing over the small one;
//! - the database: its size after `--runs` runs of a tenant of `--rows` rows, and
//!   the file store's.
//!
//! `CONNECTOR_HOST_BINARY=PATH` measures another build (an older one that kept files
//! in the database) with the same steps, for a before/after in one sitting; with
//! `--keep`, the database it filled is kept, to try an upgrade on it.
//!
//! Build first: `cargo build-plugins && cargo build --release -p connector-host-cli -p connector-bench`.

use anyhow::{bail, Context, Result};
use clap::Parser;
use connector_e2e::service::{defender_settings, Api, Process, ADMIN_TOKEN};
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Measures run files in the service: worker and serve memory, database size")]
struct Args {
    /// Runs for the database-size figure.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Rows of the tenant those runs read.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    #[arg(long, default_value_t = 2_000)]
    devices: usize,
    /// Skip the memory figures.
    #[arg(long)]
    no_memory: bool,
    /// Skip the database figures.
    #[arg(long)]
    no_database: bool,
    /// Keep the database figures' state directory (to try an upgrade on it) and print where.
    #[arg(long)]
    keep: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

fn main() -> Result<()> {
    let args = Args::parse();
    let release = std::env::current_exe()?.parent().context("the benchmark's directory")?.to_path_buf();
    if std::env::var_os("CONNECTOR_HOST_BINARY").is_none() {
        std::env::set_var("CONNECTOR_HOST_BINARY", release.join("connector-host"));
    }
    let binary = PathBuf::from(std::env::var_os("CONNECTOR_HOST_BINARY").unwrap());
    if !binary.is_file() {
        bail!("{} is missing; build it first: cargo build --release -p connector-host-cli", binary.display());
    }
    println!("connector-host: {}", binary.display());
    if !args.no_memory {
        memory()?;
    }
    if !args.no_database {
        database(&args)?;
    }
    Ok(())
}

/// A `serve --workers 0` and a `worker` on one state directory.
struct Service {
    serve: Process,
    /// None: the worker is in `serve`.
    worker: Option<Process>,
    api: Api,
    state: PathBuf,
}

fn start_service(state: &Path, in_process_worker: bool) -> Result<Service> {
    let env = [("CONNECTOR_HOST_ADMIN_TOKEN", ADMIN_TOKEN)];
    let workers = if in_process_worker { "1" } else { "0" };
    let (serve, url) = Process::serve(state, &["--workers", workers], &env).map_err(anyhow::Error::msg)?;
    let worker = match in_process_worker {
        true => None,
        false => Some(Process::worker(state, &[], &[]).map_err(anyhow::Error::msg)?.0),
    };
    Ok(Service { serve, worker, api: Api::new(&url, Some(ADMIN_TOKEN)), state: state.to_owned() })
}

fn connector(api: &Api, sim: &DefenderSim, name: &str) -> Result<String> {
    let mut settings = defender_settings(sim);
    settings["page_size"] = json!(10_000);
    // The catalogue read is not what is measured here.
    settings["catalogue"] = json!(false);
    let (status, connector) =
        api.post("/api/connectors", json!({"plugin": "defender-tvm", "name": name, "settings": settings}));
    if status != 201 {
        bail!("the connector was refused: {connector}");
    }
    Ok(connector["id"].as_str().unwrap().to_owned())
}

fn run_once(api: &Api, connector: &str) -> Result<Value> {
    let (status, queued) = api.post(&format!("/api/connectors/{connector}/runs"), json!({}));
    if status != 202 {
        bail!("the run was not queued: {queued}");
    }
    let run = api.wait_for_run(queued["id"].as_str().unwrap(), Duration::from_secs(1800));
    if run["status"] != "succeeded" {
        bail!("the run failed: {}", run["error"]);
    }
    Ok(run)
}

/// `VmHWM` (peak resident set) of a running process, in bytes.
fn high_water_mark(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// Streams a file from `serve` and drops it; the bytes received.
fn stream(api: &Api, url: &str, gzip: bool) -> Result<u64> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let mut request = client.get(format!("{}{url}", api.base)).bearer_auth(ADMIN_TOKEN);
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let mut response = request.send()?;
    if !response.status().is_success() {
        bail!("GET {url}: {}", response.status());
    }
    let (mut total, mut buffer) = (0u64, vec![0u8; 1 << 16]);
    loop {
        let n = response.read(&mut buffer)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn memory() -> Result<()> {
    println!("\nMemory: one run each, its largest file streamed back");
    println!(
        "{:>10} {:>14} {:>14} {:>14} {:>16} {:>16}",
        "rows", "largest file", "worker peak", "serve before", "serve, plain", "serve, gzipped"
    );
    // 500 rows a device: 500 assets (one file) of about 100 MB at 250,000 rows.
    for (devices, rows) in [(50, 25_000), (500, 250_000)] {
        let sim = DefenderSim::start(TenantSpec { seed: 3, devices, rows }, SimOptions::default())?;
        let dir = connector_e2e::kdi::temp_dir(&format!("bench-files-memory-{rows}"));
        let service = start_service(&dir.join("state"), false)?;
        let id = connector(&service.api, &sim, "memory")?;
        let run = run_once(&service.api, &id)?;
        let worker_peak = high_water_mark(service.worker.as_ref().context("a worker process")?.child.id());
        let files = run["files"].as_array().context("no files")?;
        let largest = files.iter().max_by_key(|f| f["bytes"].as_u64()).context("no file")?;
        let url = largest["url"].as_str().unwrap();
        let serve_pid = service.serve.child.id();
        let before = high_water_mark(serve_pid);
        let plain = stream(&service.api, url, false)?;
        let after_plain = high_water_mark(serve_pid);
        stream(&service.api, url, true)?;
        let after_gzip = high_water_mark(serve_pid);
        println!(
            "{:>10} {:>11.1} MB {:>10.1} MiB {:>10.1} MiB {:>12.1} MiB {:>12.1} MiB",
            rows,
            plain as f64 / 1e6,
            worker_peak as f64 / MIB,
            before as f64 / MIB,
            after_plain as f64 / MIB,
            after_gzip as f64 / MIB
        );
        drop(service);
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}

fn service_state(dir: &Path) -> PathBuf {
    dir.join("state")
}

fn size_of(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(path).map(|d| d.flatten().map(|e| size_of(&e.path())).sum()).unwrap_or(0)
        }
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn database(args: &Args) -> Result<()> {
    println!("\nDatabase: {} full runs of a tenant of {} rows ({} devices)", args.runs, args.rows, args.devices);
    let sim =
        DefenderSim::start(TenantSpec { seed: 5, devices: args.devices, rows: args.rows }, SimOptions::default())?;
    let dir = connector_e2e::kdi::temp_dir("bench-files-database");
    let service = start_service(&dir.join("state"), true)?;
    let id = connector(&service.api, &sim, "database")?;
    let started = Instant::now();
    let mut kdi = 0u64;
    for i in 0..args.runs {
        // Each run a baseline, the most a run writes (later runs would otherwise be
        // incremental, writing only changes).
        let (status, cleared) = service.api.post(&format!("/api/connectors/{id}/clear-state"), json!({}));
        if status >= 300 {
            bail!("clear-state: {cleared}");
        }
        let run = run_once(&service.api, &id)?;
        kdi += run["files"].as_array().map(|f| f.iter().filter_map(|f| f["bytes"].as_u64()).sum::<u64>()).unwrap_or(0);
        if (i + 1) % 10 == 0 {
            println!("  {} runs in {:.0} s", i + 1, started.elapsed().as_secs_f64());
        }
    }
    let db: u64 = ["connector-host.db", "connector-host.db-wal"].iter().map(|f| size_of(&service.state.join(f))).sum();
    let jobs: u64 =
        ["connector-host-jobs.db", "connector-host-jobs.db-wal"].iter().map(|f| size_of(&service.state.join(f))).sum();
    let files = size_of(&service.state.join("files"));
    println!("  KDI written: {:.1} MB in all ({:.2} MB a run)", kdi as f64 / 1e6, kdi as f64 / 1e6 / args.runs as f64);
    println!("  database (connector-host.db with its WAL): {:.1} MB", db as f64 / 1e6);
    println!("  job queue (connector-host-jobs.db with its WAL): {:.1} MB", jobs as f64 / 1e6);
    println!("  file store (state/files): {:.1} MB", files as f64 / 1e6);
    drop(service);
    if args.keep {
        println!("  kept: {}", service_state(&dir).display());
    } else {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}
