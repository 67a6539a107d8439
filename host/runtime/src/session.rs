//! One plugin instance: the contract's calls, with plugin errors and traps turned
//! into one-line, secret-free messages.

use crate::bindings::types::{Check, Page, PluginError, PluginInfo, RunMode, RunPlan, RunRequest};
use crate::bindings::Instance;
use crate::config::{FieldErrors, FieldProblem, ResolvedConfig};
use crate::plugin_state::PluginState;
use anyhow::{anyhow, Context, Result};
use wasmtime::Store;

/// One sandboxed instance of a plugin: the contract's calls, whatever its line.
pub struct Session {
    store: Store<PluginState>,
    instance: Instance,
    plugin_id: String,
    /// The origins a contract 0.2 plugin may derive at `configure`; `None`: any.
    approved_derived: Option<Vec<String>>,
    /// The origins it derived.
    derived: Vec<String>,
}

/// What kind of failure a plugin reported (the contract's `plugin-error` cases), so
/// that a platform can act on it: retry a throttled run later, show an
/// authentication failure as a problem of the connector's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// A setting is missing or wrong.
    NotConfigured,
    /// The credentials were refused.
    Authentication,
    /// The credentials lack a permission.
    Permission,
    /// The source could not be reached.
    Unreachable,
    /// The source throttled the plugin past what it would wait.
    Throttled,
    /// The source answered something the plugin cannot read.
    BadResponse,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// As messages and the service's API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NotConfigured => "not configured",
            FailureKind::Authentication => "authentication failed",
            FailureKind::Permission => "permission missing",
            FailureKind::Unreachable => "host unreachable",
            FailureKind::Throttled => "throttled",
            FailureKind::BadResponse => "bad response",
            FailureKind::Other => "error",
        }
    }

    /// A kind as [`FailureKind::as_str`] writes it.
    pub fn parse(text: &str) -> Option<FailureKind> {
        use FailureKind::*;
        [NotConfigured, Authentication, Permission, Unreachable, Throttled, BadResponse, Other]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// Whether the operator fixes it in the connector's settings (credentials,
    /// permissions, values), not by waiting.
    pub fn is_configuration(self) -> bool {
        matches!(self, FailureKind::NotConfigured | FailureKind::Authentication | FailureKind::Permission)
    }
}

/// A failure a plugin reported from one of its calls, masked and on one line.
#[derive(Debug)]
pub struct PluginFailure {
    /// The plugin.
    pub(crate) plugin: String,
    /// The call (`verify`, `fetch`, `map`).
    pub(crate) export: &'static str,
    /// The kind the plugin gave.
    pub kind: FailureKind,
    /// The plugin's message.
    pub(crate) message: String,
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{} {}: {}: {}", self.plugin, self.export, self.kind.as_str(), self.message)
    }
}

impl std::error::Error for PluginFailure {}

/// A contract 0.2 plugin derived an origin its operator did not approve: the
/// session refuses it before anything is sent there.
#[derive(Debug)]
pub struct UnapprovedOrigin {
    /// The plugin.
    pub(crate) plugin: String,
    /// The origin it derived.
    pub origin: String,
}

impl std::fmt::Display for UnapprovedOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "plugin `{}` (contract 0.2) derived the origin `{}`, which its operator has not approved",
            self.plugin, self.origin
        )
    }
}

impl std::error::Error for UnapprovedOrigin {}

impl Session {
    pub(crate) fn new(
        store: Store<PluginState>,
        instance: Instance,
        plugin_id: String,
        approved_derived: Option<Vec<String>>,
    ) -> Self {
        Session { store, instance, plugin_id, approved_derived, derived: Vec::new() }
    }

    /// The origins a contract 0.2 plugin derived at `configure` (none for 0.3).
    pub fn derived_origins(&self) -> &[String] {
        &self.derived
    }

    /// Runs one export call; a trap becomes an error carrying the plugin's stderr
    /// (where a Rust panic message goes).
    fn call<T>(
        &mut self,
        export: &'static str,
        f: impl FnOnce(&Instance, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T> {
        self.store.data_mut().cpu.start(export);
        self.store.set_epoch_deadline(1);
        f(&self.instance, &mut self.store).map_err(|trap| {
            if let Some(breach) = self.store.data().limit_breach() {
                return anyhow!("plugin `{}` {breach} in `{export}`", self.plugin_id);
            }
            let trap = anyhow::Error::from(trap);
            let stderr = self.store.data().stderr_text();
            let root = self.store.data().redactor.redact(&format!("{}", trap.root_cause()));
            if root.contains("fuel allocated for hostcalls") {
                return anyhow!(
                    "plugin `{}` passed more data to the host in one `{export}` call than its response size limit allows ([limits] response_mb)",
                    self.plugin_id
                );
            }
            let panic = panic_message(&stderr);
            match panic {
                Some(message) => anyhow!("plugin `{}` crashed in `{export}`: {message} (trap: {root})", self.plugin_id),
                None => anyhow!("plugin `{}` trapped in `{export}`: {root}", self.plugin_id),
            }
        })
    }

    fn plugin_error(&self, export: &'static str, e: PluginError) -> anyhow::Error {
        let (kind, text) = match e {
            PluginError::NotConfigured(t) => (FailureKind::NotConfigured, t),
            PluginError::Authentication(t) => (FailureKind::Authentication, t),
            PluginError::Permission(t) => (FailureKind::Permission, t),
            PluginError::Unreachable(t) => (FailureKind::Unreachable, t),
            PluginError::Throttled(t) => (FailureKind::Throttled, t),
            PluginError::BadResponse(t) => (FailureKind::BadResponse, t),
            PluginError::Other(t) => (FailureKind::Other, t),
        };
        let message = crate::redact::one_line(&self.store.data().redactor.redact(&text));
        anyhow::Error::new(PluginFailure { plugin: self.plugin_id.clone(), export, kind, message })
    }

    /// The plugin's `info` (a contract 0.2 plugin's read as 0.3).
    pub fn info(&mut self) -> Result<PluginInfo> {
        self.call("info", |instance, s| instance.info(s))
    }

    /// Passes the settings, secrets as placeholders (the plugin never sees a secret's
    /// value); the plugin's field errors come back as one message. The origins the
    /// plugin declares it needs are allowed for this session, under the same rules as
    /// host fields.
    pub fn configure(&mut self, config: &ResolvedConfig) -> Result<()> {
        use crate::bindings::types::Setting;
        let secrets = &self.store.data().http.secrets;
        let settings: Vec<Setting> = config
            .settings
            .iter()
            .map(|(key, value)| {
                let is_secret = config.secrets.iter().any(|(k, _)| k == key);
                let value = match secrets.placeholder(value) {
                    Some(placeholder) if is_secret => placeholder.to_owned(),
                    _ => value.clone(),
                };
                Setting { key: key.clone(), value }
            })
            .collect();
        let configured = self.call("configure", |instance, s| instance.configure(s, &settings))?;
        let plugin = self.plugin_id.clone();
        match configured {
            // 0.3: the origins the instance uses, within what it declared.
            Ok(origins) if self.instance.line().declares_egress() => {
                if !origins.is_empty() {
                    self.store
                        .data_mut()
                        .http
                        .narrow(&origins)
                        .with_context(|| format!("plugin `{plugin}` configured an origin it did not declare"))?;
                }
                Ok(())
            }
            // 0.2: origins it derived, reachable as before, but bound to no secret.
            Ok(origins) => {
                for origin in origins {
                    let approved = self.approved_derived.as_ref().is_none_or(|list| list.contains(&origin));
                    if !approved {
                        return Err(anyhow::Error::new(UnapprovedOrigin { plugin, origin }));
                    }
                    self.derived.push(origin.clone());
                    self.store
                        .data_mut()
                        .http
                        .allow_derived(&origin)
                        .with_context(|| format!("plugin `{plugin}` needs origin `{origin}`"))?;
                }
                Ok(())
            }
            Err(errors) => {
                let redactor = &self.store.data().redactor;
                let problems = errors
                    .iter()
                    .map(|e| FieldProblem::new(&e.key, format!("`{}`: {}", e.key, redactor.redact(&e.message))))
                    .collect();
                Err(anyhow::Error::new(FieldErrors(problems))
                    .context(format!("invalid configuration for {}", self.plugin_id)))
            }
        }
    }

    /// The plugin's `verify`: what each check proved, masked and on one line.
    pub fn verify(&mut self) -> Result<Vec<Check>> {
        let result = self.call("verify", |instance, s| instance.verify(s))?;
        let redactor = &self.store.data().redactor;
        let mask = |text: &str| {
            let mut text = crate::redact::one_line(&redactor.redact(text));
            crate::redact::cap_line(&mut text);
            text
        };
        match result {
            Ok(checks) => {
                Ok(checks.into_iter().map(|c| Check { name: mask(&c.name), detail: mask(&c.detail) }).collect())
            }
            Err(e) => Err(self.plugin_error("verify", e)),
        }
    }

    /// Begins a run: asks for `mode` with the state of the last delivered run, and
    /// returns how the plugin will run (its reason masked, on one line). A plugin
    /// that answers `incremental` to a request for `full` breaks the contract.
    pub fn start(&mut self, mode: RunMode, state: Option<Vec<u8>>) -> Result<RunPlan> {
        let request = RunRequest { mode, state };
        let result = self.call("start", |instance, s| instance.start(s, &request))?;
        let mut plan = result.map_err(|e| self.plugin_error("start", e))?;
        if mode == RunMode::Full && plan.mode == RunMode::Incremental {
            anyhow::bail!(
                "plugin `{}` answered a request for a full run with an incremental one; the contract allows it only the other way",
                self.plugin_id
            );
        }
        let redactor = &self.store.data().redactor;
        plan.reason = plan.reason.map(|r| {
            let mut text = crate::redact::one_line(&redactor.redact(&r));
            crate::redact::cap_line(&mut text);
            text
        });
        Ok(plan)
    }

    /// Ends a run after the last page: the state the plugin keeps for the next run,
    /// with any secret masked, within `[limits] state_mb`.
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>> {
        let result = self.call("finish", |instance, s| instance.finish(s))?;
        let state = result.map_err(|e| self.plugin_error("finish", e))?;
        let limit = self.store.data().state_limit;
        match state {
            Some(bytes) if bytes.len() as u64 > limit => Err(anyhow!(
                "plugin `{}` returned {} of state, above its limit of {} ([limits] state_mb); the previous state stays",
                self.plugin_id,
                crate::limits::mib(bytes.len() as u64),
                crate::limits::mib(limit)
            )),
            Some(bytes) => Ok(Some(self.store.data().redactor.redact_bytes(bytes))),
            None => Ok(None),
        }
    }

    /// The plugin's next page, or `None` after the last.
    pub fn fetch(&mut self) -> Result<Option<Page>> {
        let result = self.call("fetch", |instance, s| instance.fetch(s))?;
        result.map_err(|e| self.plugin_error("fetch", e))
    }

    /// The plugin's `%map` of one page; its records go to the run's collector.
    pub fn map(&mut self, page: &Page) -> Result<()> {
        let result = self.call("map", |instance, s| instance.map(s, page))?;
        result.map_err(|e| self.plugin_error("map", e))
    }

    /// The origins this instance may reach (after `configure`), for the operator.
    pub fn effective_egress(&self) -> Vec<String> {
        self.store.data().http.effective_egress()
    }

    pub(crate) fn state(&self) -> &PluginState {
        self.store.data()
    }

    /// The plugin's warning and error log lines so far (masked, the first few).
    pub fn warnings(&self) -> &[String] {
        &self.state().log.warnings
    }

    /// HTTP calls this instance made, and how many were answered 429.
    #[doc(hidden)]
    pub fn http_counts(&self) -> (u64, u64) {
        let stats = &self.state().http.stats;
        (
            stats.calls.load(std::sync::atomic::Ordering::Relaxed),
            stats.throttled.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// The message of a Rust panic in captured stderr, on one line.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at")?;
    let text: Vec<&str> = stderr[start..]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    Some(text.join(" "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn panic_messages_read_on_one_line() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nboom: bad row\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(super::panic_message(stderr).unwrap(), "panicked at src/lib.rs:10:5: boom: bad row");
        assert_eq!(super::panic_message("nothing"), None);
    }
}
