//! `warden incidents …` and `warden alerts ingest`: the respond routes from the shell, through
//! the same operations (and audit records) as HTTP.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;

use super::{Source, print_json};
use warden::base::actor::Actor;
use warden::operations::incidents::{self, Alert, IncidentRequest, ResponseRequest};
use warden::store::incidents::parse_incident_ref;

#[derive(Subcommand)]
pub enum IncidentsCommand {
    /// Open an incident
    Create {
        #[arg(long)]
        title: String,
        /// informative, low, medium, high or critical
        #[arg(long)]
        severity: String,
        /// A user the incident is about (repeatable)
        #[arg(long = "user", value_name = "PRINCIPAL")]
        users: Vec<String>,
        /// An IP address the incident is about (repeatable)
        #[arg(long = "ip", value_name = "ADDRESS")]
        ips: Vec<String>,
        #[arg(long, default_value = "manual")]
        source: String,
    },
    /// The most recent incidents
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One incident with its responses
    Show { id: String },
    /// Put some or all of an incident's users on a list
    Respond {
        id: String,
        #[arg(long)]
        list: String,
        /// Only this user of the incident (repeatable) [default: all of them]
        #[arg(long = "user", value_name = "PRINCIPAL")]
        users: Vec<String>,
        #[arg(long)]
        reason: String,
        /// When the users leave the list (RFC 3339)
        #[arg(long, conflicts_with = "expires_in", value_name = "TIME")]
        expires: Option<String>,
        /// How long the users stay on the list (e.g. 24h, 7d)
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AlertsCommand {
    /// Ingest one alert as JSON (id, source, severity, users, ips, fields) from FILE or stdin
    Ingest { file: Option<PathBuf> },
}

fn incident_id(text: &str) -> Result<i64> {
    parse_incident_ref(text).ok_or_else(|| anyhow!("{text:?} is not an incident id (INC-17)"))
}

pub fn incidents(source: &Source, cmd: IncidentsCommand) -> Result<ExitCode> {
    let warden = source.open()?;
    let actor = Actor::cli();
    match cmd {
        IncidentsCommand::Create {
            title,
            severity,
            users,
            ips,
            source,
        } => {
            let req = IncidentRequest {
                title,
                severity,
                users,
                ips,
                source,
            };
            print_json(&incidents::create_incident(&warden, &actor, &req)?)?;
        }
        IncidentsCommand::List { limit } => print_json(&warden.store().incidents(limit)?)?,
        IncidentsCommand::Show { id } => {
            print_json(&incidents::read_incident(&warden, incident_id(&id)?)?)?;
        }
        IncidentsCommand::Respond {
            id,
            list,
            users,
            reason,
            expires,
            expires_in,
        } => {
            let req = ResponseRequest {
                list,
                users: (!users.is_empty()).then_some(users),
                reason,
                expires_at: expires,
                expires_in,
            };
            let record = incidents::respond(&warden, &actor, incident_id(&id)?, &req)?;
            print_json(&record)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn alerts(source: &Source, cmd: AlertsCommand) -> Result<ExitCode> {
    let AlertsCommand::Ingest { file } = cmd;
    let text = match &file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the alert from stdin")?;
            s
        }
    };
    let alert: Alert = serde_json::from_str(&text).context("the alert is not valid JSON")?;
    let warden = source.open()?;
    print_json(&incidents::ingest_alert(&warden, &Actor::cli(), &alert)?)?;
    Ok(ExitCode::SUCCESS)
}
