//! `warden directories status|sync` (alias `devices`, deprecated) and `warden mappings
//! check`: directory status, push now, and what the next push of each mapping would do.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::{Source, block_on, print_json, print_recent_update, unresolved_names};
use warden::base::actor::Actor;
use warden::operations::directories;

#[derive(Subcommand)]
pub enum DirectoriesCommand {
    /// Health and recent updates of every directory
    Status {
        /// Recent updates shown per directory
        #[arg(long, default_value_t = 5)]
        recent: usize,
        #[arg(long)]
        json: bool,
    },
    /// Push every list mapped to this directory into its group now
    Sync { name: String },
}

#[derive(Subcommand)]
pub enum MappingsCommand {
    /// Check that each mapped group exists and show what the next sync would change
    /// (on a first sync: how many current members it will remove)
    Check {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(source: &Source, cmd: DirectoriesCommand) -> Result<ExitCode> {
    let warden = source.open()?;
    match cmd {
        DirectoriesCommand::Status { recent, json } => {
            let report = directories::statuses(&warden, recent)?;
            if json {
                print_json(&report)?;
                return Ok(ExitCode::SUCCESS);
            }
            for d in &report {
                match &d.domain {
                    Some(domain) => {
                        println!("{}  {}  {domain}  {:?}", d.directory, d.url, d.status)
                    }
                    None => println!("{}  {}  {:?}", d.directory, d.url, d.status),
                }
                for u in &d.recent_updates {
                    print_recent_update(u, true);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DirectoriesCommand::Sync { name } => {
            let runs = block_on(directories::sync_now(&warden, &Actor::cli(), &name))??;
            if runs.is_empty() {
                bail!("no list is mapped to directory {name:?}");
            }
            let mut failed = false;
            for run in &runs {
                let m = &run.mapping;
                match &run.result {
                    Ok(r) => println!(
                        "{} → {}: added {}, removed {}, unresolved {}{}",
                        m.list,
                        m.group_dn,
                        r.added,
                        r.removed,
                        r.unresolved.len(),
                        unresolved_names(&r.unresolved)
                    ),
                    Err(e) => {
                        failed = true;
                        eprintln!("{} → {}: {e}", m.list, m.group_dn);
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

pub fn mappings(source: &Source, cmd: MappingsCommand) -> Result<ExitCode> {
    let MappingsCommand::Check { json } = cmd;
    let warden = source.open()?;
    let checks = block_on(directories::check_mappings(&warden))??;
    let mut failed = false;
    let mut report = Vec::new();
    for check in &checks {
        let m = &check.mapping;
        match &check.plan {
            Ok(plan) => {
                if !json {
                    println!(
                        "{} → {}: group exists with {} members; next sync adds {}, removes {}{}{}{}",
                        m.list,
                        m.group_dn,
                        plan.current_members,
                        plan.add.len(),
                        plan.remove.len(),
                        if plan.first_sync {
                            " (first sync: warden owns the group)"
                        } else {
                            ""
                        },
                        if plan.unresolved.is_empty() {
                            String::new()
                        } else {
                            format!("; unresolved: {}", plan.unresolved.join(", "))
                        },
                        if plan.other_domain.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; other domains' (not looked up here): {}",
                                plan.other_domain.join(", ")
                            )
                        }
                    );
                }
                report.push(serde_json::json!({"list": m.list, "group_dn": m.group_dn, "ok": true, "plan": plan}));
            }
            Err(e) => {
                failed = true;
                if !json {
                    eprintln!("{} → {}: {e}", m.list, m.group_dn);
                }
                report.push(serde_json::json!({"list": m.list, "group_dn": m.group_dn, "ok": false, "error": e.to_string()}));
            }
        }
    }
    if json {
        print_json(&report)?;
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
