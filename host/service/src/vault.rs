//! Secrets at rest: sealed with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`)
//! under a 32-byte key from `CONNECTOR_HOST_SECRET_KEY` or a key file created 0600 in
//! the state directory on first start. A value sealed under the key is kept in the
//! database, so a start with another key (or none, once secrets exist) is refused
//! before anything is read or written.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::{Path, PathBuf};

/// The environment variable that holds the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "CONNECTOR_HOST_SECRET_KEY";
/// The key file's name in the state directory.
pub(crate) const KEY_FILE: &str = "secret.key";
/// What the database keeps sealed to recognise its key.
const CANARY: &str = "connector-host secret key check";

/// Seals and opens secret values.
#[derive(Clone)]
pub(crate) struct Vault {
    cipher: XChaCha20Poly1305,
    /// Where the key came from, for messages (never the key).
    source: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Vault").field("source", &self.source).finish_non_exhaustive()
    }
}

/// Where a key is looked for.
pub(crate) enum KeySource {
    /// The environment variable's value.
    Env(String),
    /// The key file (created when missing and `create` is true).
    File {
        /// The key file.
        path: PathBuf,
        /// Whether a missing file may be created (only when the database holds no secrets).
        create: bool,
    },
}

impl KeySource {
    /// The key from the environment when set, else the state directory's key file.
    pub(crate) fn find(state_dir: &Path, env: Option<String>, database_has_secrets: bool) -> KeySource {
        match env {
            Some(value) => KeySource::Env(value),
            None => KeySource::File { path: state_dir.join(KEY_FILE), create: !database_has_secrets },
        }
    }
}

impl Vault {
    /// Opens the key: the environment's, the key file's, or a new key file.
    pub(crate) fn open(source: KeySource) -> Result<Vault> {
        let (text, source) = match source {
            KeySource::Env(value) => (value, format!("the environment variable {KEY_ENV}")),
            KeySource::File { path, create } => {
                let shown = path.display().to_string();
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        check_private(&path)?;
                        (text, format!("the key file {shown}"))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                        (create_key_file(&path)?, format!("the key file {shown} (created)"))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                        "the database holds sealed secrets but the secret key is missing: no {shown} and {KEY_ENV} is not set. \
                         Restore the key file (or set {KEY_ENV} to the key) and start again; nothing was changed"
                    ),
                    Err(e) => return Err(e).with_context(|| format!("cannot read the secret key file {shown}")),
                }
            }
        };
        let key = B64.decode(text.trim()).ok().filter(|k| k.len() == 32).ok_or_else(|| {
            anyhow!("the secret key in {source} is not 32 bytes in base64 (44 characters); it may be damaged. Nothing was changed")
        })?;
        let cipher = XChaCha20Poly1305::new_from_slice(&key).expect("a 32-byte key");
        Ok(Vault { cipher, source })
    }

    /// Seals a value: base64 of a random 24-byte nonce and the ciphertext.
    pub(crate) fn seal(&self, plain: &str) -> Result<String> {
        self.seal_for(plain, "")
    }

    /// Seals a value bound to `context` (associated data, such as a connector's id
    /// and a field's key): it opens only for the same context, so a sealed value
    /// copied to another connector or field in the database does not open there.
    pub(crate) fn seal_for(&self, plain: &str, context: &str) -> Result<String> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| anyhow!("no randomness for a nonce: {e}"))?;
        let payload = Payload { msg: plain.as_bytes(), aad: context.as_bytes() };
        let sealed =
            self.cipher.encrypt(XNonce::from_slice(&nonce), payload).map_err(|_| anyhow!("cannot seal a secret"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(B64.encode(out))
    }

    /// Opens a sealed value.
    pub(crate) fn open_sealed(&self, sealed: &str) -> Result<String> {
        self.open_for(sealed, "")
    }

    /// Opens a value sealed for `context`.
    pub(crate) fn open_for(&self, sealed: &str, context: &str) -> Result<String> {
        let bytes = B64.decode(sealed).context("a sealed secret is not base64")?;
        if bytes.len() < 24 {
            bail!("a sealed secret is too short");
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let payload = Payload { msg: ciphertext, aad: context.as_bytes() };
        let plain = self.cipher.decrypt(XNonce::from_slice(nonce), payload).map_err(|_| {
            anyhow!("a sealed secret does not open with the secret key from {} for {}: the key differs from the one it was sealed with, or the value was sealed for another connector or field", self.source, if context.is_empty() { "this database" } else { context })
        })?;
        String::from_utf8(plain).context("a sealed secret is not text")
    }

    /// A value to keep in the database to recognise this key later.
    pub(crate) fn canary(&self) -> Result<String> {
        self.seal(CANARY)
    }

    /// Refuses a key that did not seal the database's canary.
    pub(crate) fn check_canary(&self, sealed: &str) -> Result<()> {
        match self.open_sealed(sealed) {
            Ok(text) if text == CANARY => Ok(()),
            _ => bail!(
                "the secret key from {} is not the key this database's secrets were sealed with; \
                 start with the original key (nothing was changed)",
                self.source
            ),
        }
    }
}

fn create_key_file(path: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow!("no randomness for a key: {e}"))?;
    let text = B64.encode(key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the secret key file {}", path.display()))?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "created a secret key file; back it up: without it the stored secrets cannot be read");
    Ok(text)
}

/// A key file others can read is refused: the key opens every stored secret.
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the secret key file {} can be read by others (mode {:o}); run `chmod 600` on it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let vault = Vault::open(KeySource::File { path: path.clone(), create: true }).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = vault.seal("hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, vault.seal("hunter2").unwrap(), "a fresh nonce each time");
        assert_eq!(vault.open_sealed(&sealed).unwrap(), "hunter2");
        let canary = vault.canary().unwrap();
        vault.check_canary(&canary).unwrap();

        let reopened = Vault::open(KeySource::File { path: path.clone(), create: false }).unwrap();
        assert_eq!(reopened.open_sealed(&sealed).unwrap(), "hunter2");

        let other = Vault::open(KeySource::Env(B64.encode([7u8; 32]))).unwrap();
        let err = other.check_canary(&canary).unwrap_err().to_string();
        assert!(err.contains("not the key this database's secrets were sealed with"), "{err}");
        assert!(other.open_sealed(&sealed).is_err());
    }

    #[test]
    fn a_value_sealed_for_one_connector_and_field_opens_for_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(KeySource::File { path: dir.path().join(KEY_FILE), create: true }).unwrap();
        let sealed = vault.seal_for("hunter2", "c_1/token").unwrap();
        assert_eq!(vault.open_for(&sealed, "c_1/token").unwrap(), "hunter2");
        for other in ["c_2/token", "c_1/other", ""] {
            let err = vault.open_for(&sealed, other).unwrap_err().to_string();
            assert!(err.contains("sealed for another connector or field"), "{err}");
        }
    }

    #[test]
    fn missing_damaged_or_readable_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let err = Vault::open(KeySource::File { path: path.clone(), create: false }).unwrap_err().to_string();
        assert!(err.contains("secret key is missing"), "{err}");
        assert!(!path.exists(), "a missing key is not replaced when secrets exist");

        std::fs::write(&path, "not a key\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Vault::open(KeySource::File { path: path.clone(), create: false }).unwrap_err().to_string();
        assert!(err.contains("not 32 bytes in base64"), "{err}");

        std::fs::write(&path, B64.encode([1u8; 32])).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Vault::open(KeySource::File { path, create: false }).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
