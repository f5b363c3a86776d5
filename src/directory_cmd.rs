//! CLI commands that talk to directories: device status and sync, mapping checks, data set
//! test-query, refresh and accept. Each runs once, in-process, against the configured store;
//! a running `serve` picks up what they commit through the store.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

use warden::base::time::format_rfc3339;
use warden::config::{Config, Source};
use warden::directory::Directory;
use warden::runtime::Warden;
use warden::sync::{directory_statuses, pull, push};

use crate::{DatasetsCommand, DevicesCommand, MappingsCommand};

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f))
}

fn device(warden: &Warden, name: &str) -> Result<Arc<Directory>> {
    warden
        .devices()
        .get(name)
        .cloned()
        .ok_or_else(|| anyhow!("no directory named {name:?} in the configuration"))
}

pub fn devices(config: Config, cmd: DevicesCommand) -> Result<ExitCode> {
    let warden = Warden::open(config).context("cannot load warden state")?;
    match cmd {
        DevicesCommand::Status { recent, json } => {
            let report = directory_statuses(&warden, recent as usize)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            for d in &report {
                println!("{}  {}  {:?}", d.directory, d.url, d.status);
                for u in &d.recent_updates {
                    println!(
                        "  {} {:<4} {:<40} +{} -{} unresolved {} {}ms{}",
                        format_rfc3339(u.started_at_ms / 1000),
                        u.kind,
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
        DevicesCommand::Sync { name } => {
            let dev = device(&warden, &name)?;
            let mappings: Vec<_> = warden
                .config()
                .mappings
                .iter()
                .filter(|m| m.directory == name)
                .cloned()
                .collect();
            if mappings.is_empty() {
                bail!("no list is mapped to directory {name:?}");
            }
            let mut failed = false;
            for m in &mappings {
                let (update, result) = block_on(push::run(&dev, warden.store(), m))?;
                match result {
                    Ok(r) => println!(
                        "{} → {}: added {}, removed {}, unresolved {}{}",
                        m.list,
                        m.group_dn,
                        r.added,
                        r.removed,
                        r.unresolved.len(),
                        if r.unresolved.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", r.unresolved.join(", "))
                        }
                    ),
                    Err(e) => {
                        failed = true;
                        eprintln!("{} → {}: {e}", m.list, m.group_dn);
                    }
                }
                drop(update);
            }
            Ok(if failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

pub fn mappings(config: Config, cmd: MappingsCommand) -> Result<ExitCode> {
    let MappingsCommand::Check { json } = cmd;
    let warden = Warden::open(config).context("cannot load warden state")?;
    let mut failed = false;
    let mut report = Vec::new();
    for m in &warden.config().mappings {
        let dev = device(&warden, &m.directory)?;
        match block_on(push::plan(&dev, warden.store(), m))? {
            Ok(plan) => {
                if !json {
                    println!(
                        "{} → {}: group exists with {} members; next sync adds {}, removes {}{}{}",
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
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn datasets(config: Config, cmd: DatasetsCommand) -> Result<ExitCode> {
    let warden = Arc::new(Warden::open(config).context("cannot load warden state")?);
    let ldap_device = |name: &str| -> Result<(warden::config::DataSetConfig, Arc<Directory>)> {
        let config = warden.config();
        let ds = config
            .data_set(name)
            .ok_or_else(|| anyhow!("no data set named {name:?} in the configuration"))?;
        let Source::Ldap(source) = &ds.source else {
            bail!("data set {name:?} is not filled from LDAP");
        };
        Ok((ds.clone(), device(&warden, &source.directory)?))
    };
    match cmd {
        DatasetsCommand::TestQuery { name, sample } => {
            let (ds, dev) = ldap_device(&name)?;
            let q = block_on(pull::query(&dev, &ds))??;
            println!("{}", serde_json::to_string_pretty(&q.report(sample))?);
            Ok(ExitCode::SUCCESS)
        }
        DatasetsCommand::Refresh { name } => {
            let (ds, dev) = ldap_device(&name)?;
            let (_, result) = block_on(pull::refresh(&warden, &dev, &ds))?;
            let outcome = result?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(ExitCode::SUCCESS)
        }
        DatasetsCommand::Accept { name } => match pull::accept(&warden, &name)? {
            Some(rows) => {
                println!("accepted: {name:?} now has {rows} rows");
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no refresh of {name:?} is held");
                Ok(ExitCode::from(1))
            }
        },
    }
}
