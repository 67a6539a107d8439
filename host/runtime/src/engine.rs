//! Loading plugins: one wasmtime Engine and Linker for the host's lifetime, one
//! compiled Component per plugin, and a fresh Store for every session.

use crate::bindings::{line_for, types::PluginInfo, IntoAnyhow, Line, Pre, CONTRACT_EXPORT_PREFIX};
use crate::capability::http::HttpCapability;
use crate::capability::log::LogCapability;
use crate::capability::output::OutputCapability;
use crate::capability::records::{Discard, RecordSink};
use crate::config::ResolvedConfig;
use crate::egress::Egress;
use crate::limits::LimitExceeded;
use crate::plugin_state::PluginState;
use crate::policy::NetworkPolicy;
use crate::redact::Redactor;
use crate::secrets::Secrets;
pub use crate::session::Session;
pub use crate::session::{FailureKind, PluginFailure, UnapprovedOrigin};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

/// How often wasm checks whether its CPU budget is spent.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The host: shared by every plugin and session it runs.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<PluginState>,
    stop_ticker: Arc<AtomicBool>,
    /// Where compiled components are kept; `None` compiles every time.
    cache_dir: Option<PathBuf>,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl PluginHost {
    /// Starts the engine (one per process) and its epoch ticker.
    pub fn new() -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Epoch ticks let the host check a call's CPU time while wasm runs.
        config.epoch_interruption(true);
        // `CONNECTOR_HOST_PROFILE=perfmap` names compiled wasm functions for `perf`
        // (in /tmp/perf-<pid>.map), so a profile shows plugin code by name.
        if std::env::var("CONNECTOR_HOST_PROFILE").is_ok_and(|v| v == "perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).into_anyhow().context("cannot start the WebAssembly engine")?;
        let mut linker = Linker::new(&engine);
        // Rust's std on wasm32-wasip2 imports wasi:cli and wasi:io, so WASI is linked;
        // each Store's context grants nothing (see `PluginState::new`). wasi:http is
        // not linked: a plugin that imports it is refused at load.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Every contract line the host runs, each under its own versioned names.
        crate::bindings::instance::link(&mut linker)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticker_engine.increment_epoch();
            }
        })?;
        Ok(PluginHost { engine, linker, stop_ticker, cache_dir: crate::cache::default_dir() })
    }

    /// Keeps compiled components in `dir` (or nowhere, with `None`).
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Compiles a plugin, checks that it implements this host's contract version,
    /// and reads its info.
    pub fn load(&self, path: &Path) -> Result<Plugin> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read plugin {}", path.display()))?;
        if bytes.get(..4) != Some(b"\0asm") {
            bail!("{} is not a WebAssembly file", path.display());
        }
        // A component's layer field is 1 (a core module's is 0).
        if bytes.get(6..8) != Some(&[1, 0]) {
            bail!(
                "{} is a core WebAssembly module, not a component; build the plugin with `--target wasm32-wasip2`",
                path.display()
            );
        }
        let (component, cached) = crate::cache::load(&self.engine, self.cache_dir.as_deref(), &bytes)
            .into_anyhow()
            .with_context(|| format!("cannot compile plugin {}", path.display()))?;
        tracing::debug!(
            "plugin {} {}",
            path.display(),
            if cached { "loaded compiled from the cache" } else { "compiled" }
        );
        let (contract, line) = check_contract(&self.engine, &component, path)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .into_anyhow()
            .with_context(|| format!("plugin {} needs imports this host does not provide", path.display()))?;
        let fits = || format!("{} does not fit the connector world of contract {contract}", path.display());
        let pre = Pre::new(line, pre).into_anyhow().with_context(fits)?;
        // The hash of the very bytes compiled: what a platform pins an approval to.
        let sha256 = crate::cache::sha256_hex(&bytes);
        let mut plugin =
            Plugin { pre, path: path.to_owned(), info: placeholder_info(path), contract, from_cache: cached, sha256 };
        let mut session = plugin.open(self, &ResolvedConfig::default(), SessionOptions::default())?;
        plugin.info = session.info()?;
        drop(session);
        Ok(plugin)
    }
}

fn placeholder_info(path: &Path) -> PluginInfo {
    PluginInfo {
        id: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        name: String::new(),
        version: String::new(),
        description: String::new(),
        scanner_type: String::new(),
        fields: Vec::new(),
        egress: Vec::new(),
        independent_pages: false,
        section: crate::bindings::OTHER_SECTION.into(),
        counters: Vec::new(),
        incremental: false,
    }
}

/// Refuses a component that does not export a contract version this host runs,
/// naming both versions and what to do about it; otherwise, which binding runs it.
fn check_contract(engine: &Engine, component: &Component, path: &Path) -> Result<(String, Line)> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    if let Some(version) = exports.iter().find_map(|e| e.strip_prefix(CONTRACT_EXPORT_PREFIX)) {
        return line_for(version)
            .map(|line| (version.to_owned(), line))
            .map_err(|why| anyhow::anyhow!("cannot run plugin {}: {why}", path.display()));
    }
    bail!(
        "{} is not a connector plugin: it exports {} instead of {CONTRACT_EXPORT_PREFIX}{}",
        path.display(),
        if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") },
        crate::bindings::CONTRACT_VERSION
    )
}

/// What a plugin reports of its progress (`output.progress`), masked and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What is being counted (`devices`, `vulnerability rows`, ...).
    pub stage: String,
    /// How many so far.
    pub done: u64,
    /// How many in all, when the plugin knows.
    pub total: Option<u64>,
}

/// Receives a plugin's progress reports, on the plugin's thread: it must return
/// quickly.
pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Options of one session.
#[derive(Default, Clone)]
pub struct SessionOptions {
    /// Allow `http://` to loopback addresses (simulators, local tests).
    pub allow_insecure_loopback: bool,
    /// Where the plugin's progress reports go (a run fills it in from
    /// `RunOptions::events` when it is not set).
    pub progress: Option<ProgressSink>,
    /// Wall-clock time the whole session may take: wasm is stopped when it is spent,
    /// so a plugin that loops cannot hold a platform's worker forever.
    pub time_limit: Option<Duration>,
    /// The origins a contract 0.2 plugin may derive at `configure`, as its operator
    /// approved them (a platform pins them); `None` allows any, as the CLI does
    /// after showing them.
    pub approved_derived: Option<Vec<String>>,
}

/// A compiled plugin, ready to instantiate.
pub struct Plugin {
    pre: Pre,
    /// Where the plugin was loaded from.
    pub(crate) path: PathBuf,
    /// What the plugin says about itself (`info`).
    pub info: PluginInfo,
    /// The contract version the plugin was built against (within this host's range).
    pub contract: String,
    /// Whether the compiled code came from the cache (no compilation).
    pub from_cache: bool,
    /// SHA-256 of the component file's bytes, in hex: the bytes that were compiled.
    pub sha256: String,
}

impl Plugin {
    /// A fresh, sandboxed instance that checks a plugin (info, configure, verify):
    /// records it emits are counted against the limits and kept nowhere. A run's
    /// sessions send theirs to the run's collector (`run::run`).
    pub fn open(&self, host: &PluginHost, config: &ResolvedConfig, options: SessionOptions) -> Result<Session> {
        self.open_with_sink(host, config, options, Arc::new(Discard::default()))
    }

    /// A fresh instance whose records go to `output`, shared by the run's sessions.
    #[doc(hidden)]
    pub fn open_with_sink(
        &self,
        host: &PluginHost,
        config: &ResolvedConfig,
        options: SessionOptions,
        output: Arc<dyn RecordSink>,
    ) -> Result<Session> {
        let redactor = Arc::new(Redactor::new(config.secrets.iter().map(|(_, v)| v.as_str())));
        // Egress is what the plugin declared, filled in with this configuration;
        // each secret may go only where the declaration binds it.
        let egress = Egress::expand(&self.info, config)?;
        let mut policy = NetworkPolicy::from_origins(egress.origins(), options.allow_insecure_loopback)?;
        policy.apply(&config.network)?;
        let secrets = Secrets::new(&config.secrets, &egress.secret_bindings(&self.info, config)?);
        let id = self.info.id.clone();
        let limits = config.limits.clone();
        let http = HttpCapability::new(policy, &limits, id.clone(), redactor.clone(), secrets)?;
        let state = PluginState::new(
            &limits,
            http,
            LogCapability::new(id.clone(), redactor.clone(), limits.log_lines),
            OutputCapability::new(options.progress, &limits, output),
            redactor,
        );
        let deadline = options.time_limit.map(|limit| (Instant::now() + limit, limit));
        let mut store = Store::new(&host.engine, state);
        // wasmtime caps what one call may pass from the plugin to the host (128 MiB by
        // default). A page the plugin returns is a response it received, so the cap
        // follows the operator's response size limit, with room for the framing.
        store.set_hostcall_fuel(usize::try_from(limits.response_bytes).unwrap_or(usize::MAX).saturating_add(1 << 20));
        store.data_mut().deadline = deadline;
        store.limiter(|state| &mut state.memory);
        // On every epoch tick while wasm runs: has this call used up its CPU time?
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if let Some((_, limit)) = state.deadline.filter(|(at, _)| Instant::now() > *at) {
                let breach = LimitExceeded {
                    limit: format!("run time limit of {} s", limit.as_secs_f64()),
                    detail: "stopped while running".into(),
                };
                return Err(state.exceed(breach));
            }
            if state.cpu.used() <= state.cpu.limit {
                return Ok(UpdateDeadline::Continue(1));
            }
            let breach = LimitExceeded {
                limit: format!("CPU limit of {} s per call", state.cpu.limit.as_secs_f64()),
                detail: format!("used {:.1} s", state.cpu.used().as_secs_f64()),
            };
            Err(state.exceed(breach))
        });
        store.set_epoch_deadline(1);
        let instantiated = || format!("cannot instantiate plugin {}", self.path.display());
        let instance = self.pre.instantiate(&mut store).into_anyhow().with_context(instantiated)?;
        Ok(Session::new(store, instance, id, options.approved_derived))
    }
}
