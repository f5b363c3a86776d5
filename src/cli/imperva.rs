//! `warden imperva status|push`: the Imperva MX push from the shell, through the same
//! operations as HTTP.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::{Source, block_on, print_json};
use warden::base::actor::Actor;
use warden::operations::imperva;

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

pub fn run(source: &Source, cmd: ImpervaCommand) -> Result<ExitCode> {
    let warden = source.open()?;
    match cmd {
        ImpervaCommand::Status => print_json(&imperva::status(&warden)?)?,
        ImpervaCommand::Push { full, dry_run } => {
            let plans = block_on(imperva::push_now(&warden, &Actor::cli(), full, dry_run))??;
            print_json(&plans)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
