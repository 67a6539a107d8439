//! The command line, built on the library's API.

#![deny(dead_code)]

#[cfg(feature = "demo")]
mod demo;
mod logging;
mod progress;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use connector_host::checkpoint::CheckpointFile;
use connector_host::config::ConnectorConfig;
use connector_host::cvm::DeliveryOptions;
use connector_host::engine::{PluginHost, SessionOptions};
use connector_host::events::Event;
use connector_host::platform::{PlatformConfig, PlatformOptions};
use connector_host::run::{self, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "connector-host",
    version,
    about = "Runs sandboxed WebAssembly connector plugins and writes KDI files for Cisco Vulnerability Management"
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// How log lines are written: text, or one JSON object a line with the instance,
    /// plugin and stage as fields (for a platform's log pipeline).
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a plugin's identity and configuration fields.
    Info {
        #[arg(long)]
        plugin: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check that a configuration works (credentials, permissions, hosts).
    Verify {
        #[command(flatten)]
        common: Common,
    },
    /// Fetch everything, write KDI files, and with --upload deliver them to CVM.
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run every connector instance of a platform file concurrently, each in its own
    /// sandbox; print one summary per instance and a total (exit 1 if any failed).
    RunAll {
        /// The platform file (TOML with [[instance]] tables; see the README).
        #[arg(long)]
        config: PathBuf,
        /// Allow plain http:// to loopback addresses (simulators, local tests).
        #[arg(long)]
        allow_insecure_loopback: bool,
        /// Where the last upload of each CVM connector is remembered (instances with upload = true).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Run the platform service: the REST API, schedules, and a worker (see the README).
    Serve {
        /// Where the API listens (port 0: one the system chooses; the line printed at start says which).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        service: ServiceArgs,
        /// Runs the in-process worker executes at once; 0: no worker (run `connector-host worker` elsewhere).
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Run only a worker: it takes due runs from the database (PostgreSQL) until SIGTERM.
    Worker {
        #[command(flatten)]
        service: ServiceArgs,
        /// Runs this worker executes at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
    /// The service's run files: `files migrate` moves those kept in the database (by
    /// versions before the file store) into the file store (--files); resumable.
    Files {
        #[command(subcommand)]
        command: FilesCommand,
    },
    /// Run the Defender plugin against a simulated tenant on loopback (no credentials needed).
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

#[derive(Subcommand)]
enum FilesCommand {
    /// Move the run files kept in the database into the file store, one at a time;
    /// run it again after an interruption and it goes on where it stopped.
    Migrate {
        #[command(flatten)]
        service: ServiceArgs,
    },
}

#[derive(Args)]
// A build without the service parses its commands (to say what is missing) but never reads them.
#[cfg_attr(not(feature = "service"), allow(dead_code))]
struct ServiceArgs {
    /// The database: postgres://USER:PASSWORD@HOST/DB, or sqlite://PATH
    /// [default: SQLite in the state directory].
    #[arg(long, env = "CONNECTOR_HOST_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// The plugins directory [default: <state-dir>/plugins if it exists, else the
    /// plugins this repository builds].
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Where the SQLite database, the secret key file and run scratch space live
    /// [default: $XDG_STATE_HOME/connector-host or ~/.local/state/connector-host].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Allow plain http:// to loopback addresses (simulators, local tests).
    #[arg(long)]
    allow_insecure_loopback: bool,
    /// Seconds a worker that stopped answering keeps its runs before another worker takes them.
    #[arg(long, default_value_t = 60)]
    lease_seconds: u64,
    /// Days a run's KDI files are kept.
    #[arg(long, default_value_t = 14)]
    retention_days: u64,
    /// Where run files are kept: a directory, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or
    /// az://CONTAINER/PREFIX; credentials and region from the store's usual environment
    /// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, ...)
    /// [default: <state-dir>/files].
    #[arg(long, env = "CONNECTOR_HOST_FILES")]
    files: Option<String>,
    /// An S3-compatible server for s3:// (MinIO, Ceph, ...), e.g. http://minio:9000.
    #[arg(long, env = "CONNECTOR_HOST_FILES_ENDPOINT")]
    files_endpoint: Option<String>,
}

#[cfg(feature = "service")]
impl ServiceArgs {
    fn options(self, concurrency: usize) -> connector_service::ServiceOptions {
        connector_service::ServiceOptions {
            database: self.database,
            plugins: self.plugins,
            state_dir: self.state_dir.unwrap_or_else(connector_host::cvm::baseline::default_state_dir),
            allow_insecure_loopback: self.allow_insecure_loopback,
            concurrency,
            lease: std::time::Duration::from_secs(self.lease_seconds.max(1)),
            retention: std::time::Duration::from_secs(self.retention_days * 86_400),
            files: self.files,
            files_endpoint: self.files_endpoint,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Directory for the KDI files.
    #[arg(long)]
    out: PathBuf,
    /// Assets per KDI file.
    #[arg(long, default_value_t = connector_host::run::DEFAULT_ASSETS_PER_FILE)]
    assets_per_file: usize,
    /// Largest KDI file in bytes (an asset is never split, so one asset may exceed it).
    #[arg(long, default_value_t = connector_host::run::DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: usize,
    /// Instances that map pages at once, for a plugin whose pages map independently
    /// (default: one per core, at most 4). A plugin that does not declare that maps
    /// on one instance, in order.
    #[arg(long)]
    mapping_instances: Option<usize>,
    /// Print the run summary as JSON (for scripts and benchmarks) instead of text.
    #[arg(long)]
    json: bool,
    /// After a complete fetch, upload the files to CVM ([cvm] table) and run the connector.
    #[arg(long)]
    upload: bool,
    /// With --upload: show what would be uploaded and how it compares with the last upload; send nothing.
    #[arg(long, requires = "upload")]
    dry_run: bool,
    /// With --upload: upload even if the run has fewer than half the assets or open
    /// vulnerabilities of the last upload (CVM will close the rest).
    #[arg(long, requires = "upload")]
    allow_mass_close: bool,
    /// Where the last upload of each CVM connector and the state of each instance
    /// (for incremental runs) are kept
    /// [default: $XDG_STATE_HOME/connector-host or ~/.local/state/connector-host].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Run a full baseline even if the plugin could run on changes since the last
    /// delivered run (its state is kept and replaced).
    #[arg(long)]
    full: bool,
    /// Days between baselines: an incremental run becomes full once the last
    /// delivered full run is this old.
    #[arg(long, default_value_t = 7)]
    baseline_days: u32,
    /// The name this instance's state is kept under [default: the config file's name].
    #[arg(long)]
    instance: Option<String>,
}

#[derive(Args)]
struct Common {
    /// The plugin component (.wasm).
    #[arg(long)]
    plugin: PathBuf,
    /// The configuration file (TOML with a [connector] table).
    #[arg(long)]
    config: PathBuf,
    /// Allow plain http:// to loopback addresses (simulators, local tests).
    #[arg(long)]
    allow_insecure_loopback: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A service logs what it does by default; a one-off command only warnings.
    let service = matches!(cli.command, Command::Serve { .. } | Command::Worker { .. } | Command::Files { .. });
    logging::init(cli.verbose, cli.log_format, service);
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on; the chain reads "what: why: detail".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<()> {
    match command {
        Command::Info { plugin, json } => info(&plugin, json),
        Command::Verify { common } => verify(&common),
        Command::Run { common, run } => run_command(&common, run),
        Command::RunAll { config, allow_insecure_loopback, state_dir } => {
            run_all(&config, allow_insecure_loopback, state_dir)
        }
        #[cfg(feature = "service")]
        Command::Serve { listen, service, workers } => {
            service_runtime()?.block_on(connector_service::serve(service.options(workers), listen))
        }
        #[cfg(feature = "service")]
        Command::Worker { service, concurrency } => {
            service_runtime()?.block_on(connector_service::worker(service.options(concurrency)))
        }
        #[cfg(feature = "service")]
        Command::Files { command: FilesCommand::Migrate { service } } => {
            service_runtime()?.block_on(connector_service::migrate_files(service.options(0)))
        }
        #[cfg(not(feature = "service"))]
        Command::Serve { .. } | Command::Worker { .. } | Command::Files { .. } => Err(anyhow::anyhow!(
            "this connector-host was built without the platform service (the demo's build leaves it out); \
             build the whole CLI with `cargo build --release -p connector-host-cli` and run \
             target/release/connector-host"
        )),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args),
    }
}

#[cfg(feature = "service")]
fn service_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn info(path: &std::path::Path, json: bool) -> Result<()> {
    let host = PluginHost::new()?;
    let plugin = host.load(path)?;
    let i = &plugin.info;
    let kind = connector_host::types::field_kind_name;
    if json {
        let fields = connector_host::types::fields_json(i);
        let egress = connector_host::types::egress_json(i);
        let out = serde_json::json!({"id": i.id, "name": i.name, "version": i.version, "description": i.description,
            "scanner_type": i.scanner_type, "contract": plugin.contract, "fields": fields, "egress": egress,
            "independent_pages": i.independent_pages, "section": i.section, "incremental": i.incremental,
            "counters": connector_host::types::counters_json(i)});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{} {} ({})", i.name, i.version, i.id);
    println!("{}", i.description);
    println!("Scanner type: {}", i.scanner_type);
    println!("Section: {}", i.section);
    println!(
        "Runs: {}",
        if i.incremental { "full or incremental (changes since the last delivered run)" } else { "full" }
    );
    println!(
        "Contract: vulnbridge:connector@{} (this host runs {})",
        plugin.contract,
        connector_host::types::supported_contracts()
    );
    println!("Fields:");
    for f in &i.fields {
        let required = if f.required { "required" } else { "optional" };
        let default = f.default_value.as_deref().map(|d| format!(", default `{d}`")).unwrap_or_default();
        println!("  {:<20} {} ({}, {required}{default})", f.key, f.label, kind(&f.kind));
        println!("  {:<20} {}", "", f.help);
        if !f.choices.is_empty() {
            let values: Vec<&str> = f.choices.iter().map(|c| c.value.as_str()).collect();
            println!("  {:<20} one of: {}", "", values.join(", "));
        }
    }
    println!("Egress (nothing else is reachable; `[network]` may narrow or extend it):");
    for line in connector_host::types::describe_egress(i) {
        println!("  {line}");
    }
    Ok(())
}

fn verify(common: &Common) -> Result<()> {
    let host = PluginHost::new()?;
    let plugin = host.load(&common.plugin)?;
    let config = ConnectorConfig::load(&common.config)?;
    let options = SessionOptions { allow_insecure_loopback: common.allow_insecure_loopback, ..Default::default() };
    let verified = connector_host::verify::verify(&host, &plugin, &config, options).context("verify failed")?;
    println!("Configuration works ({} {}):", plugin.info.id, plugin.info.version);
    for check in verified.checks {
        println!("  ok  {:<24} {}", check.name, check.detail);
    }
    println!("This instance may connect to (the plugin's egress, as configured and narrowed):");
    for origin in verified.egress {
        println!("  {origin}");
    }
    Ok(())
}

fn run_command(common: &Common, args: RunArgs) -> Result<()> {
    let host = PluginHost::new()?;
    let plugin = host.load(&common.plugin)?;
    let config = ConnectorConfig::load(&common.config)?;
    let delivery = args
        .upload
        .then(|| {
            DeliveryOptions::from_config(
                &config,
                common.allow_insecure_loopback,
                args.state_dir.clone(),
                args.dry_run,
                args.allow_mass_close,
            )
        })
        .transpose()?;
    // Where this instance's run starts from: the state of its last delivered run.
    let state_dir = args.state_dir.clone().unwrap_or_else(connector_host::cvm::baseline::default_state_dir);
    let instance = match &args.instance {
        Some(name) => name.clone(),
        None => common.config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let checkpoints = CheckpointFile::new(&state_dir, &format!("{}--{instance}", plugin.info.id));
    let checkpoint = checkpoints.load()?;
    let started = chrono::Utc::now();
    let every = chrono::Duration::days(i64::from(args.baseline_days.max(1)));
    let next = checkpoint.next_run(plugin.info.incremental, args.full, every, started);
    tracing::info!("{} run: {}", next.mode.as_str(), next.why);
    let progress = progress::Progress::new();
    let options = SessionOptions { allow_insecure_loopback: common.allow_insecure_loopback, ..Default::default() };
    let run_options = RunOptions {
        out_dir: args.out,
        assets_per_file: args.assets_per_file,
        max_file_bytes: args.max_file_bytes,
        mapping_instances: args.mapping_instances,
        events: Some(progress.events()),
        resume: checkpoint.resume(next.mode),
        keep_files: None,
    };
    let result = match &delivery {
        Some(d) => run::run_and_deliver(&host, &plugin, &config, options, &run_options, d),
        None => run::run(&host, &plugin, &config, options, &run_options),
    };
    progress.finish();
    // A failed fetch writes and uploads nothing; a failed delivery says what it did.
    let summary =
        result.context(if delivery.is_some() { "run --upload failed" } else { "run failed; no files were written" })?;
    // Delivered (files written, or uploaded and processed, or a dry run's files):
    // only now does the plugin's new state become the one the next run starts from.
    if !args.dry_run {
        checkpoints
            .save(&checkpoint.after(&summary, started))
            .context("the run was delivered, but its state was not kept; the next run reads from the previous state")?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn run_all(config: &std::path::Path, allow_insecure_loopback: bool, state_dir: Option<PathBuf>) -> Result<()> {
    let platform = PlatformConfig::load(config)?;
    let host = std::sync::Arc::new(PluginHost::new()?);
    let names: Vec<String> = platform.instances.iter().map(|i| i.name.clone()).collect();
    let progress = progress::Instances::new(&names);
    let shown = progress.clone();
    let options = PlatformOptions {
        allow_insecure_loopback,
        state_dir,
        events: Some(std::sync::Arc::new(move |instance: &str, event: &Event| shown.show(instance, event))),
    };
    let report = connector_host::platform::run_all(&host, &platform, &options);
    progress.finish();
    print!("{report}");
    match report.failed() {
        0 => Ok(()),
        n => anyhow::bail!("{n} of {} instances failed; the others completed", report.outcomes.len()),
    }
}
