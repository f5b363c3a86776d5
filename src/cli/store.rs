//! `warden store migrate`: copy a SQLite store into the PostgreSQL store `[store] url` names,
//! so that several replicas can share what one warden has built up.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::Source;
use warden::store::Store;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy every record of a SQLite store into the (new, empty) PostgreSQL store of
    /// [store] url
    Migrate {
        /// The SQLite store to copy [default: [store] path, or --store]
        #[arg(long, value_name = "PATH")]
        from: Option<PathBuf>,
    },
}

pub fn run(source: &Source, command: StoreCommand) -> Result<ExitCode> {
    let StoreCommand::Migrate { from } = command;
    let config = source.load()?;
    let Some(pg) = &config.store.postgres else {
        bail!("[store] has no url: name the PostgreSQL store to migrate into");
    };
    let from = from.unwrap_or_else(|| config.store.path.clone());
    if !from.exists() {
        bail!("no SQLite store at {}", from.display());
    }
    let sqlite = Store::open_with(&from, config.store.allow_readable)
        .with_context(|| format!("cannot open {}", from.display()))?;
    let target = Store::open_postgres(pg).context("cannot open the PostgreSQL store")?;
    let copied = sqlite
        .copy_into(&target)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (table, rows) in &copied.tables {
        println!("{table:<16} {rows}");
    }
    println!(
        "copied {} into {} (revision {})",
        from.display(),
        pg.url,
        target.revision()
    );
    Ok(ExitCode::SUCCESS)
}
