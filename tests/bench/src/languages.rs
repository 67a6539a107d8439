//! `connector-bench-languages`: what a plugin's language costs, measured in one run
//! on the three Dependabot plugins (Rust, and the Python and JavaScript examples built
//! from source as their guides say): component size, cold start (compiling) and warm
//! start (from the compiled cache) to a ready instance, and alert rows mapped per
//! second on the same pages, each against the Rust plugin.
//!
//! Needs what the tests need: `cargo build-plugins`, componentize-py, and `npm ci` in
//! tests/plugins/javascript-dependabot.

use anyhow::{Context, Result};
use clap::Parser;
use connector_host::engine::PluginHost;
use connector_simulators::github::{GithubSim, OrgSpec};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Compares plugins written in Rust, Python and JavaScript: size, start, mapping speed")]
struct Args {
    /// Alerts of the simulated organization (pages of 100).
    #[arg(long, default_value_t = 20_000)]
    alerts: u64,
    #[arg(long, default_value_t = 2_000)]
    repositories: u64,
    /// Rounds of mapping every page; the best counts.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

struct Figures {
    language: &'static str,
    bytes: u64,
    cold: Duration,
    warm: Duration,
    map: Duration,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(2).context("target directory")?.to_path_buf();
    let rust = target.join("wasm32-wasip2/release/plugin_dependabot.wasm");
    anyhow::ensure!(rust.is_file(), "{} is missing: cargo build-plugins", rust.display());
    println!("Building the Python and JavaScript examples from source...");
    let python = connector_e2e::languages::componentize_python("python-dependabot");
    let javascript = connector_e2e::languages::componentize_javascript("javascript-dependabot");

    let sim = GithubSim::start(OrgSpec { seed: 3, repositories: args.repositories, alerts: args.alerts })?;
    let pages = alert_pages(&sim)?;
    let rows: usize = pages.iter().map(|p| count_entries(p)).sum();
    println!("Mapping {} pages of open alerts ({rows} rows), best of {} rounds", pages.len(), args.rounds);

    let dir = connector_e2e::kdi::temp_dir("bench-languages");
    let mut figures = Vec::new();
    for (language, plugin) in [("Rust", &rust), ("Python", &python), ("JavaScript", &javascript)] {
        figures.push(measure(language, plugin, &sim, &pages, args.rounds, &dir.join(language))?);
    }
    let rust = &figures[0];
    println!();
    println!(
        "{:<11} {:>10} {:>12} {:>11} {:>14} {:>9} {:>8} {:>8}",
        "plugin", "size", "cold start", "warm start", "rows/s mapped", "size ×", "warm ×", "map ×"
    );
    for f in &figures {
        println!(
            "{:<11} {:>7.1} MB {:>9.0} ms {:>8.1} ms {:>14.0} {:>9.1} {:>8.1} {:>8.1}",
            f.language,
            f.bytes as f64 / 1e6,
            f.cold.as_secs_f64() * 1000.0,
            f.warm.as_secs_f64() * 1000.0,
            rows as f64 / f.map.as_secs_f64(),
            f.bytes as f64 / rust.bytes as f64,
            f.warm.as_secs_f64() / rust.warm.as_secs_f64(),
            f.map.as_secs_f64() / rust.map.as_secs_f64(),
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn measure(
    language: &'static str,
    plugin: &Path,
    sim: &GithubSim,
    pages: &[Vec<u8>],
    rounds: usize,
    dir: &Path,
) -> Result<Figures> {
    let cache = dir.join("cache");
    let starts = connector_bench::start_times(plugin, &cache)?;
    anyhow::ensure!(starts.as_meant, "{language}: the cold start did not compile or the warm one missed the cache");
    let host = PluginHost::new()?.with_cache_dir(Some(cache));
    let loaded = host.load(plugin)?;
    let mut session = connector_bench::mapping_session(&host, &loaded, &sim.connection_toml())?;
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        for (i, body) in pages.iter().enumerate() {
            let page = connector_host::types::Page { kind: "alerts".into(), sequence: i as u32, body: body.clone() };
            session.map(&page).with_context(|| format!("{language} plugin, page {i}"))?;
        }
        best = best.min(started.elapsed());
    }
    Ok(Figures { language, bytes: std::fs::metadata(plugin)?.len(), cold: starts.cold, warm: starts.warm, map: best })
}

/// Every page of the organization's open alerts, 100 a page, as GitHub sends them.
fn alert_pages(sim: &GithubSim) -> Result<Vec<Vec<u8>>> {
    let client = reqwest::blocking::Client::new();
    let org = sim.org();
    let mut next = Some(format!("{}/orgs/{}/dependabot/alerts?state=open&per_page=100", sim.base_url(), org.name));
    let mut pages = Vec::new();
    while let Some(url) = next.take() {
        let request = client.get(&url).bearer_auth(&org.token).header("user-agent", "connector-bench");
        let response = request.send()?.error_for_status()?;
        let link = response.headers().get("link").and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned();
        next = link
            .split(',')
            .find(|part| part.contains("rel=\"next\""))
            .and_then(|part| part.split(';').next())
            .map(|u| u.trim().trim_start_matches('<').trim_end_matches('>').to_owned());
        pages.push(response.bytes()?.to_vec());
    }
    Ok(pages)
}

fn count_entries(page: &[u8]) -> usize {
    serde_json::from_slice::<Vec<serde_json::Value>>(page).map(|v| v.len()).unwrap_or(0)
}
