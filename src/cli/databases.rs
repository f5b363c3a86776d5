//! `warden databases status|sync`: the agentless mode's roles, their health and recent runs,
//! and reconciling them now.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::{Source, block_on, print_json};
use warden::base::actor::Actor;
use warden::base::time::format_rfc3339;
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
                    println!(
                        "  {} {:<24} +{} -{} unresolved {} {}ms{}",
                        format_rfc3339(u.started_at_ms / 1000),
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
                        if r.unresolved.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", r.unresolved.join(", "))
                        }
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
