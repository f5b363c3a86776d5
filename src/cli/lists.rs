//! `warden lists add|remove|show|release-expiry`: user lists from the shell, through the same operations
//! (validation, audit) as HTTP, against the store a running `serve` reads.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::{Source, print_json};
use warden::base::actor::{Actor, shell_user};
use warden::base::time::format_rfc3339;
use warden::operations::lists::{self, MemberRequest};
use warden::store::Added;

#[derive(Subcommand)]
pub enum ListsCommand {
    /// Put a principal on a list (DOMAIN\user, user@realm, sAMAccountName or DN)
    Add {
        list: String,
        principal: String,
        /// Why the principal is on the list
        #[arg(long, default_value = "")]
        reason: String,
        /// Incident the principal comes from
        #[arg(long)]
        incident: Option<String>,
        /// When the principal leaves the list (RFC 3339, e.g. 2026-12-01T00:00:00Z)
        #[arg(long, conflicts_with = "expires_in", value_name = "TIME")]
        expires: Option<String>,
        /// How long the principal stays on the list (e.g. 24h, 7d)
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Who adds the principal [default: $SUDO_USER or $USER]
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Release the account a principal names (any spelling) from a list; its memberships
    /// stay in its history with the reason
    Remove {
        list: String,
        principal: String,
        /// Why the account is released
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set a member's expiry explicitly (a later membership lifts it)
    SetExpiry {
        list: String,
        principal: String,
        /// When the member leaves the list (RFC 3339)
        #[arg(long, conflicts_with = "expires_in", value_name = "TIME")]
        expires: Option<String>,
        /// How long from now (e.g. 24h, 7d)
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Release the expiry sweep held for a list (too many members due at once): its members
    /// past their expiry are deactivated now
    ReleaseExpiry { list: String },
    /// Show lists, or the members of one list (expired ones too, until purged)
    Show {
        list: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

pub fn run(source: &Source, cmd: ListsCommand) -> Result<ExitCode> {
    let warden = source.open()?;
    let actor = Actor::cli();
    match cmd {
        ListsCommand::Add {
            list,
            principal,
            reason,
            incident,
            expires,
            expires_in,
            by,
        } => {
            let req = MemberRequest {
                principal: principal.clone(),
                reason,
                incident,
                expires_at: expires,
                expires_in,
                added_by: Some(by.unwrap_or_else(shell_user)),
            };
            let done = lists::add_member(&warden, &actor, &list, &req)
                .with_context(|| format!("cannot add {principal:?} to {list:?}"))?;
            let verb = match done.added {
                Added::New => "added to",
                Added::Again => "already on (another membership added to)",
                Added::Reactivated => "re-activated on",
            };
            let account = &done.account.canonical;
            let as_typed = if *account == principal {
                String::new()
            } else {
                format!(" (as {principal})")
            };
            println!("{account}{as_typed} {verb} {list:?}");
        }
        ListsCommand::Remove {
            list,
            principal,
            reason,
        } => match lists::remove_member(&warden, &actor, &list, &principal, &reason)
            .with_context(|| format!("cannot release {principal:?} from {list:?}"))?
        {
            Some(r) => println!(
                "{} released from {list:?} ({} membership(s))",
                r.principal, r.memberships
            ),
            None => println!("{principal} names no member of {list:?}"),
        },
        ListsCommand::SetExpiry {
            list,
            principal,
            expires,
            expires_in,
        } => {
            lists::set_member_expiry(
                &warden,
                &actor,
                &list,
                &principal,
                expires.as_deref(),
                expires_in.as_deref(),
            )
            .with_context(|| format!("cannot set the expiry of {principal:?} on {list:?}"))?;
            println!("expiry of {principal} on {list:?} set");
        }
        ListsCommand::ReleaseExpiry { list } => {
            let done = lists::release_expiry_hold(&warden, &actor, &list)
                .with_context(|| format!("cannot release the expiry sweep of {list:?}"))?;
            println!(
                "released the expiry sweep of {list:?}: {} member(s) deactivated",
                done.len()
            );
        }
        ListsCommand::Show { list: None, json } => {
            let lists = warden.store().lists()?;
            if json {
                print_json(&lists)?;
            } else {
                for l in lists {
                    let held = l.expiry_hold.as_ref().map_or(String::new(), |h| {
                        format!("  EXPIRY HELD: {} of {} due", h.due, h.active)
                    });
                    println!(
                        "{:<32} {:>8} members {:>6} expired  {}{held}",
                        l.name, l.members, l.expired, l.description
                    );
                }
            }
        }
        ListsCommand::Show {
            list: Some(list),
            json,
        } => {
            let members = warden.store().members(&list)?;
            if json {
                print_json(&members)?;
            } else {
                println!(
                    "{:<40} {:<8} {:<20} {:<16} {:<21} REASON",
                    "ACCOUNT", "STATE", "ADDED AT", "INCIDENTS", "EXPIRES"
                );
                for m in members {
                    let state = if m.is_active() { "active" } else { "expired" };
                    let incidents = if m.incidents.is_empty() {
                        "-".to_owned()
                    } else {
                        m.incidents.join(",")
                    };
                    println!(
                        "{:<40} {state:<8} {:<20} {incidents:<16} {:<21} {}",
                        m.principal,
                        format_rfc3339(m.added_at),
                        m.expires_at.map_or("-".to_string(), format_rfc3339),
                        m.reason
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
