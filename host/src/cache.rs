//! A cache of compiled components, so that a repeated run does not compile the plugin
//! again: the compiled code is keyed by the component's bytes and the engine's
//! compatibility (wasmtime version and settings), and kept under the user's cache
//! directory.
//!
//! Loading compiled code trusts its bytes (wasmtime's `deserialize` is `unsafe` for
//! that reason): entries are written only by this host, into a directory of the user
//! who runs it, and a damaged or foreign entry is compiled again and replaced.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// `$XDG_CACHE_HOME/connector-host/components`, else `~/.cache/connector-host/components`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("connector-host/components"))
}

/// Where a component's compiled code is kept.
fn entry(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    bytes.hash(&mut h);
    dir.join(format!("{:016x}.cwasm", h.finish()))
}

/// The component, from the cache when a valid entry exists, else compiled (and cached).
/// Returns whether it came from the cache.
pub fn load(engine: &Engine, dir: Option<&Path>, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
    let Some(dir) = dir else { return Ok((Component::new(engine, bytes)?, false)) };
    let path = entry(dir, engine, bytes);
    // Read into memory rather than mapped: a file replaced or cut while mapped would
    // crash the process (SIGBUS); a copy cannot change under us.
    if let Ok(compiled) = std::fs::read(&path) {
        // SAFETY: the entry was written by `Component::serialize` of this host for the
        // same bytes and engine settings (the file name says so); wasmtime checks the
        // header and refuses files from another version or configuration.
        match unsafe { Component::deserialize(engine, &compiled) } {
            Ok(component) => return Ok((component, true)),
            Err(e) => {
                tracing::warn!("compiled-component cache entry {} is unusable ({e}); compiling again", path.display())
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&path, &component) {
        tracing::warn!("cannot write the compiled-component cache at {}: {e:#}", path.display());
    }
    Ok((component, false))
}

fn store(path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.{}", std::process::id(), path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, component.serialize().map_err(anyhow::Error::from)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
