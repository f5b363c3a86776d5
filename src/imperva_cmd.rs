//! `warden imperva status|push`: the Imperva MX push from the shell, through the same
//! [`warden::sync::imperva`] functions as HTTP.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use warden::config::Config;
use warden::runtime::Warden;
use warden::sync::imperva;

use crate::keys_cmd::audit_cli;

#[derive(Subcommand)]
pub enum ImpervaCommand {
    /// Push status per data set: last push, mode, records sent, last error
    Status,
    /// Push every configured data set to the MX now
    Push {
        /// Replace the MX data set's records instead of sending differences
        #[arg(long)]
        full: bool,
        /// Say what would be sent; contact nothing
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn imperva(config: Config, cmd: ImpervaCommand) -> Result<ExitCode> {
    let warden = Warden::open(config).context("cannot load warden state")?;
    match cmd {
        ImpervaCommand::Status => {
            let statuses = imperva::status(&warden)?;
            println!("{}", serde_json::to_string_pretty(&statuses)?);
        }
        ImpervaCommand::Push { full, dry_run } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let plans = runtime.block_on(imperva::push_now(&warden, full, dry_run))?;
            if !dry_run {
                audit_cli(
                    warden.store(),
                    "imperva.push",
                    "mx",
                    serde_json::to_value(&plans)?,
                )?;
            }
            println!("{}", serde_json::to_string_pretty(&plans)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
