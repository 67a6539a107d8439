//! "Save and Verify": the configuration checked, the plugin's own checks (a token,
//! the permissions a run needs), and, when the configuration has a `[cvm]` table,
//! that the CVM connector exists and accepts the API key. A platform that embeds the
//! library gets every check the CLI shows.

use crate::config::ConnectorConfig;
use crate::cvm::{CvmClient, CvmConfig};
use crate::engine::{Plugin, PluginHost, SessionOptions};
use crate::types::Check;
use anyhow::{Context, Result};

/// What verify proved, and where the instance may connect.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Each check, in order, with what it proved.
    pub checks: Vec<Check>,
    /// The origins the instance may reach: the plugin's declared egress, filled in
    /// with the configuration and narrowed by its `configure`, with the operator's
    /// `[network]` grants; for the operator to review before trusting the plugin.
    pub egress: Vec<String>,
}

/// Runs every check, in order; the first that fails is the error.
pub fn verify(
    host: &PluginHost,
    plugin: &Plugin,
    config: &ConnectorConfig,
    session: SessionOptions,
) -> Result<Verified> {
    // A bad [cvm] table is reported before anything is sent.
    let cvm = config
        .cvm
        .as_ref()
        .map(|v| CvmConfig::from_values(v, session.allow_insecure_loopback).map(|c| c.with_grants(&config.network)))
        .transpose()?;
    let resolved = config.resolve(&plugin.info).context("invalid configuration")?;
    let session = SessionOptions { time_limit: session.time_limit.or(Some(resolved.limits.verify_time)), ..session };
    let mut instance = plugin.open(host, &resolved, session)?;
    instance.configure(&resolved)?;
    let egress = instance.effective_egress();
    let mut checks = instance.verify()?;
    drop(instance);
    if let Some(cvm) = cvm {
        checks.push(check_cvm(&cvm)?);
    }
    Ok(Verified { checks, egress })
}

/// The CVM connector exists, is reachable and accepts the API key.
fn check_cvm(cvm: &CvmConfig) -> Result<Check> {
    let connector = CvmClient::new(cvm.clone())?.connector()?;
    let name = connector["name"].as_str().unwrap_or("?");
    let kind = if connector["host"].is_null() { "file-based" } else { "host-based" };
    Ok(Check {
        name: "CVM".into(),
        detail: format!("connector {} `{name}` ({kind}) at {} accepts the API key", cvm.connector_id, cvm.base_url),
    })
}
