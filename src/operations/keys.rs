//! API key use cases: create (the key is shown once, only its hash is stored), revoke, rotate
//! with an overlap, and the bootstrap admin key a fresh store gets. Each is audited with the
//! key record in one transaction and in the running key ring before the call returns.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::{Actor, OperationError, expiry};
use crate::auth::{self, NewKey, Scope};
use crate::base::time::{format_rfc3339, now, parse_duration};
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

/// On a store with no key at all, makes an admin key that expires after `expires_in` and
/// writes it to `path` with mode 0600. Logs the path, never the key. Returns whether a key
/// was made.
///
/// A file already at `path` cannot hold a live key of this store (it has none): it is left
/// over from a store deleted to start over, or from another store configured to share the
/// path. It is replaced atomically — the key goes to a temporary file (0600) beside it that is
/// renamed over it — so a start never fails on a stale file and never leaves half a key.
pub fn bootstrap_admin_key(
    warden: &Warden,
    path: &Path,
    expires_in: Duration,
) -> Result<bool, OperationError> {
    let store = warden.store();
    if !store.keys()?.is_empty() {
        return Ok(false);
    }
    let system = Actor::system("bootstrap");
    let leftover = path.exists();
    let now = now();
    let expires_at = now.saturating_add(i64::try_from(expires_in.as_secs()).unwrap_or(i64::MAX));
    // The key file is written inside the transaction: if it cannot be, the key record rolls
    // back with it rather than leave a key nobody holds.
    // Asked again inside the transaction: replicas starting together on one PostgreSQL store
    // write their transactions one at a time, so only the first finds no key.
    let new = store.audited(
        |store| {
            if !store.keys()?.is_empty() {
                return Ok(None);
            }
            let new = auth::create_key(
                store,
                "bootstrap admin",
                &[Scope::Admin],
                Some(expires_at),
                "bootstrap",
                now,
            )?;
            write_key_file(path, &new.key).map_err(|e| {
                OperationError::Internal(format!(
                    "cannot write the bootstrap admin key to {}: {e}",
                    path.display()
                ))
            })?;
            Ok::<_, OperationError>(Some(new))
        },
        |new| {
            let new = new.as_ref()?;
            Some(AuditRecord::new(
                &system,
                "keys.bootstrap",
                &new.record.id,
                serde_json::json!({
                    "file": path.display().to_string(),
                    "expires_at": expires_at,
                    "replaced_leftover_file": leftover,
                }),
            ))
        },
    )?;
    let Some(new) = new else {
        return Ok(false);
    };
    reload_keys(warden)?;
    if leftover {
        tracing::warn!(
            file = %path.display(),
            "replaced a leftover bootstrap key file: this store had no keys, so it held none of them"
        );
    }
    tracing::warn!(
        file = %path.display(),
        key_id = %new.record.id,
        expires_at = %format_rfc3339(expires_at),
        "no API keys existed: wrote a bootstrap admin key (mode 0600); create your own keys with it before it expires, then revoke it"
    );
    Ok(true)
}

/// Writes `key` to `path` through a temporary file created 0600 beside it and renamed over
/// whatever was there, then syncs the directory so the rename is durable.
fn write_key_file(path: &Path, key: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A temporary file of an earlier run of this pid (a crash mid-write) holds no live key.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        writeln!(file, "{key}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
