//! The commands of the `warden` binary, one file per command group. Each is a thin adapter:
//! parse its arguments, call the library (the operations layer for every change), print.
//! The library does not contain this tree; docs/ARCHITECTURE.md says where it sits.

pub mod accounts;
pub mod check_config;
pub mod data_sets;
pub mod databases;
pub mod decide;
pub mod decision_log;
pub mod directories;
pub mod imperva;
pub mod incidents;
pub mod keys;
pub mod lists;
pub mod serve;
pub mod store;

use std::path::PathBuf;

use anyhow::{Context, Result};

use warden::config::{Config, ConfigSource};
use warden::runtime::Warden;

/// Where the configuration and the store come from, as the global options say.
pub struct Source {
    config: Option<PathBuf>,
    store: Option<PathBuf>,
}

impl Source {
    pub fn new(config: Option<PathBuf>, store: Option<PathBuf>) -> Source {
        Source { config, store }
    }

    pub fn config_source(&self) -> ConfigSource {
        ConfigSource {
            path: self.config.clone(),
            store_override: self.store.clone(),
            listen_override: None,
        }
    }

    /// The configuration named on the command line, or the embedded default.
    pub fn load(&self) -> Result<Config> {
        self.config_source()
            .load()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A warden over the configured store, for one command.
    pub fn open(&self) -> Result<Warden> {
        Warden::open(self.load()?).context("cannot load warden state")
    }
}

/// Runs one future to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f))
}

/// Prints one recent update as a status line under its directory or database: when, the kind
/// (when `with_kind`), the target, `+added -removed`, unresolved, duration and any error.
pub fn print_recent_update(u: &warden::store::RecentUpdate, with_kind: bool) {
    let kind = if with_kind {
        format!(" {:<4}", u.kind)
    } else {
        String::new()
    };
    println!(
        "  {}{kind} {:<40} +{} -{} unresolved {} {}ms{}",
        warden::base::time::format_rfc3339(u.started_at_ms / 1000),
        u.target,
        u.added,
        u.removed,
        u.unresolved.len(),
        u.duration_ms,
        u.error
            .as_ref()
            .map(|e| format!("  error: {e}"))
            .unwrap_or_default()
    );
}

/// ` (a, b)` naming the unresolved principals after their count, or nothing.
pub fn unresolved_names(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}

/// Prints a value as pretty JSON.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
