//! `connector-host demo`: the Defender plugin against a simulated tenant on loopback.

use super::progress::Progress;
use anyhow::{bail, Context, Result};
use clap::Args;
use connector_host::config::ConnectorConfig;
use connector_host::engine::{PluginHost, SessionOptions};
use connector_host::run::{self, RunOptions};
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use std::path::PathBuf;

/// Where `cargo build --release -p plugin-defender --target wasm32-wasip2` puts the plugin.
const PLUGIN_RELATIVE: &str = "wasm32-wasip2/release/plugin_defender.wasm";

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Directory for the KDI files.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// The Defender plugin; found in the build's target directory by default.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Devices in the simulated tenant.
    #[arg(long, default_value_t = 2_000)]
    devices: usize,
    /// Vulnerability rows in the simulated tenant.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Seed of the generated tenant.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

/// The plugin next to this executable's target directory, or under ./target.
fn find_plugin() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/release/connector-host -> target/wasm32-wasip2/release/...
        if let Some(target) = exe.parent().and_then(|p| p.parent()) {
            candidates.push(target.join(PLUGIN_RELATIVE));
        }
    }
    candidates.push(PathBuf::from("target").join(PLUGIN_RELATIVE));
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "the Defender plugin is not built (looked for {}); build it with `cargo build --release -p plugin-defender --target wasm32-wasip2` or pass --plugin",
            candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let plugin_path = match args.plugin {
        Some(p) => p,
        None => find_plugin()?,
    };
    let spec = TenantSpec { seed: args.seed, devices: args.devices, rows: args.rows };
    eprintln!(
        "Starting a simulated Defender tenant ({} devices, {} vulnerability rows) on loopback...",
        spec.devices, spec.rows
    );
    let sim = DefenderSim::start(spec, SimOptions::default()).context("cannot start the simulated tenant")?;
    let host = PluginHost::new()?;
    let plugin = host.load(&plugin_path)?;
    let t = sim.tenant();
    let config = ConnectorConfig::from_pairs([
        ("name", "Demo tenant"),
        ("client_id", t.client_id.as_str()),
        ("client_secret", t.client_secret.as_str()),
        ("tenant_id", t.tenant_id.as_str()),
        ("host", sim.base_url()),
        ("login_host", sim.base_url()),
    ]);
    eprintln!("Running {} {} against {} ...", plugin.info.id, plugin.info.version, sim.base_url());
    let progress = Progress::new();
    let options = SessionOptions { allow_insecure_loopback: true, ..Default::default() };
    let run_options = RunOptions { out_dir: args.out.clone(), events: Some(progress.events()), ..Default::default() };
    let result = run::run(&host, &plugin, &config, options, &run_options);
    progress.finish();
    let summary = result.context("demo run failed")?;
    print!("{summary}");
    println!("KDI files are in {}", args.out.display());
    Ok(())
}
