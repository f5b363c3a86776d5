//! `warden databases status|sync`: the agentless mode's roles, their health and recent runs,
//! and reconciling them now.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::{Source, block_on, print_json, print_recent_update, unresolved_names};
use warden::base::actor::Actor;
use warden::operations::databases;

#[derive(Subcommand)]
pub enum DatabasesCommand {
    /// Health and recent reconcile runs of every database
    Status {
        /// Recent updates shown per database
        #[arg(long, default_value_t = 5)]
        recent: usize,
        #[arg(long)]
        json: bool,
    },
    /// Reconcile every list mapped on this database into its role now
    Sync { name: String },
}

pub fn run(source: &Source, cmd: DatabasesCommand) -> Result<ExitCode> {
    let warden = source.open()?;
    match cmd {
        DatabasesCommand::Status { recent, json } => {
            let report = databases::statuses(&warden, recent)?;
            if json {
                print_json(&report)?;
                return Ok(ExitCode::SUCCESS);
            }
            for d in &report {
                println!(
                    "{}  {}:{}  roles {}  {:?}",
                    d.database,
                    d.host,
                    d.port,
                    d.roles.join(","),
                    d.status
                );
                for u in &d.recent_updates {
                    print_recent_update(u, false);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DatabasesCommand::Sync { name } => {
            let runs = block_on(databases::sync_now(&warden, &Actor::cli(), &name))??;
            if runs.is_empty() {
                bail!("no list is mapped on database {name:?}");
            }
            let mut failed = false;
            for run in &runs {
                let m = &run.mapping;
                match &run.result {
                    Ok(r) => println!(
                        "{} → {}: granted {}, revoked {}, sessions ended {}, unresolved {}{}",
                        m.list,
                        m.role,
                        r.granted,
                        r.revoked,
                        r.terminated,
                        r.unresolved.len(),
                        unresolved_names(&r.unresolved)
                    ),
                    Err(e) => {
                        failed = true;
                        eprintln!("{} → {}: {e}", m.list, m.role);
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
