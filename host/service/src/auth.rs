//! API tokens: random, shown once, stored as their SHA-256 (a token is 32 random
//! bytes, so a fast hash is enough: there is nothing to guess). Each has a role:
//! `admin` changes connectors, `viewer` reads.

use super::store::{new_id, Db};
use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The environment variable that sets the first admin token.
pub const ADMIN_TOKEN_ENV: &str = "CONNECTOR_HOST_ADMIN_TOKEN";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Reads everything but secrets; changes nothing.
    Viewer,
    /// Adds, changes, verifies, runs and deletes connectors; manages tokens.
    Admin,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A new random token (`cht_` and 43 characters).
pub(crate) fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a token: {e}"))?;
    Ok(format!("cht_{}", B64URL.encode(bytes)))
}

/// How a token is stored.
pub(crate) fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores a token with its role; returns its id.
pub(crate) async fn add(db: &Db, name: &str, role: Role, token: &str) -> Result<String> {
    let id = new_id("t_");
    db.insert_token(&id, name, role.as_str(), &hash(token)).await?;
    Ok(id)
}

/// The first admin token, made only while the service has no admin token: the
/// environment's when set, or a generated one, returned to be printed once. The
/// environment gives the first token only: once revoked it stays revoked, whatever
/// the environment still says at the next start.
pub(crate) async fn bootstrap(db: &Db, from_env: Option<String>) -> Result<Option<String>> {
    let has_admin = db.count_admin_tokens().await? > 0;
    if let Some(token) = from_env {
        if token.len() < 16 {
            bail!("{ADMIN_TOKEN_ENV} is too short: use at least 16 characters (for example the output of `openssl rand -hex 24`)");
        }
        if !has_admin {
            add(db, "admin (from the environment)", Role::Admin, &token).await?;
        } else if db.token_by_hash(&hash(&token)).await?.is_none() {
            tracing::warn!(
                "{ADMIN_TOKEN_ENV} is not a token of this service (revoked, or admin tokens already exist); it is ignored"
            );
        }
        return Ok(None);
    }
    if has_admin {
        return Ok(None);
    }
    let token = generate()?;
    add(db, "first admin", Role::Admin, &token).await?;
    Ok(Some(token))
}

/// The role of a presented token, if it is one.
pub(crate) async fn role_of(db: &Db, token: &str) -> Result<Option<Role>> {
    Ok(db.token_by_hash(&hash(token)).await?.and_then(|row| Role::parse(&row.role)))
}
