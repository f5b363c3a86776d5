//! `warden decide`: one decision in-process from the snapshot the store and configuration
//! give, printed as JSON (exit 0 allow, 1 block, 2 error: the decision depends on a data set
//! that has never loaded — see docs/reference.md, "Cold start and the /v1/authz contract").

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Source;
use warden::decide::{Outcome, Request};

#[derive(Args)]
pub struct DecideArgs {
    /// Database service the session is for
    #[arg(long)]
    service: String,
    /// Database user name (repeatable)
    #[arg(long = "db-user", value_name = "USER")]
    db_user: Vec<String>,
    #[arg(long, value_name = "USER")]
    os_user: Option<String>,
    #[arg(long, value_name = "APP")]
    source_app: Option<String>,
    #[arg(long, value_name = "IP")]
    client_ip: Option<String>,
}

pub fn run(source: &Source, args: &DecideArgs) -> Result<ExitCode> {
    let warden = source.open()?;
    let request = Request {
        service: &args.service,
        db_user: args.db_user.iter().map(String::as_str).collect(),
        os_user: args.os_user.as_deref(),
        source_app: args.source_app.as_deref(),
        client_ip: args.client_ip.as_deref(),
    };
    let snapshot = warden.engine().load();
    let decision = warden.decide(&snapshot, &request);
    let mut out = Vec::new();
    snapshot.render_decision(&decision, &mut out);
    println!("{}", String::from_utf8_lossy(&out));
    Ok(match decision.outcome {
        Outcome::Allow => ExitCode::SUCCESS,
        Outcome::Block => ExitCode::from(1),
        Outcome::Error => {
            eprintln!(
                "warden: no decision: data set(s) {} never loaded (not from the directory, not from persisted rows)",
                snapshot.unknown_data_sets(&decision).join(", ")
            );
            ExitCode::from(2)
        }
    })
}
