//! The commands of the `warden` binary, one file per command group. Each is a thin adapter:
//! parse its arguments, call the library (the operations layer for every change), print.
//! The library does not contain this tree; docs/ARCHITECTURE.md says where it sits.

pub mod check_config;
pub mod data_sets;
pub mod databases;
pub mod decide;
pub mod directories;
pub mod imperva;
pub mod incidents;
pub mod keys;
pub mod lists;
pub mod serve;

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

/// Prints a value as pretty JSON.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
