//! Many connector instances in one platform run (`connector-host run-all`).
//!
//! A platform file lists instances, each a plugin with its own settings, output
//! directory and schedule hint. [`run_all`] runs them concurrently, each on its own
//! thread with its own sandboxed session, so a failing instance reports its error
//! and a hanging one is stopped at its time limit, while the others carry on. Every
//! instance's events reach one sink, tagged with the instance's name.
//!
//! ```toml
//! [defaults]
//! out = "out"                  # instance `x` writes to out/x unless it sets `out`
//! time_limit_seconds = 3600    # per instance, wall clock
//!
//! [[instance]]
//! name = "defender-prod"
//! plugin = "plugins/plugin_defender.wasm"
//! config = "defender.toml"     # a connector config file ([connector], [cvm], ...)
//! schedule = "every 4 hours"   # a hint for the scheduler; reported, not enforced
//! upload = true                # deliver to CVM (the config needs a [cvm] table)
//! # dry_run = true             # compare with the last upload, send nothing
//! # allow_mass_close = true    # deliver even if most assets or vulnerabilities vanished
//!
//! [[instance]]
//! name = "github"
//! plugin = "plugins/plugin_dependabot.wasm"
//! [instance.connector]         # or the connector config inline
//! organization = "octo-org"
//! token = { env = "GITHUB_TOKEN" }
//! ```
//!
//! Relative paths are relative to the platform file.

use crate::checkpoint::{CheckpointFile, DEFAULT_BASELINE_EVERY};
use crate::config::ConnectorConfig;
use crate::cvm::DeliveryOptions;
use crate::engine::{PluginHost, SessionOptions};
use crate::events::{Event, EventSink};
use crate::run::{self, RunOptions};
use crate::summary::RunSummary;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long past its time limit an instance may take to stop before it is
/// abandoned (wasm stops at the limit; a plugin asleep in a host call wakes later).
pub(crate) const ABANDON_GRACE: Duration = Duration::from_secs(5);
/// An instance's time limit when the platform file sets none.
pub(crate) const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(3600);

/// The platform file.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The instances, in the order of the file.
    pub instances: Vec<InstanceConfig>,
}

/// One connector instance.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// The instance's unique name (it names its output directory and CVM state).
    pub name: String,
    /// The plugin component.
    pub(crate) plugin: PathBuf,
    /// Its settings (`[connector]`, `[cvm]`, `[limits]`, `[network]`).
    pub(crate) connector: ConnectorConfig,
    /// Where its KDI files go.
    pub(crate) out: PathBuf,
    /// When it is meant to run, as the platform file says (reported, not enforced).
    pub(crate) schedule: Option<String>,
    /// How long it may run before it is stopped.
    pub(crate) time_limit: Duration,
    /// Deliver to CVM after a complete run (needs a `[cvm]` table).
    pub(crate) upload: bool,
    /// With `upload`: compare with the last upload and send nothing.
    pub(crate) dry_run: bool,
    /// With `upload`: deliver even when the run would send fewer than half of the
    /// last upload's assets or open vulnerabilities.
    pub(crate) allow_mass_close: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    out: Option<PathBuf>,
    time_limit_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlatform {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(rename = "instance", default)]
    instances: Vec<toml::Table>,
}

impl PlatformConfig {
    /// Reads a platform file; relative paths are relative to it.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read platform file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &|name| std::env::var(name).ok())
            .with_context(|| format!("platform file {}", path.display()))
    }

    /// Parses a platform file; relative paths are resolved against `base`.
    pub(crate) fn parse(text: &str, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let raw: RawPlatform =
            toml::from_str(text).map_err(|e| anyhow!("not a valid platform file: {}", e.message()))?;
        if raw.instances.is_empty() {
            bail!("no `[[instance]]` tables: list the connector instances to run");
        }
        let resolve = |p: &Path| if p.is_absolute() { p.to_owned() } else { base.join(p) };
        let out_root = resolve(raw.defaults.out.as_deref().unwrap_or(Path::new("out")));
        let default_limit = raw.defaults.time_limit_seconds.map(Duration::from_secs).unwrap_or(DEFAULT_TIME_LIMIT);
        let mut names = BTreeSet::new();
        let mut instances = Vec::new();
        for (i, table) in raw.instances.iter().enumerate() {
            let instance = parse_instance(table, &resolve, &out_root, default_limit, env).with_context(|| {
                format!("instance {} ({})", i + 1, table.get("name").and_then(|n| n.as_str()).unwrap_or("unnamed"))
            })?;
            if !names.insert(instance.name.clone()) {
                bail!("two instances are named `{}`; names must be unique (they name output and state)", instance.name);
            }
            instances.push(instance);
        }
        Ok(PlatformConfig { instances })
    }
}

/// An `[[instance]]` as written, read with serde.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InstanceTable {
    name: Option<String>,
    plugin: Option<String>,
    config: Option<String>,
    out: Option<String>,
    schedule: Option<String>,
    time_limit_seconds: Option<u64>,
    #[serde(default)]
    upload: bool,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    allow_mass_close: bool,
    // A connector configuration inline, instead of `config`.
    connector: Option<toml::Table>,
    cvm: Option<toml::Table>,
    limits: Option<toml::Table>,
    network: Option<toml::Table>,
}

fn parse_instance(
    table: &toml::Table,
    resolve: &dyn Fn(&Path) -> PathBuf,
    out_root: &Path,
    default_limit: Duration,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<InstanceConfig> {
    let (instance, problems) = crate::config::table::read::<InstanceTable>(table, |key, keys| {
        format!("unknown key `{key}` (expected one of {})", keys.join(", "))
    });
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    let name = instance.name.ok_or_else(|| anyhow!("`name` is required"))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("name `{name}` must be letters, digits, `-`, `_` or `.` (it names a directory)");
    }
    let plugin = resolve(Path::new(&instance.plugin.ok_or_else(|| anyhow!("`plugin` (a .wasm file) is required"))?));
    let inline: toml::Table = [
        ("connector", instance.connector),
        ("cvm", instance.cvm),
        ("limits", instance.limits),
        ("network", instance.network),
    ]
    .into_iter()
    .filter_map(|(key, table)| Some((key.to_owned(), toml::Value::Table(table?))))
    .collect();
    let connector = match (instance.config, inline.is_empty()) {
        (Some(file), true) => ConnectorConfig::load(&resolve(Path::new(&file)))?,
        (None, false) => ConnectorConfig::from_table(&inline, env)?,
        (Some(_), false) => {
            bail!("give either `config` (a file) or inline tables ([instance.connector] ...), not both")
        }
        (None, true) => bail!("no settings: give `config` (a connector config file) or an [instance.connector] table"),
    };
    let out = instance.out.map(|o| resolve(Path::new(&o))).unwrap_or_else(|| out_root.join(&name));
    let time_limit = match instance.time_limit_seconds {
        None => default_limit,
        Some(0) => bail!("`time_limit_seconds` must be a positive whole number, not 0"),
        Some(n) => Duration::from_secs(n),
    };
    let (upload, dry_run, allow_mass_close) = (instance.upload, instance.dry_run, instance.allow_mass_close);
    if (dry_run || allow_mass_close) && !upload {
        bail!("`dry_run` and `allow_mass_close` apply to an upload: set `upload = true` too");
    }
    Ok(InstanceConfig {
        name,
        plugin,
        connector,
        out,
        schedule: instance.schedule,
        time_limit,
        upload,
        dry_run,
        allow_mass_close,
    })
}

/// Receives every instance's events, with the instance's name.
pub(crate) type PlatformEventSink = Arc<dyn Fn(&str, &Event) + Send + Sync>;

/// How a platform run behaves.
#[derive(Clone, Default)]
pub struct PlatformOptions {
    /// Allow `http://` to loopback addresses (simulators, local tests).
    pub allow_insecure_loopback: bool,
    /// Where CVM upload state and each instance's checkpoint are kept; `None` uses
    /// the default.
    pub state_dir: Option<PathBuf>,
    /// Receives every instance's events, with the instance's name.
    pub events: Option<PlatformEventSink>,
}

/// How one instance ended.
#[derive(Debug)]
pub struct InstanceOutcome {
    /// The instance's name.
    pub(crate) name: String,
    /// Its schedule hint.
    pub(crate) schedule: Option<String>,
    /// Its summary, or why it failed.
    pub(crate) result: Result<RunSummary, String>,
    /// How long it took.
    pub(crate) duration: Duration,
}

/// Every instance's outcome, in the order of the platform file.
#[derive(Debug)]
pub struct PlatformReport {
    /// Every instance's outcome, in the order of the file.
    pub outcomes: Vec<InstanceOutcome>,
    /// How long the whole platform run took.
    pub(crate) duration: Duration,
}

impl PlatformReport {
    /// How many instances failed.
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count()
    }
}

/// Runs every instance concurrently and waits for each to finish, fail, or pass
/// its time limit.
pub fn run_all(host: &Arc<PluginHost>, platform: &PlatformConfig, options: &PlatformOptions) -> PlatformReport {
    let started = Instant::now();
    let (sender, receiver) = mpsc::channel::<(usize, Result<RunSummary, String>, Duration)>();
    for (index, instance) in platform.instances.iter().enumerate() {
        let (host, instance, options, tx) = (host.clone(), instance.clone(), options.clone(), sender.clone());
        let spawned = std::thread::Builder::new().name(format!("instance-{}", instance.name)).spawn(move || {
            let _span = tracing::info_span!("instance", instance = %instance.name).entered();
            let begun = Instant::now();
            let result = run_instance(&host, &instance, &options).map_err(|e| format!("{e:#}"));
            tx.send((index, result, begun.elapsed())).ok();
        });
        if let Err(e) = spawned {
            sender.send((index, Err(format!("cannot start a thread for the instance: {e}")), Duration::ZERO)).ok();
        }
    }
    drop(sender);

    // Wait for every instance, but for each only until its time limit (plus a grace
    // for a plugin asleep in a host call): a hung instance is abandoned, not awaited.
    let deadlines: Vec<Instant> = platform.instances.iter().map(|i| started + i.time_limit + ABANDON_GRACE).collect();
    let mut results: Vec<Option<(Result<RunSummary, String>, Duration)>> =
        platform.instances.iter().map(|_| None).collect();
    loop {
        let now = Instant::now();
        let next_deadline =
            results.iter().zip(&deadlines).filter(|(r, d)| r.is_none() && **d > now).map(|(_, d)| *d).min();
        let Some(next_deadline) = next_deadline else { break };
        match receiver.recv_timeout(next_deadline - now) {
            Ok((index, result, took)) => results[index] = Some((result, took)),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let outcomes = platform
        .instances
        .iter()
        .zip(results)
        .map(|(instance, result)| {
            let (result, duration) = result.unwrap_or_else(|| {
                let message = format!(
                    "instance `{}` did not stop within {} s of its time limit of {} s; abandoned",
                    instance.name,
                    ABANDON_GRACE.as_secs(),
                    instance.time_limit.as_secs()
                );
                if let Some(sink) = &options.events {
                    sink(&instance.name, &Event::Failed(message.clone()));
                }
                (Err(message), started.elapsed())
            });
            InstanceOutcome { name: instance.name.clone(), schedule: instance.schedule.clone(), result, duration }
        })
        .collect();
    PlatformReport { outcomes, duration: started.elapsed() }
}

fn run_instance(host: &PluginHost, instance: &InstanceConfig, options: &PlatformOptions) -> Result<RunSummary> {
    let events: Option<EventSink> = options.events.clone().map(|sink| {
        let name = instance.name.clone();
        Arc::new(move |event: &Event| sink(&name, event)) as EventSink
    });
    let fail_early = |e: anyhow::Error| {
        if let Some(sink) = &events {
            sink(&Event::Failed(format!("{e:#}")));
        }
        e
    };
    let plugin = host.load(&instance.plugin).map_err(fail_early)?;
    let session = SessionOptions {
        allow_insecure_loopback: options.allow_insecure_loopback,
        time_limit: Some(instance.time_limit),
        ..Default::default()
    };
    // Each instance starts from the state of its own last delivered run.
    let state_dir = options.state_dir.clone().unwrap_or_else(crate::cvm::baseline::default_state_dir);
    let checkpoints = CheckpointFile::new(&state_dir, &format!("{}--{}", plugin.info.id, instance.name));
    let checkpoint = checkpoints.load().map_err(fail_early)?;
    let started = chrono::Utc::now();
    let next = checkpoint.next_run(plugin.info.incremental, false, DEFAULT_BASELINE_EVERY, started);
    let run_options = RunOptions {
        out_dir: instance.out.clone(),
        events: events.clone(),
        resume: checkpoint.resume(next.mode),
        ..RunOptions::default()
    };
    let summary = if instance.upload {
        let delivery = DeliveryOptions::from_config(
            &instance.connector,
            options.allow_insecure_loopback,
            options.state_dir.clone(),
            instance.dry_run,
            instance.allow_mass_close,
        )
        .map_err(fail_early)?;
        run::run_and_deliver(host, &plugin, &instance.connector, session, &run_options, &delivery)?
    } else {
        run::run(host, &plugin, &instance.connector, session, &run_options)?
    };
    // Delivered: the plugin's new state is what the next run starts from.
    if !(instance.upload && instance.dry_run) {
        checkpoints.save(&checkpoint.after(&summary, started))?;
    }
    Ok(summary)
}

impl fmt::Display for PlatformReport {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for o in &self.outcomes {
            let schedule = o.schedule.as_deref().map(|s| format!(", schedule: {s}")).unwrap_or_default();
            match &o.result {
                Ok(summary) => {
                    writeln!(f, "== {}: ok in {:.1} s{schedule}", o.name, o.duration.as_secs_f64())?;
                    write!(f, "{summary}")?;
                }
                Err(e) => {
                    writeln!(f, "== {}: FAILED after {:.1} s{schedule}", o.name, o.duration.as_secs_f64())?;
                    writeln!(f, "  error: {e}")?;
                }
            }
        }
        let ok: Vec<&RunSummary> = self.outcomes.iter().filter_map(|o| o.result.as_ref().ok()).collect();
        writeln!(
            f,
            "== Total: {} of {} instances succeeded in {:.1} s",
            ok.len(),
            self.outcomes.len(),
            self.duration.as_secs_f64()
        )?;
        let sum = |field: fn(&RunSummary) -> u64| ok.iter().map(|s| field(s)).sum::<u64>();
        writeln!(f, "  {:<34} {}", "Assets written", sum(|s| s.assets_written as u64))?;
        writeln!(f, "  {:<34} {}", "Vulnerabilities written", sum(|s| s.vulnerabilities_written as u64))?;
        writeln!(f, "  {:<34} {}", "Files written", sum(|s| s.files_written.len() as u64))?;
        writeln!(f, "  {:<34} {}", "API calls made", sum(|s| s.api_calls))?;
        if self.failed() > 0 {
            let names: Vec<&str> =
                self.outcomes.iter().filter(|o| o.result.is_err()).map(|o| o.name.as_str()).collect();
            writeln!(f, "  {:<34} {}", "Failed instances", names.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PlatformConfig> {
        PlatformConfig::parse(text, Path::new("/etc/platform"), &|name| (name == "TOKEN").then(|| "t0ken".into()))
    }

    #[test]
    fn instances_take_defaults_and_inline_settings() {
        let p = parse(
            "[defaults]\nout = \"/data/out\"\ntime_limit_seconds = 60\n\n[[instance]]\nname = \"gh\"\nplugin = \"p.wasm\"\nschedule = \"daily\"\n[instance.connector]\norganization = \"o\"\ntoken = { env = \"TOKEN\" }\n\n[[instance]]\nname = \"two\"\nplugin = \"/abs/p.wasm\"\ntime_limit_seconds = 5\n[instance.connector]\nx = \"1\"\n",
        )
        .unwrap();
        let [gh, two] = &p.instances[..] else { panic!("two instances") };
        assert_eq!(gh.plugin, Path::new("/etc/platform/p.wasm"));
        assert_eq!(gh.out, Path::new("/data/out/gh"));
        assert_eq!(gh.time_limit, Duration::from_secs(60));
        assert_eq!(gh.connector.value("token"), Some("t0ken"));
        assert_eq!(gh.schedule.as_deref(), Some("daily"));
        assert_eq!((two.plugin.as_path(), two.time_limit), (Path::new("/abs/p.wasm"), Duration::from_secs(5)));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(err("").contains("no `[[instance]]`"));
        assert!(err("[[instance]]\nname = \"a\"\nplugin = \"p\"\n").contains("no settings"));
        assert!(err("[[instance]]\nname = \"a b\"\nplugin = \"p\"\n[instance.connector]\n").contains("must be letters"));
        assert!(err("[[instance]]\nname = \"a\"\nplugin = \"p\"\nplugins = 1\n").contains("unknown key `plugins`"));
        let twice = "[[instance]]\nname = \"a\"\nplugin = \"p\"\n[instance.connector]\n[[instance]]\nname = \"a\"\nplugin = \"p\"\n[instance.connector]\n";
        assert!(err(twice).contains("two instances are named `a`"));
        let dry_alone = "[[instance]]\nname = \"a\"\nplugin = \"p\"\ndry_run = true\n[instance.connector]\n";
        assert!(err(dry_alone).contains("set `upload = true` too"));
    }

    #[test]
    fn uploading_instances_take_the_cli_delivery_flags() {
        let text = "[[instance]]\nname = \"a\"\nplugin = \"p\"\nupload = true\ndry_run = true\nallow_mass_close = true\n[instance.connector]\nx = \"1\"\n[instance.cvm]\napi_key = \"k\"\nconnector_id = 7\n";
        let instance = &parse(text).unwrap().instances[0];
        assert!(instance.upload && instance.dry_run && instance.allow_mass_close);
        let delivery = DeliveryOptions::from_config(&instance.connector, false, None, instance.dry_run, true).unwrap();
        assert!(delivery.dry_run && delivery.allow_mass_close);
        assert_eq!(delivery.cvm.connector_id, 7);
    }
}
