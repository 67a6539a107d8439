//! A cache of compiled components, so that a repeated run does not compile the plugin
//! again: the compiled code is keyed by the component's bytes and the engine's
//! compatibility (wasmtime version and settings), and kept under the user's cache
//! directory.
//!
//! Loading compiled code trusts its bytes (wasmtime's `deserialize` is `unsafe` for
//! that reason), so the cache is guarded:
//! - an entry's name is the SHA-256 of the engine's settings and the component's
//!   bytes, and its first 32 bytes the SHA-256 of the compiled code that follows,
//!   checked before anything is loaded: a damaged or swapped entry is compiled again;
//! - the directory is the user's own, mode 0700; if it is not (another owner, or
//!   writable by others), the cache is not used at all;
//! - entries are written to a temporary file created exclusively, without following
//!   symlinks, then renamed into place.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// `$XDG_CACHE_HOME/connector-host/components`, else `~/.cache/connector-host/components`.
pub(crate) fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("connector-host/components"))
}

/// Where a component's compiled code is kept.
fn entry(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    // The engine's settings as wasmtime hashes them, folded into the SHA-256 key.
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let mut key = Sha256::new();
    key.update(settings.finish().to_le_bytes());
    key.update(bytes);
    dir.join(format!("{}.cwasm", hex(&key.finalize())))
}

/// SHA-256 of `bytes`, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the directory if needed (mode 0700) and says whether it may hold the
/// cache: owned by this user, and not writable by anyone else.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "{} is not a directory of this user that only this user may write (mode {:o}, owner {}); the compiled-component cache is not used",
            dir.display(),
            meta.mode() & 0o777,
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The component, from the cache when a valid entry exists, else compiled (and cached).
/// Returns whether it came from the cache.
pub(crate) fn load(engine: &Engine, dir: Option<&Path>, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
    let Some(dir) = dir else { return Ok((Component::new(engine, bytes)?, false)) };
    if let Err(e) = private_dir(dir) {
        tracing::warn!("{e:#}");
        return Ok((Component::new(engine, bytes)?, false));
    }
    let path = entry(dir, engine, bytes);
    // Read into memory rather than mapped: a file replaced or cut while mapped would
    // crash the process (SIGBUS); a copy cannot change under us.
    if let Ok(stored) = std::fs::read(&path) {
        match checked(&stored) {
            // SAFETY: the compiled code is what `Component::serialize` of this host
            // wrote for the same bytes and engine settings (the name is their SHA-256,
            // and the checksum matched); wasmtime also checks the header and refuses
            // code from another version or configuration.
            Some(compiled) => match unsafe { Component::deserialize(engine, compiled) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => tracing::warn!(
                    "compiled-component cache entry {} is unusable ({e}); compiling again",
                    path.display()
                ),
            },
            None => {
                tracing::warn!("compiled-component cache entry {} fails its checksum; compiling again", path.display())
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&path, &component) {
        tracing::warn!("cannot write the compiled-component cache at {}: {e:#}", path.display());
    }
    Ok((component, false))
}

/// The compiled code of a stored entry, if its checksum matches.
fn checked(stored: &[u8]) -> Option<&[u8]> {
    let (sum, compiled) = stored.split_at_checked(32)?;
    (Sha256::digest(compiled).as_slice() == sum).then_some(compiled)
}

fn store(path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("entries live in a directory");
    let compiled = component.serialize().map_err(anyhow::Error::from)?;
    let tmp = dir.join(format!(".{}.{}", std::process::id(), path.file_name().unwrap().to_string_lossy()));
    std::fs::remove_file(&tmp).ok();
    // Created here and now, by this process: never an existing file or a symlink.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.write_all(&Sha256::digest(&compiled))?;
    file.write_all(&compiled)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_directory_is_private_and_entries_carry_a_checksum() {
        let dir = std::env::temp_dir().join(format!("cache-unit-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        private_dir(&dir.join("components")).unwrap();
        let mode = std::fs::metadata(dir.join("components")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(dir.join("components"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = private_dir(&dir.join("components")).unwrap_err().to_string();
        assert!(refused.contains("is not used"), "{refused}");
        let mut stored = Sha256::digest(b"code").to_vec();
        stored.extend_from_slice(b"code");
        assert_eq!(checked(&stored), Some(&b"code"[..]));
        stored[33] ^= 1;
        assert_eq!(checked(&stored), None, "a changed byte fails the checksum");
        assert_eq!(checked(b"short"), None);
    }
}
