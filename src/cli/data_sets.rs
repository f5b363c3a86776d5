//! `warden data-sets test-query|refresh|accept` (alias `datasets`, deprecated): LDAP data sets
//! from the shell, through the same operations as HTTP.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::{Source, block_on, print_json};
use warden::base::actor::Actor;
use warden::operations::{OperationError, data_sets};

#[derive(Subcommand)]
pub enum DataSetsCommand {
    /// Run a data set's LDAP query and mappings without applying; show sample rows and counts
    TestQuery {
        name: String,
        /// Sample rows shown
        #[arg(long, default_value_t = 10)]
        sample: usize,
    },
    /// Refresh a data set from LDAP now (subject to the shrink guard)
    Refresh { name: String },
    /// Apply the refresh the shrink guard is holding, named by its id (shown by `refresh`)
    Accept {
        name: String,
        /// The held refresh's id: a newer hold than the one reviewed is refused
        #[arg(long)]
        id: Option<String>,
    },
}

pub fn run(source: &Source, cmd: DataSetsCommand) -> Result<ExitCode> {
    let warden = source.open()?;
    match cmd {
        DataSetsCommand::TestQuery { name, sample } => {
            let q = block_on(data_sets::test_query(&warden, &name))??;
            print_json(&q.report(sample))?;
        }
        DataSetsCommand::Refresh { name } => {
            let outcome = block_on(data_sets::refresh(&warden, &Actor::cli(), &name))??;
            print_json(&outcome)?;
        }
        DataSetsCommand::Accept { name, id } => {
            match data_sets::accept(&warden, &Actor::cli(), &name, id.as_deref()) {
                Ok(rows) => println!("accepted: {name:?} now has {rows} rows"),
                Err(OperationError::Conflict(why)) => {
                    eprintln!("{why}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
