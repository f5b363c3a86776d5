//! `warden keys create|list|revoke|rotate`: API keys from the shell, through the same
//! operations as HTTP, against the store a running `serve` reads (it picks up changes through
//! the store).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::{Source, print_json};
use warden::base::actor::Actor;
use warden::base::time::{format_rfc3339, now};
use warden::operations::OperationError;
use warden::operations::keys::{self, DEFAULT_ROTATE_OVERLAP, KeyRequest};

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
        #[arg(long, default_value = DEFAULT_ROTATE_OVERLAP, value_name = "DURATION")]
        overlap: String,
    },
}

pub fn run(source: &Source, cmd: KeysCommand) -> Result<ExitCode> {
    let warden = source.open()?;
    let actor = Actor::cli();
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            expires_in,
        } => {
            let req = KeyRequest {
                name: name.clone(),
                scopes,
                expires_at: None,
                expires_in,
            };
            let new = keys::create_key(&warden, &actor, &req)?;
            eprintln!("key {} ({name}); shown once, store it now:", new.record.id);
            println!("{}", new.key);
        }
        KeysCommand::List { json } => {
            let keys = warden.store().keys()?;
            if json {
                print_json(&keys)?;
            } else {
                println!(
                    "{:<14} {:<24} {:<22} {:<21} STATE",
                    "ID", "NAME", "SCOPES", "EXPIRES"
                );
                for k in keys {
                    let state = match (k.revoked_at, k.expires_at) {
                        (Some(_), _) => "revoked",
                        (None, _) if k.expired_at.is_some() => "expired",
                        (None, Some(t)) if t <= now() => "expired",
                        // Still authenticates until its overlap ends; opens no console session.
                        _ if k.rotated_at.is_some() => "rotated",
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
        KeysCommand::Revoke { id } => match keys::revoke_key(&warden, &actor, &id) {
            Ok(()) => println!("revoked {id}"),
            Err(e @ OperationError::NoSuchKey(_)) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(e.into()),
        },
        KeysCommand::Rotate { id, overlap } => {
            let (new, secs) = keys::rotate_key(&warden, &actor, &id, &overlap)?;
            eprintln!(
                "key {} replaces {id}, which expires in {secs}s; shown once, store it now:",
                new.record.id
            );
            println!("{}", new.key);
        }
    }
    Ok(ExitCode::SUCCESS)
}
