//! `connector-bench`: runs the real `connector-host run` against a simulated Defender
//! tenant of a given size (rate limits off) and prints figures with ratios against
//! baselines measured in the same run:
//!
//! - end to end: wall time, rows per second, and the ratio to a plain download of the
//!   same pages (token, machines, vulnerability pages; bodies read and dropped);
//! - peak memory (RSS) of the `connector-host` process;
//! - API calls made against the minimum the page sizes allow, and 429s provoked;
//! - mapping the same vulnerability pages natively and inside the wasm plugin;
//! - cold (compiling) and warm (cached) start to a ready plugin instance;
//! - an incremental run (contract 0.4) after `--changed-percent` of the rows were
//!   fixed (every row of about that share of the CVEs, as updates fix them),
//!   against the full run and a plain download of its own pages.
//!
//! Build first: `cargo build-plugins && cargo build --release -p connector-host -p connector-bench`.

use anyhow::{bail, Context, Result};
use clap::Parser;
use connector_host::engine::PluginHost;
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Benchmarks the Defender connector end to end against a simulated tenant")]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    devices: usize,
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    #[arg(long, default_value_t = 50_000)]
    page_size: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The plugin's `api_mode`. `json` by default, so that the run reads the same
    /// pages as the plain-download baseline (`auto` would switch a tenant above
    /// 100,000 devices to export files, which the baseline does not read).
    #[arg(long, default_value = "json")]
    api_mode: String,
    /// Render pages as they are requested instead of ahead (slower: the simulator
    /// then competes with the connector for the cores, and holds no pages).
    #[arg(long)]
    live_pages: bool,
    /// Vulnerability rows mapped natively and in wasm for the mapping comparison.
    #[arg(long, default_value_t = 200_000)]
    mapping_rows: u64,
    /// Percent of the rows fixed between the full run and the incremental one.
    #[arg(long, default_value_t = 1.0)]
    changed_percent: f64,
    /// Another build of `connector-host` (e.g. main's, copied aside) to compare with
    /// this one: both run the same full run on two mapping instances, taking turns,
    /// `--rounds` times; the best of each and their ratios are printed.
    #[arg(long)]
    baseline_host: Option<PathBuf>,
    /// Another build of the Defender plugin to compare with this one, the same way
    /// (alone, or with `--baseline-host`).
    #[arg(long)]
    baseline_plugin: Option<PathBuf>,
    /// Rounds of the comparison with a baseline, and of the mapping comparison.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only the mapping comparison (natively and in wasm; with `--baseline-plugin`,
    /// that build's wasm mapping too, in turns): a change to the plugin's mapping
    /// measured without the noise of whole runs.
    #[arg(long)]
    mapping_only: bool,
}

fn target_release() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("the benchmark's directory")?.to_path_buf())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let release = target_release()?;
    let host_bin = release.join("connector-host");
    let plugin = release.parent().context("target directory")?.join("wasm32-wasip2/release/plugin_defender.wasm");
    for (path, how) in [(&host_bin, "cargo build --release -p connector-host"), (&plugin, "cargo build-plugins")] {
        if !path.is_file() {
            bail!("{} is missing; build it first: {how}", path.display());
        }
    }
    println!(
        "Tenant: {} devices, {} vulnerability rows, pages of {} rows (seed {})",
        args.devices, args.rows, args.page_size, args.seed
    );
    let started = Instant::now();
    let sim = DefenderSim::start(
        TenantSpec { seed: args.seed, devices: args.devices, rows: args.rows },
        // Changes show in the delta export a second after they happen.
        SimOptions { snapshot_window: Duration::from_secs(1), ..SimOptions::default() },
    )?;
    let active = sim.tenant().active_machines().count() as u64;
    println!("Simulated tenant ready in {:.1} s ({} active devices)", started.elapsed().as_secs_f64(), active);
    if args.mapping_only {
        let mapping_rows = args.mapping_rows.min(args.rows);
        return mapping_comparison(
            &sim,
            &plugin,
            args.baseline_plugin.as_deref(),
            args.page_size,
            mapping_rows,
            args.rounds,
        );
    }
    let mut page_bytes = None;
    if !args.live_pages {
        let started = Instant::now();
        let bytes = sim.prerender_vulnerability_pages(args.page_size);
        println!(
            "Vulnerability pages rendered ahead in {:.1} s ({:.0} MB, {:.0} bytes a row)",
            started.elapsed().as_secs_f64(),
            bytes as f64 / 1e6,
            bytes as f64 / args.rows.max(1) as f64
        );
        page_bytes = Some(bytes);
    }

    // Baseline: a plain download of the same pages.
    let (download, machines) = plain_download(&sim, args.page_size)?;

    // End to end: the real CLI, in its own process so its peak RSS is its own.
    let dir = std::env::temp_dir().join(format!("connector-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            // The catalogue is a fixed cost (about 7 calls and 0.8 s whatever the
            // tenant's size, README "Mapping"): off, the figures per row stay
            // comparable with the plain download and with earlier rounds.
            "{}page_size = {}\nrate_limits = \"off\"\napi_mode = \"{}\"\ncatalogue = false\n",
            sim.config_toml(),
            args.page_size,
            args.api_mode
        ),
    )?;
    let minimum = 1 + (active / 10_000 + 1) + args.rows.div_ceil(args.page_size);
    println!();
    println!(
        "Plain download of the same pages   {:>10.2} s   {:>12.0} rows/s",
        download.as_secs_f64(),
        args.rows as f64 / download.as_secs_f64()
    );
    // The Defender plugin declares independent pages: the same run mapping on one
    // instance, then on two (this machine's cores).
    let mut first = None;
    let state = dir.join("state");
    let mut last_full = Duration::ZERO;
    for instances in [1, 2] {
        let calls_before: u64 = sim.calls().values().sum();
        // Full runs, keeping their state for the incremental run at the end.
        let extra = ["--full".to_owned(), "--state-dir".to_owned(), state.display().to_string()];
        let run = end_to_end(&host_bin, &plugin, &config, &dir.join("out"), instances, &extra)?;
        last_full = run.wall;
        let calls: u64 = sim.calls().values().sum::<u64>() - calls_before;
        let throttled = sim.calls().get("429").copied().unwrap_or(0);
        let seconds = run.wall.as_secs_f64();
        println!();
        println!("Mapping on {instances} instance(s):");
        println!(
            "  End to end (connector-host run)  {:>10.2} s   {:>12.0} rows/s",
            seconds,
            args.rows as f64 / seconds
        );
        if let Some(bytes) = page_bytes {
            println!(
                "  Vulnerability pages read          {:>9.0} MB   {:>12.0} MB/s end to end",
                bytes as f64 / 1e6,
                bytes as f64 / 1e6 / seconds
            );
        }
        println!("  Ratio end to end / download      {:>10.2}", seconds / download.as_secs_f64());
        println!(
            "  CPU time of connector-host       {:>10.2} s    {:>11.2} cores busy on average; {:.2} s per million rows",
            run.cpu.as_secs_f64(),
            run.cpu.as_secs_f64() / seconds,
            run.cpu.as_secs_f64() / (args.rows as f64 / 1e6)
        );
        println!("  Peak RSS of connector-host       {:>10.1} MiB", run.peak_rss as f64 / (1 << 20) as f64);
        let per_million = |seconds: f64| seconds / (args.rows as f64 / 1e6);
        let stages: Vec<String> =
            run.stages.iter().map(|(stage, cpu)| format!("{stage} {:.2} s", per_million(*cpu))).collect();
        println!("  CPU by stage, per million rows   {}", stages.join(", "));
        println!("  API calls made / minimum         {:>10} / {minimum}", calls);
        println!("  429 responses provoked           {:>10}", throttled);
        match first {
            None => first = Some(seconds),
            Some(one) => println!("  Speed-up over one instance       {:>10.2}x", one / seconds),
        }
    }

    if args.baseline_host.is_some() || args.baseline_plugin.is_some() {
        let baseline =
            (args.baseline_host.as_deref().unwrap_or(&host_bin), args.baseline_plugin.as_deref().unwrap_or(&plugin));
        compare_builds(baseline, (&host_bin, &plugin), &config, &dir, args.rounds, args.rows)?;
    }

    // As a user runs it: no flags, the plugin's defaults (pacing on, api_mode auto,
    // the catalogue read), the CLI's progress on the terminal's stderr.
    let plain = dir.join("default.toml");
    std::fs::write(&plain, sim.config_toml())?;
    let default = measure_run(
        &host_bin,
        &plugin,
        &plain,
        &dir.join("out-default"),
        &["--state-dir".into(), dir.join("state-default").display().to_string()],
    )?;
    println!();
    println!("A default run (connector-host run, no flags, the plugin's defaults):");
    println!(
        "  End to end                       {:>10.2} s   ratio to the download {:.2}",
        default.wall.as_secs_f64(),
        default.wall.as_secs_f64() / download.as_secs_f64()
    );
    println!("  CPU time of connector-host       {:>10.2} s", default.cpu.as_secs_f64());
    println!("  Peak RSS of connector-host       {:>10.1} MiB", default.peak_rss as f64 / (1 << 20) as f64);

    incremental(&sim, &args, &host_bin, &plugin, &config, &dir, (last_full, page_bytes, machines))?;
    mapping_in_fresh_process(&args)?;
    start_times(&plugin, &dir)?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// The same full run on two mapping instances with the `baseline` build (host and
/// plugin) and with this one, in turns (so that both see the machine in the same
/// moods); the best CPU time of each, by stage, and the ratios.
fn compare_builds(
    baseline: (&std::path::Path, &std::path::Path),
    this: (&std::path::Path, &std::path::Path),
    config: &std::path::Path,
    dir: &std::path::Path,
    rounds: usize,
    rows: u64,
) -> Result<()> {
    for path in [baseline.0, baseline.1] {
        anyhow::ensure!(path.is_file(), "the baseline {} is not a file", path.display());
    }
    let mut best: [Option<Measured>; 2] = [None, None];
    // Each round's CPU time of this build over the baseline's, the two run back to
    // back: a drift of the machine's speed moves both, so these ratios scatter less
    // than the best of each does.
    let mut paired = Vec::new();
    for round in 0..rounds.max(1) {
        let mut cpu = [Duration::ZERO; 2];
        // Baseline first in even rounds, this build first in odd ones: whatever the
        // second run of a pair pays (the first one's files to replace) is shared.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for slot in order {
            let (host, plugin) = [baseline, this][slot];
            let run = end_to_end(host, plugin, config, &dir.join("out-compare"), 2, &["--full".to_owned()])?;
            cpu[slot] = run.cpu;
            if best[slot].as_ref().is_none_or(|b| run.cpu < b.cpu) {
                best[slot] = Some(run);
            }
        }
        paired.push(cpu[1].as_secs_f64() / cpu[0].as_secs_f64());
    }
    let [Some(before), Some(after)] = best else { unreachable!("at least one round ran") };
    let per_million = |seconds: f64| seconds / (rows as f64 / 1e6);
    println!();
    println!("This build against the baseline, two mapping instances, best of {} rounds each:", rounds.max(1));
    println!("  {:<10} {:>10} {:>10} {:>8}", "", "baseline", "this", "ratio");
    let line = |name: &str, b: f64, a: f64| println!("  {name:<10} {b:>8.2} s {a:>8.2} s {:>8.2}", a / b);
    line("wall", before.wall.as_secs_f64(), after.wall.as_secs_f64());
    line("CPU / M", per_million(before.cpu.as_secs_f64()), per_million(after.cpu.as_secs_f64()));
    for (stage, cpu) in &after.stages {
        if let Some((_, was)) = before.stages.iter().find(|(s, _)| s == stage) {
            line(stage, per_million(*was), per_million(*cpu));
        }
    }
    println!(
        "  peak RSS   {:>6.1} MiB {:>6.1} MiB",
        before.peak_rss as f64 / 1048576.0,
        after.peak_rss as f64 / 1048576.0
    );
    println!("  CPU time, this ÷ baseline, round by round: {}", spread(&mut paired));
    Ok(())
}

/// Round-by-round ratios as their median and range.
fn spread(ratios: &mut [f64]) -> String {
    ratios.sort_by(f64::total_cmp);
    format!("median {:.3}, from {:.3} to {:.3}", ratios[ratios.len() / 2], ratios[0], ratios[ratios.len() - 1])
}

/// Token, every machines page and every vulnerability page, bodies read and dropped.
/// What one run of the real CLI took.
struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_rss: u64,
    /// CPU seconds of each stage, in the order the run reports them.
    stages: Vec<(String, f64)>,
    /// `full` or `incremental`.
    mode: String,
}

/// After `--changed-percent` of the rows were fixed, an incremental run from the
/// state the last full run kept, against that full run (`full`: its wall time, the
/// vulnerability pages' bytes, the machine pages' bytes).
fn incremental(
    sim: &DefenderSim,
    args: &Args,
    host_bin: &std::path::Path,
    plugin: &std::path::Path,
    config: &std::path::Path,
    dir: &std::path::Path,
    full: (Duration, Option<u64>, (u64, Duration)),
) -> Result<()> {
    let (full_wall, page_bytes, (machine_bytes, machines_time)) = full;
    let every = (100.0 / args.changed_percent.max(0.001)).round().max(1.0) as u64;
    let started = Instant::now();
    sim.update_tenant(|t| {
        // As an update does: every row of the CVEs it fixes (about `every`th of them),
        // on every device.
        t.remove_rows(|r| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            r.cve_id.as_deref().unwrap_or_default().to_ascii_uppercase().hash(&mut h);
            h.finish().is_multiple_of(every)
        })
    });
    let changes = sim.tenant().changes.len();
    println!();
    println!(
        "Incremental run after {changes} rows ({:.2}%) were fixed (changed in {:.1} s):",
        changes as f64 * 100.0 / args.rows as f64,
        started.elapsed().as_secs_f64()
    );
    // The delta export shows changes once their snapshot window (a second) closed.
    std::thread::sleep(Duration::from_millis(1500));
    sim.index_references();
    let extra = ["--state-dir".to_owned(), dir.join("state").display().to_string()];
    let references_before = sim.calls().get("machine references").copied().unwrap_or(0);
    let run = end_to_end(host_bin, plugin, config, &dir.join("out-incremental"), 2, &extra)?;
    let references = sim.calls().get("machine references").copied().unwrap_or(0) - references_before;
    if run.mode != "incremental" {
        bail!("the run after the full one was {}, not incremental", run.mode);
    }
    let (delta_bytes, delta_time) = delta_download(sim)?;
    let seconds = run.wall.as_secs_f64();
    let download = (machines_time + delta_time).as_secs_f64();
    println!(
        "  Plain download of the same pages {:>10.2} s   (token and machines {:.2} s, changes {:.2} s); ratio {:.2}",
        download,
        machines_time.as_secs_f64(),
        delta_time.as_secs_f64(),
        seconds / download
    );
    println!(
        "  Wall time                        {:>10.2} s   ({:.1}% of the full run's {:.2} s)",
        seconds,
        seconds * 100.0 / full_wall.as_secs_f64(),
        full_wall.as_secs_f64()
    );
    if let Some(pages) = page_bytes {
        let (incremental, full) = (machine_bytes + delta_bytes, machine_bytes + pages);
        println!(
            "  Bytes transferred                {:>9.1} MB   ({:.1}% of the full run's {:.0} MB: machines {:.1} MB, changes {:.1} MB)",
            incremental as f64 / 1e6,
            incremental as f64 * 100.0 / full as f64,
            full as f64 / 1e6,
            machine_bytes as f64 / 1e6,
            delta_bytes as f64 / 1e6
        );
    }
    println!("  Calls asking which devices still carry a fixed CVE {references}");
    println!("  CPU time of connector-host       {:>10.2} s", run.cpu.as_secs_f64());
    let stages: Vec<String> = run.stages.iter().map(|(stage, cpu)| format!("{stage} {cpu:.2} s")).collect();
    println!("  CPU by stage                     {}", stages.join(", "));
    println!("  Peak RSS of connector-host       {:>10.1} MiB", run.peak_rss as f64 / (1 << 20) as f64);
    Ok(())
}

/// The bytes of the delta export's pages since a day ago (every change), as the
/// plugin reads them, and the time they took.
fn delta_download(sim: &DefenderSim) -> Result<(u64, Duration)> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(900)).build()?;
    let bearer = bearer(sim, &client)?;
    let started = Instant::now();
    let since = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut next = Some(format!(
        "{}/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime={}&pageSize=50000",
        sim.base_url(),
        since.replace(':', "%3A")
    ));
    let mut bytes = 0;
    while let Some(url) = next.take() {
        let body = client.get(url).header("authorization", &bearer).send()?.bytes()?;
        bytes += body.len() as u64;
        next = find_next_link(&body);
    }
    Ok((bytes, started.elapsed()))
}

/// Runs `connector-host run` in its own process, so its peak RSS is its own.
fn end_to_end(
    host_bin: &std::path::Path,
    plugin: &std::path::Path,
    config: &std::path::Path,
    out: &std::path::Path,
    mapping_instances: usize,
    extra: &[String],
) -> Result<Measured> {
    let mut args = vec!["--mapping-instances".to_owned(), mapping_instances.to_string(), "--json".to_owned()];
    args.extend_from_slice(extra);
    measure_run(host_bin, plugin, config, out, &args)
}

/// Runs `connector-host run` with `args` after the required ones; with `--json`
/// among them, its summary is read too.
fn measure_run(
    host_bin: &std::path::Path,
    plugin: &std::path::Path,
    config: &std::path::Path,
    out: &std::path::Path,
    args: &[String],
) -> Result<Measured> {
    let started = Instant::now();
    let json = args.iter().any(|a| a == "--json");
    let mut child = Command::new(host_bin)
        .args(["run", "--plugin"])
        .arg(plugin)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--allow-insecure-loopback")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(if json { std::process::Stdio::inherit() } else { std::process::Stdio::null() })
        .spawn()?;
    // The child's own high-water mark, read from /proc while it runs. (getrusage's
    // figure for children starts from the parent's RSS at spawn, which includes the
    // simulated tenant: it overstated the connector by hundreds of MiB.)
    let (mut peak_rss, mut cpu) = (0, Duration::ZERO);
    let status = loop {
        if let Some(hwm) = high_water_mark(child.id()) {
            if hwm > peak_rss && std::env::var_os("BENCH_TRACE_RSS").is_some() {
                eprintln!("rss peak {:.1} MiB at {:.2} s", hwm as f64 / 1048576.0, started.elapsed().as_secs_f64());
            }
            peak_rss = peak_rss.max(hwm);
        }
        if let Some(used) = cpu_time(child.id()) {
            cpu = cpu.max(used);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    if !status.success() {
        bail!("connector-host run failed");
    }
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().context("the run's output")?, &mut printed)?;
    if !json {
        return Ok(Measured { wall, cpu, peak_rss, stages: Vec::new(), mode: String::new() });
    }
    let summary: serde_json::Value = serde_json::from_str(&printed).context("the run's JSON summary")?;
    let stages = summary["stage_cpu"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0))).collect())
        .unwrap_or_default();
    let mode = summary["mode"].as_str().unwrap_or_default().to_owned();
    Ok(Measured { wall, cpu, peak_rss, stages, mode })
}

/// The time to download every page, and the machine pages' bytes and time.
fn plain_download(sim: &DefenderSim, page_size: u64) -> Result<(Duration, (u64, Duration))> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(900)).build()?;
    let started = Instant::now();
    let bearer = bearer(sim, &client)?;
    let (mut skip, mut machine_bytes) = (0, 0);
    loop {
        let url =
            format!("{}/api/machines?$filter=healthStatus%20eq%20%27Active%27&$top=10000&$skip={skip}", sim.base_url());
        let bytes = client.get(url).header("authorization", &bearer).send()?.bytes()?;
        machine_bytes += bytes.len() as u64;
        let body: serde_json::Value = serde_json::from_slice(&bytes)?;
        let n = body["value"].as_array().map_or(0, Vec::len);
        skip += n;
        if n < 10_000 {
            break;
        }
    }
    let machines_time = started.elapsed();
    let mut next =
        Some(format!("{}/api/machines/SoftwareVulnerabilitiesByMachine?pageSize={page_size}", sim.base_url()));
    while let Some(url) = next.take() {
        let bytes = client.get(url).header("authorization", &bearer).send()?.bytes()?;
        // Only the link is read: a plain download does not parse rows.
        next = find_next_link(&bytes);
    }
    Ok((started.elapsed(), (machine_bytes, machines_time)))
}

/// A bearer token from the simulated login host.
fn bearer(sim: &DefenderSim, client: &reqwest::blocking::Client) -> Result<String> {
    let t = sim.tenant();
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope=https%3A%2F%2Fapi.securitycenter.microsoft.com%2F.default",
        t.client_id, t.client_secret
    );
    let url = format!("{}/{}/oauth2/v2.0/token", sim.base_url(), t.tenant_id);
    drop(t);
    let token: serde_json::Value =
        client.post(url).header("content-type", "application/x-www-form-urlencoded").body(form).send()?.json()?;
    Ok(format!("Bearer {}", token["access_token"].as_str().context("no access token")?))
}

fn find_next_link(body: &[u8]) -> Option<String> {
    let key = b"\"@odata.nextLink\":\"";
    let at = body.windows(key.len()).rposition(|w| w == key)? + key.len();
    let end = body[at..].iter().position(|b| *b == b'"')? + at;
    Some(String::from_utf8_lossy(&body[at..end]).into_owned())
}

/// The mapping comparison in a process of its own (this benchmark with
/// `--mapping-only`), on a tenant of `--mapping-rows` rows as dense as this one.
/// Run in this process, after the runs above, the native mapping measured up to 4
/// times slower than in a fresh one (the allocator's state after the pages rendered
/// and freed here), which made wasm look as fast as native.
fn mapping_in_fresh_process(args: &Args) -> Result<()> {
    let rows = args.mapping_rows.min(args.rows);
    let devices = (args.devices as u64 * rows / args.rows.max(1)).max(1);
    let status = Command::new(std::env::current_exe()?)
        .args(["--mapping-only", "--rounds", "3"])
        .args(["--rows", &rows.to_string(), "--mapping-rows", &rows.to_string()])
        .args(["--devices", &devices.to_string(), "--page-size", &args.page_size.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "the mapping comparison failed: {status}");
    Ok(())
}

/// The same rows mapped natively (plain Rust) and by the plugin in wasm (including
/// handing its records to the host), in the parts `fetch` cuts pages into, as a run
/// maps them; with a `baseline` plugin, its wasm mapping too, in turns with this one.
fn mapping_comparison(
    sim: &DefenderSim,
    plugin: &std::path::Path,
    baseline: Option<&std::path::Path>,
    page_size: u64,
    rows: u64,
    rounds: usize,
) -> Result<()> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(900)).build()?;
    let host = PluginHost::new()?;
    let mut sessions = Vec::new();
    for path in std::iter::once(plugin).chain(baseline) {
        let loaded = host.load(path)?;
        sessions.push(connector_bench::mapping_session(&host, &loaded, &sim.config_toml())?);
    }
    let bearer = bearer(sim, &client)?;
    let mut parts = Vec::new();
    let mut next =
        Some(format!("{}/api/machines/SoftwareVulnerabilitiesByMachine?pageSize={page_size}", sim.base_url()));
    let mut fetched = 0;
    while let Some(url) = next.take() {
        if fetched >= rows {
            break;
        }
        let bytes = client.get(url).header("authorization", &bearer).send()?.bytes()?.to_vec();
        let (mut page, link) = plugin_defender::fetch::PageParts::split(bytes, "vulnerabilities", parts.len() as u32)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        parts.extend(std::iter::from_fn(|| page.next_part()));
        next = link;
        fetched += page_size;
    }
    // Best of the rounds, the builds taking turns (each round starts with the next
    // one): the figures are the cost of the code, not of whatever else the machine
    // did at that moment; the round-by-round ratio of the two wasm builds scatters
    // less still.
    let mut best = vec![Duration::MAX; 1 + sessions.len()];
    let mut paired = Vec::new();
    let mut native_rows = 0;
    for round in 0..rounds.max(1) {
        let mut took = vec![Duration::ZERO; best.len()];
        for turn in 0..took.len() {
            let slot = (round + turn) % took.len();
            let started = Instant::now();
            if slot == 0 {
                native_rows = 0;
                for body in &parts {
                    let mapped =
                        plugin_defender::mapping::map_vulnerabilities_page(body).map_err(|e| anyhow::anyhow!(e.0))?;
                    native_rows += mapped.rows;
                }
            } else {
                for (i, body) in parts.iter().enumerate() {
                    let kind = "vulnerabilities".into();
                    sessions[slot - 1].map(&connector_host::types::Page {
                        kind,
                        sequence: i as u32,
                        body: body.clone(),
                    })?;
                }
            }
            took[slot] = started.elapsed();
            best[slot] = best[slot].min(took[slot]);
        }
        if let [_, this, baseline] = took[..] {
            paired.push(this.as_secs_f64() / baseline.as_secs_f64());
        }
    }
    let rate = |took: Duration| native_rows as f64 / took.as_secs_f64();
    println!();
    println!(
        "Rows mapped for the comparison     {native_rows:>10}   ({} parts, best of {} rounds)",
        parts.len(),
        rounds.max(1)
    );
    println!("Mapping natively                   {:>10.3} s   {:>12.0} rows/s", best[0].as_secs_f64(), rate(best[0]));
    println!("Mapping in wasm                    {:>10.3} s   {:>12.0} rows/s", best[1].as_secs_f64(), rate(best[1]));
    println!(
        "Ratio wasm / native                {:>10.2}   (wasm includes handing records to the host)",
        best[1].as_secs_f64() / best[0].as_secs_f64()
    );
    if let Some(&was) = best.get(2) {
        println!("Mapping in wasm, baseline plugin   {:>10.3} s   {:>12.0} rows/s", was.as_secs_f64(), rate(was));
        println!(
            "Ratio this / baseline              {:>10.3}   round by round: {}",
            best[1].as_secs_f64() / was.as_secs_f64(),
            spread(&mut paired)
        );
    }
    Ok(())
}

/// Cold (compiling) and warm (cached) start to a ready instance with its info read.
fn start_times(plugin: &std::path::Path, dir: &std::path::Path) -> Result<()> {
    let times = connector_bench::start_times(plugin, &dir.join("cache"))?;
    println!();
    println!(
        "Cold start to a ready instance     {:>10.1} ms (compiled, then from the cache: {})",
        times.cold.as_secs_f64() * 1000.0,
        times.as_meant
    );
    println!("Warm start to a ready instance     {:>10.1} ms", times.warm.as_secs_f64() * 1000.0);
    println!("Ratio cold / warm                  {:>10.1}", times.cold.as_secs_f64() / times.warm.as_secs_f64());
    Ok(())
}

/// CPU time (user and system, all threads) a running process has used so far.
/// Fields 14 and 15 of /proc/PID/stat, in clock ticks of 1/100 s on Linux.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields are counted after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// `VmHWM` (peak resident set) of a running process, in bytes.
fn high_water_mark(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
