//! API key use cases: create (the key is shown once, only its hash is stored), revoke, rotate
//! with an overlap, and the bootstrap admin key a fresh store gets. Each is audited with the
//! key record in one transaction and in the running key ring before the call returns.

use std::io::Write;
use std::path::Path;

use super::{Actor, OperationError, expiry};
use crate::auth::{self, NewKey, Scope};
use crate::base::time::{now, parse_duration};
use crate::runtime::Warden;
use crate::store::AuditRecord;

/// How long a rotated key keeps working by default.
pub const DEFAULT_ROTATE_OVERLAP: &str = "1h";

/// A key to make.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    /// Who or what the key is for (`db-proxy-01`).
    pub name: String,
    /// `decide`, `respond`, `admin`.
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub expires_in: Option<String>,
}

fn reload_keys(warden: &Warden) -> Result<(), OperationError> {
    Ok(warden.keys().reload(warden.store())?)
}

/// Makes a key; the returned [`NewKey::key`] is the only copy of the secret.
pub fn create_key(
    warden: &Warden,
    actor: &Actor,
    req: &KeyRequest,
) -> Result<NewKey, OperationError> {
    let scopes = auth::parse_scopes(&req.scopes)?;
    let expires_at = expiry(
        req.expires_at.as_deref(),
        req.expires_in.as_deref(),
        "expires_at`/`expires_in",
    )?;
    let new = warden.store().audited(
        |store| auth::create_key(store, &req.name, &scopes, expires_at, &actor.name, now()),
        |new| {
            AuditRecord::new(
                actor,
                "keys.create",
                &new.record.id,
                serde_json::json!({ "name": new.record.name, "scopes": new.record.scopes }),
            )
        },
    )?;
    reload_keys(warden)?;
    Ok(new)
}

/// Revokes a key now; [`OperationError::NoSuchKey`] if there is no active key `id`.
pub fn revoke_key(warden: &Warden, actor: &Actor, id: &str) -> Result<(), OperationError> {
    let revoked = warden.store().audited(
        |store| store.revoke_key(id, now()),
        |revoked| {
            revoked.then(|| AuditRecord::new(actor, "keys.revoke", id, serde_json::json!({})))
        },
    )?;
    if !revoked {
        return Err(OperationError::NoSuchKey(id.to_owned()));
    }
    reload_keys(warden)
}

/// Replaces key `id` by a new one with its name and scopes; the old one keeps working for
/// `overlap` (a duration such as `1h`), then expires. Returns the new key and the overlap in
/// seconds.
pub fn rotate_key(
    warden: &Warden,
    actor: &Actor,
    id: &str,
    overlap: &str,
) -> Result<(NewKey, i64), OperationError> {
    let overlap = parse_duration(overlap)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .map_err(|e| OperationError::invalid("overlap", e))?;
    let new = warden.store().audited(
        |store| auth::rotate_key(store, id, overlap, &actor.name, now()),
        |new| {
            AuditRecord::new(
                actor,
                "keys.rotate",
                id,
                serde_json::json!({ "new_id": new.record.id, "overlap_secs": overlap }),
            )
        },
    )?;
    reload_keys(warden)?;
    Ok((new, overlap))
}

/// On a store with no key at all, makes an admin key and writes it to `path` with mode 0600
/// (refusing to overwrite an existing file). Logs the path, never the key. Returns whether a
/// key was made.
pub fn bootstrap_admin_key(warden: &Warden, path: &Path) -> Result<bool, OperationError> {
    let store = warden.store();
    if !store.keys()?.is_empty() {
        return Ok(false);
    }
    let system = Actor::system("bootstrap");
    let write = |new: &NewKey| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        writeln!(file, "{}", new.key)?;
        file.sync_all()
    };
    // The key file is written inside the transaction: if it cannot be, the key record rolls
    // back with it rather than leave a key nobody holds.
    let new = store.audited(
        |store| {
            let new = auth::create_key(
                store,
                "bootstrap admin",
                &[Scope::Admin],
                None,
                "bootstrap",
                now(),
            )?;
            write(&new).map_err(|e| {
                OperationError::Internal(format!(
                    "cannot write the bootstrap admin key to {}: {e}",
                    path.display()
                ))
            })?;
            Ok::<_, OperationError>(new)
        },
        |new| {
            AuditRecord::new(
                &system,
                "keys.bootstrap",
                &new.record.id,
                serde_json::json!({ "file": path.display().to_string() }),
            )
        },
    )?;
    reload_keys(warden)?;
    tracing::warn!(
        file = %path.display(),
        key_id = %new.record.id,
        "no API keys existed: wrote a bootstrap admin key (mode 0600); create your own keys with it, then revoke it"
    );
    Ok(true)
}
