//! What the benchmark binaries measure the same way.

use anyhow::Result;
use connector_host::config::ConnectorConfig;
use connector_host::engine::{Plugin, PluginHost, Session, SessionOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// A plugin's start to a ready instance with its info read: cold (compiling into
/// the empty cache `cache`), then warm (the same from that cache).
pub struct StartTimes {
    pub cold: Duration,
    pub warm: Duration,
    /// Whether the cold start compiled and the warm one read the cache, as meant.
    pub as_meant: bool,
}

pub fn start_times(plugin: &Path, cache: &Path) -> Result<StartTimes> {
    let mut times = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let host = PluginHost::new()?.with_cache_dir(Some(cache.to_owned()));
        let loaded = host.load(plugin)?;
        let mut session = loaded.open(&host, &Default::default(), SessionOptions::default())?;
        session.info()?;
        times.push((started.elapsed(), loaded.from_cache));
    }
    Ok(StartTimes { cold: times[0].0, warm: times[1].0, as_meant: !times[0].1 && times[1].1 })
}

/// A session of `plugin` configured from `config_toml` (a connector file's text),
/// whose records go to a collector as in a run: what mapping is measured on.
pub fn mapping_session(host: &PluginHost, plugin: &Plugin, config_toml: &str) -> Result<Session> {
    let config = ConnectorConfig::parse(config_toml, &|_| None)?;
    let resolved = config.resolve(&plugin.info)?;
    let options = SessionOptions { allow_insecure_loopback: true, ..Default::default() };
    let mut session = connector_host::bench_support::open_collecting(plugin, host, &resolved, options)?;
    session.configure(&resolved)?;
    Ok(session)
}
