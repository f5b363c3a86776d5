//! `warden incidents …` and `warden alerts ingest`: the respond routes from the shell, through
//! the same [`warden::respond`] functions (and audit records) as HTTP.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;

use warden::config::Config;
use warden::respond::{self, Actor, Alert, IncidentRequest, ResponseRequest};
use warden::runtime::Warden;
use warden::store::incidents::parse_incident_ref;

use crate::keys_cmd::cli_actor;

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

fn actor() -> Actor {
    Actor {
        name: cli_actor(),
        source: Some("cli".to_owned()),
    }
}

fn print(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn incident_id(text: &str) -> Result<i64> {
    parse_incident_ref(text).ok_or_else(|| anyhow!("{text:?} is not an incident id (INC-17)"))
}

pub fn incidents(config: Config, cmd: IncidentsCommand) -> Result<ExitCode> {
    let warden = Warden::open(config).context("cannot load warden state")?;
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
            print(&respond::create_incident(&warden, &actor(), &req)?)?;
        }
        IncidentsCommand::List { limit } => {
            print(&warden.store().incidents(limit)?)?;
        }
        IncidentsCommand::Show { id } => {
            print(&respond::read_incident(&warden, incident_id(&id)?)?)?;
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
            print(&respond::respond(
                &warden,
                &actor(),
                incident_id(&id)?,
                &req,
            )?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn alerts(config: Config, cmd: AlertsCommand) -> Result<ExitCode> {
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
    let warden = Warden::open(config).context("cannot load warden state")?;
    print(&respond::ingest_alert(&warden, &actor(), &alert)?)?;
    Ok(ExitCode::SUCCESS)
}
