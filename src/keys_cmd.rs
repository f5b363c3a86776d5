//! `warden keys …` and the bootstrap admin key: API keys from the shell, against the store a
//! running `serve` reads (it picks up changes through the store).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;

use warden::auth::{self, Scope};
use warden::base::time::now;
use warden::base::time::{expiry, format_rfc3339};
use warden::store::{AuditRecord, Store};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a key; it is printed once and only its hash is stored
    Create {
        /// Who or what the key is for (e.g. "db-proxy-01")
        #[arg(long)]
        name: String,
        /// decide, respond or admin (repeatable; admin includes the others)
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Expire after this long (e.g. 90d)
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Show key records (never the keys)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key now
    Revoke { id: String },
    /// Replace a key; the old one keeps working for the overlap, then expires
    Rotate {
        id: String,
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        overlap: String,
    },
}

/// The shell user, for audit records and `created_by`.
pub fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// Appends an audit record for a CLI action (no source address).
pub fn audit_cli(
    store: &Store,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<()> {
    audit_as(store, &cli_actor(), action, target, detail)
}

fn audit_as(
    store: &Store,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<()> {
    let record = AuditRecord {
        id: 0,
        at_ms: now().saturating_mul(1000),
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        source: None,
        detail,
    };
    store
        .append_audit(&record)
        .context("cannot write the audit record")?;
    Ok(())
}

pub fn keys(store: &Store, cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            expires_in,
        } => {
            let scopes = auth::parse_scopes(&scopes)?;
            let expires_at =
                expiry(None, expires_in.as_deref(), now()).map_err(anyhow::Error::msg)?;
            let new = auth::create_key(store, &name, &scopes, expires_at, &cli_actor(), now())?;
            let detail =
                serde_json::json!({ "name": new.record.name, "scopes": new.record.scopes });
            audit_cli(store, "keys.create", &new.record.id, detail)?;
            eprintln!("key {} ({name}); shown once, store it now:", new.record.id);
            println!("{}", new.key);
        }
        KeysCommand::List { json } => {
            let keys = store.keys()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!(
                    "{:<14} {:<24} {:<22} {:<21} STATE",
                    "ID", "NAME", "SCOPES", "EXPIRES"
                );
                for k in keys {
                    let state = match (k.revoked_at, k.expires_at) {
                        (Some(_), _) => "revoked",
                        (None, Some(t)) if t <= now() => "expired",
                        _ => "active",
                    };
                    println!(
                        "{:<14} {:<24} {:<22} {:<21} {state}",
                        k.id,
                        k.name,
                        k.scopes.join(","),
                        k.expires_at.map_or("-".into(), format_rfc3339),
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(&id, now())? {
                eprintln!("no active key with id {id:?}");
                return Ok(ExitCode::from(1));
            }
            audit_cli(store, "keys.revoke", &id, serde_json::json!({}))?;
            println!("revoked {id}");
        }
        KeysCommand::Rotate { id, overlap } => {
            let overlap = warden::base::time::parse_duration(&overlap)
                .map_err(|e| anyhow!("--overlap: {e}"))?;
            let secs = i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX);
            let new = auth::rotate_key(store, &id, secs, &cli_actor(), now())?;
            let detail = serde_json::json!({ "new_id": new.record.id, "overlap_secs": secs });
            audit_cli(store, "keys.rotate", &id, detail)?;
            eprintln!(
                "key {} replaces {id}, which expires in {overlap:?}; shown once, store it now:",
                new.record.id
            );
            println!("{}", new.key);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// On first start with no key at all, makes an admin key and writes it to `path` with mode
/// 0600 (refusing to overwrite an existing file). Logs the path, never the key.
pub fn bootstrap(store: &Store, path: &Path) -> Result<bool> {
    if !store.keys()?.is_empty() {
        return Ok(false);
    }
    let new = auth::create_key(
        store,
        "bootstrap admin",
        &[Scope::Admin],
        None,
        "bootstrap",
        now(),
    )?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(path)
        .and_then(|mut f| writeln!(f, "{}", new.key).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        // Without the file nobody can use the key: revoke it rather than leave it dangling.
        store.revoke_key(&new.record.id, now())?;
        return Err(anyhow!(
            "cannot write the bootstrap admin key to {}: {e}",
            path.display()
        ));
    }
    audit_as(
        store,
        "system",
        "keys.bootstrap",
        &new.record.id,
        serde_json::json!({ "file": path.display().to_string() }),
    )?;
    tracing::warn!(
        file = %path.display(),
        key_id = %new.record.id,
        "no API keys existed: wrote a bootstrap admin key (mode 0600); create your own keys with it, then revoke it"
    );
    Ok(true)
}
