//! `warden accounts show NAME`: why an account is blocked, asked by any of its names —
//! the account, its list memberships and releases, the data-set rows and policies that hold
//! it, the decision for a service, and each enforcement surface with the time the block
//! landed there.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::{Source, print_json};
use warden::base::time::format_rfc3339;
use warden::operations::accounts::{self, Provenance};

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// Show the account a name names and why it is blocked (any spelling: CORP\alice,
    /// alice@corp.example.test, …)
    Show {
        name: String,
        /// Also the decision for this service
        #[arg(long)]
        service: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub fn run(source: &Source, cmd: AccountsCommand) -> Result<ExitCode> {
    let warden = source.open()?;
    match cmd {
        AccountsCommand::Show {
            name,
            service,
            json,
        } => {
            let answer = accounts::provenance(&warden, &name, service.as_deref())
                .with_context(|| format!("cannot show the account {name:?}"))?;
            if json {
                print_json(&answer)?;
            } else {
                print!("{}", explain(&answer));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn when_ms(ms: i64) -> String {
    format_rfc3339(ms.div_euclid(1000))
}

fn expiry(at: Option<i64>) -> String {
    at.map_or_else(|| "never".to_owned(), format_rfc3339)
}

/// The answer as a person reads it, hop by hop.
fn explain(p: &Provenance) -> String {
    let a = &p.account;
    let mut out = format!(
        "{}  (account {}, resolved by {}{})\n",
        a.canonical,
        a.key,
        a.resolution.as_str(),
        a.dn.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
    );
    out.push_str(&format!("  names: {}\n", a.names.join(", ")));
    if !p.known {
        out.push_str("  warden has never listed this account\n");
    }
    for l in &p.lists {
        out.push_str(&format!(
            "  on list {:?} ({}) since {}, expires {}{}\n",
            l.list,
            format!("{:?}", l.state).to_lowercase(),
            format_rfc3339(l.added_at),
            expiry(l.expires_at),
            l.expiry_set_by
                .as_ref()
                .map(|b| format!(" (set by {b})"))
                .unwrap_or_default()
        ));
        for m in &l.memberships {
            out.push_str(&format!(
                "    {} {:?} — {} from {} at {}, as {}, expires {}\n",
                m.incident.as_deref().unwrap_or("(no incident)"),
                m.reason,
                m.added_by,
                m.source.as_deref().unwrap_or("?"),
                format_rfc3339(m.added_at),
                m.principal,
                expiry(m.expires_at)
            ));
        }
    }
    for m in &p.released {
        out.push_str(&format!(
            "  released from {:?} by {} at {}: {:?} (listed as {} by {}, {})\n",
            m.list,
            m.released_by.as_deref().unwrap_or("?"),
            m.released_at.map(format_rfc3339).unwrap_or_default(),
            m.release_reason.as_deref().unwrap_or(""),
            m.principal,
            m.added_by,
            m.incident.as_deref().unwrap_or("no incident")
        ));
    }
    for r in &p.rows {
        out.push_str(&format!(
            "  data set {:?} holds {}: {}\n",
            r.data_set, r.key, r.how
        ));
    }
    for pol in &p.policies {
        out.push_str(&format!(
            "  policy {:?} ({}, {}{}) over {} on services {}{}\n",
            pol.policy,
            pol.action,
            pol.severity,
            if pol.enabled { "" } else { ", disabled" },
            pol.data_sets.join(", "),
            pol.services.join(", "),
            if pol.blocks { ": blocks it" } else { "" }
        ));
    }
    if let Some(d) = &p.decision {
        out.push_str(&format!(
            "  decision for {} on {}: {}{}\n",
            d.db_user,
            d.service,
            d.decision,
            if d.matched.is_empty() {
                String::new()
            } else {
                format!(" ({})", d.matched.join(", "))
            }
        ));
    }
    for s in &p.surfaces {
        let since = s
            .since_ms
            .map(|t| format!(" since {}", when_ms(t)))
            .unwrap_or_default();
        let now = match (s.holds_now, &s.note) {
            (Some(true), _) => "; the directory holds it now".to_owned(),
            (Some(false), _) => "; the directory does NOT hold it now".to_owned(),
            (None, Some(n)) => format!("; {n}"),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "  {} {}: {}{since} — {}{now}\n",
            s.surface.as_str(),
            s.target,
            s.state,
            s.detail
        ));
    }
    if p.lists.is_empty() && p.rows.is_empty() {
        out.push_str("  nothing holds it: no list, no data set row\n");
    }
    out
}
