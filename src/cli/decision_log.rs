//! `warden decision-log`: the recorded decisions, read straight from the log's files (no
//! server needed), by principal — any spelling of the account —, time range, service and
//! outcome. "Was alice blocked at 14:02 on finance, and by what?"

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{Source, print_json};
use warden::base::time::{format_rfc3339, parse_rfc3339};
use warden::events::decision_log::{Query, query_config};

#[derive(Args)]
pub struct DecisionLogArgs {
    /// The database user, in any spelling of its account (CORP\alice, alice@corp.example.test)
    #[arg(long)]
    principal: Option<String>,
    /// From this time on (RFC 3339, e.g. 2026-03-02T14:00:00Z)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before this time (RFC 3339)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this service
    #[arg(long)]
    service: Option<String>,
    /// Only this outcome: allow, block or error
    #[arg(long, value_parser = ["allow", "block", "error"])]
    decision: Option<String>,
    /// At most this many decisions, oldest first
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn run(source: &Source, a: &DecisionLogArgs) -> Result<ExitCode> {
    let config = source.load()?;
    if !config.decision_log.enabled {
        bail!("the decision log is off ([decision_log] enabled = false)");
    }
    let time = |flag: &str, t: &Option<String>| -> Result<Option<i64>> {
        t.as_deref()
            .map(|t| {
                parse_rfc3339(t)
                    .map(|s| s.saturating_mul(1000))
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("--{flag} {t:?}"))
            })
            .transpose()
    };
    let q = Query {
        since_ms: time("since", &a.since)?,
        until_ms: time("until", &a.until)?,
        service: a.service.clone(),
        decision: a.decision.clone(),
        limit: a.limit,
    };
    let dir = config.decision_log_dir();
    let (found, more) = query_config(&config, a.principal.as_deref(), &q)
        .with_context(|| format!("reading the decision log in {}", dir.display()))?;
    if a.json {
        print_json(&serde_json::json!({ "decisions": found, "truncated": more }))?;
        return Ok(ExitCode::SUCCESS);
    }
    for d in &found {
        let by: Vec<String> = d
            .matched
            .iter()
            .map(|m| format!("{:?} ({})", m.policy, m.action))
            .collect();
        println!(
            "{}.{:03}  {:<5}  {:<20}  {:<16}  {}  [{} rev {}]  {}",
            format_rfc3339(d.at_ms.div_euclid(1000)).trim_end_matches('Z'),
            d.at_ms.rem_euclid(1000),
            d.decision,
            d.db_user.join(","),
            d.service,
            if by.is_empty() {
                "-".to_owned()
            } else {
                by.join(", ")
            },
            d.snapshot_version,
            d.snapshot_revision,
            d.id,
        );
    }
    if more {
        eprintln!("(more decisions match; narrow the range or raise --limit)");
    }
    Ok(ExitCode::SUCCESS)
}
