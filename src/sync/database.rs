//! The agentless mode: reconcile a list into the members of a PostgreSQL role.
//!
//! For sites that will not put the gate ([`crate::gate`]) in the data path, warden owns one
//! role on a configured server (`[[databases]]`, e.g. `warden_blocked`) the way it owns an AD
//! group's `member` attribute: a run maps the list's principals to role names through the
//! mapping's pattern (`CORP\alice` → `alice`), reads the role's members from
//! `pg_auth_members`, grants and revokes the difference one statement each, and ends the open
//! sessions of every member it just granted (`pg_terminate_backend`). A `pg_hba.conf` line
//! (`host all +warden_blocked 0.0.0.0/0 reject`, first) then refuses their new logins.
//!
//! Like a push, the first sync of a mapping overwrites: members of the role the list lacks are
//! revoked. A principal the pattern does not map, or whose role does not exist, is
//! *unresolved* (reported, never an error that stops the others). A missing managed role is
//! an error: nothing is changed. Role names match exactly, else case-insensitively when exactly
//! one role matches that way (AD names are case-insensitive, PostgreSQL's are not).
//!
//! On PostgreSQL 16 and later a grant is made `WITH INHERIT TRUE`: from 16 `+role` in
//! `pg_hba.conf` only matches members that inherit the role, and a `NOINHERIT` member would
//! otherwise get a non-inheriting grant and log in.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

use crate::base::identity::Identity;
use crate::base::time::now_ms;
use crate::config::{DatabaseConfig, RoleMappingConfig, UpstreamTls};
use crate::events::{Event, Events};
use crate::store::{Member, RecentUpdate, Store, StoreError, SurfaceEvent, SurfaceKind};

/// The kind of the recent updates this run records.
pub const KIND: &str = "reconcile";

/// Why a database run failed before or while changing anything. None carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("database {database}: {message}")]
    Connect { database: String, message: String },
    #[error("database {database}: {message}")]
    Query { database: String, message: String },
    #[error(
        "database {database}: role {role:?} does not exist; create it (warden only manages its \
         members) or fix databases.roles.role"
    )]
    RoleNotFound { database: String, role: String },
    #[error("no database named {0:?} in the configuration")]
    NoSuchDatabase(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a run would change (or did).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RolePlan {
    pub current_members: usize,
    pub grant: Vec<String>,
    pub revoke: Vec<String>,
    pub unresolved: Vec<String>,
    pub first_sync: bool,
    /// The account each role name (lower-cased) maps from, where the block lands.
    #[serde(skip)]
    pub accounts: HashMap<String, String>,
    /// Members the run keeps (wanted and members already).
    #[serde(skip)]
    pub held: Vec<String>,
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoleReport {
    pub granted: usize,
    pub revoked: usize,
    /// Sessions of newly granted members ended.
    pub terminated: usize,
    pub unresolved: Vec<String>,
    /// Statements the server refused one by one, as "member: message".
    pub refused: Vec<String>,
    /// The roles granted and revoked: the surface changes the run reports as events.
    #[serde(skip)]
    pub granted_members: Vec<String>,
    #[serde(skip)]
    pub revoked_members: Vec<String>,
}

/// The key under which a mapping's first sync is remembered (beside AD mappings').
pub fn state_key(database: &DatabaseConfig, mapping: &RoleMappingConfig) -> String {
    format!("postgres:{}/{}", database.name, mapping.role)
}

/// `"name"` with embedded quotes doubled: a role name as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn query_error(db: &DatabaseConfig, e: &tokio_postgres::Error) -> DatabaseError {
    DatabaseError::Query {
        database: db.name.clone(),
        message: db_message(e),
    }
}

/// The server's message when there is one (tokio-postgres' Display says only "db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// A connection as the configured user; its connection task ends when the client is dropped.
pub async fn connect(db: &DatabaseConfig) -> Result<Client, DatabaseError> {
    let fail = |message: String| DatabaseError::Connect {
        database: db.name.clone(),
        message,
    };
    let password = db.password.read().map_err(|e| fail(e.to_string()))?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&db.host)
        .port(db.port)
        .dbname(&db.dbname)
        .user(&db.user)
        .password(password.expose())
        .application_name("warden")
        .connect_timeout(db.connect_timeout);
    let timeout = db.connect_timeout + Duration::from_secs(1);
    match &db.tls {
        UpstreamTls::Verify(ca) => {
            let ca = ca.clone();
            let tls = tokio::task::spawn_blocking(move || crate::directory::tls_config(Some(&ca)))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(e.to_string()))?;
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
            let (client, conn) = tokio::time::timeout(timeout, config.connect(tls))
                .await
                .map_err(|_| fail("connect timed out".into()))?
                .map_err(|e| fail(db_message(&e)))?;
            tokio::spawn(conn);
            Ok(client)
        }
        UpstreamTls::Plain => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, conn) =
                tokio::time::timeout(timeout, config.connect(tokio_postgres::NoTls))
                    .await
                    .map_err(|_| fail("connect timed out".into()))?
                    .map_err(|e| fail(db_message(&e)))?;
            tokio::spawn(conn);
            Ok(client)
        }
    }
}

/// The role name a member's account maps to on `db`: the mapping's pattern tried on each of
/// the account's names in turn (canonical first), so that a member listed by its UPN maps
/// like one listed as `DOMAIN\user`. `None` for an account of another domain than the
/// server's (when it says one), or one no name of which the pattern maps.
fn role_name(
    db: &DatabaseConfig,
    mapping: &RoleMappingConfig,
    member: &Member,
    identity: &Identity,
) -> Option<String> {
    if let Some(domain) = &db.domain
        && identity
            .domain_of(&member.principal)
            .is_some_and(|d| !d.eq_ignore_ascii_case(domain))
    {
        return None;
    }
    std::iter::once(&member.principal)
        .chain(&member.names)
        .find_map(|n| mapping.member.map_one(n).filter(|r| !r.is_empty()))
}

/// The role's members now, by name: `(managed, admins)`. A member holding ADMIN OPTION on the
/// role administers it (on PostgreSQL 15 and earlier that is how warden itself may grant it,
/// and it makes warden a member) and is never managed: not revoked, not counted.
async fn role_members(
    client: &Client,
    db: &DatabaseConfig,
    role: &str,
) -> Result<(Vec<String>, HashSet<String>), DatabaseError> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .map_err(|e| query_error(db, &e))?;
    if exists.is_none() {
        return Err(DatabaseError::RoleNotFound {
            database: db.name.clone(),
            role: role.to_owned(),
        });
    }
    let rows = client
        .query(
            "SELECT m.rolname::text, bool_or(a.admin_option) FROM pg_auth_members a \
             JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
             WHERE r.rolname = $1 GROUP BY m.rolname ORDER BY 1",
            &[&role],
        )
        .await
        .map_err(|e| query_error(db, &e))?;
    let mut members = Vec::new();
    let mut admins = HashSet::new();
    for row in &rows {
        let (name, admin): (String, bool) = (row.get(0), row.get(1));
        if admin {
            admins.insert(name);
        } else {
            members.push(name);
        }
    }
    Ok((members, admins))
}

/// Works out what a run would change, without changing anything.
pub async fn plan(
    client: &Client,
    db: &DatabaseConfig,
    store: &Store,
    mapping: &RoleMappingConfig,
    identity: &Identity,
) -> Result<RolePlan, DatabaseError> {
    let (current, admins) = role_members(client, db, &mapping.role).await?;
    let mut unresolved = Vec::new();
    let mut wanted_names: Vec<(String, String)> = Vec::new();
    let mut accounts = HashMap::new();
    // The list's active members, as the snapshot and the AD push see them: a member past its
    // expiry stays until the sweep deactivates it (a held sweep holds here too).
    for member in store.active_members(&mapping.list)? {
        match role_name(db, mapping, &member, identity) {
            Some(name) => {
                accounts.insert(name.to_lowercase(), member.account);
                wanted_names.push((member.principal, name));
            }
            None => unresolved.push(member.principal),
        }
    }
    let lowered: Vec<String> = wanted_names.iter().map(|(_, n)| n.to_lowercase()).collect();
    let rows = client
        .query(
            "SELECT rolname::text FROM pg_roles WHERE lower(rolname) = ANY($1)",
            &[&lowered],
        )
        .await
        .map_err(|e| query_error(db, &e))?;
    let existing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let exact: HashSet<&str> = existing.iter().map(String::as_str).collect();
    let mut by_lower: HashMap<String, Vec<&str>> = HashMap::new();
    for name in &existing {
        by_lower.entry(name.to_lowercase()).or_default().push(name);
    }
    let mut want: HashSet<String> = HashSet::new();
    for (principal, name) in wanted_names {
        let resolved = if exact.contains(name.as_str()) {
            Some(name)
        } else {
            match by_lower.get(&name.to_lowercase()).map(Vec::as_slice) {
                Some([one]) => Some((*one).to_owned()),
                Some(several) => {
                    // Ambiguous: unresolved, but fail closed — a candidate that is a member
                    // now stays one (never revoke on what warden cannot tell apart).
                    for c in several.iter().filter(|c| current.iter().any(|m| m == *c)) {
                        want.insert((*c).to_owned());
                    }
                    None
                }
                None => None,
            }
        };
        match resolved {
            // An administrator of the role is a member already and is not managed.
            Some(n) if admins.contains(&n) => {}
            // The managed role cannot be its own member, nor warden block itself.
            Some(n) if n != mapping.role && n != db.user => {
                want.insert(n);
            }
            _ => unresolved.push(principal),
        }
    }
    let have: HashSet<&str> = current.iter().map(String::as_str).collect();
    let mut grant: Vec<String> = want
        .iter()
        .filter(|n| !have.contains(n.as_str()))
        .cloned()
        .collect();
    let mut revoke: Vec<String> = current
        .iter()
        .filter(|n| !want.contains(n.as_str()))
        .cloned()
        .collect();
    let held: Vec<String> = want
        .iter()
        .filter(|n| have.contains(n.as_str()))
        .cloned()
        .collect();
    grant.sort_unstable();
    revoke.sort_unstable();
    unresolved.sort_unstable();
    Ok(RolePlan {
        current_members: current.len(),
        grant,
        revoke,
        unresolved,
        first_sync: store
            .mapping_first_synced(&mapping.list, &state_key(db, mapping))?
            .is_none(),
        accounts,
        held,
    })
}

/// The server's version as `server_version_num` (150004 for 15.4).
async fn server_version(client: &Client, db: &DatabaseConfig) -> Result<i32, DatabaseError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| query_error(db, &e))?;
    Ok(row.get(0))
}

/// Reconciles the role's members to the list and ends the sessions of the members granted.
pub async fn reconcile(
    db: &DatabaseConfig,
    store: &Store,
    mapping: &RoleMappingConfig,
    identity: &Identity,
) -> Result<RoleReport, DatabaseError> {
    let client = connect(db).await?;
    let plan = plan(&client, db, store, mapping, identity).await?;
    if plan.first_sync && !plan.revoke.is_empty() {
        tracing::warn!(
            database = %db.name,
            role = %mapping.role,
            revoking = plan.revoke.len(),
            "first sync of this mapping: warden owns the role and revokes members the list lacks"
        );
    }
    let inherit = if server_version(&client, db).await? >= 160_000 {
        " WITH INHERIT TRUE"
    } else {
        ""
    };
    let role = quote_ident(&mapping.role);
    let mut report = RoleReport {
        unresolved: plan.unresolved.clone(),
        ..RoleReport::default()
    };
    let mut granted = Vec::new();
    for member in &plan.grant {
        let sql = format!("GRANT {role} TO {}{inherit}", quote_ident(member));
        match client.batch_execute(&sql).await {
            Ok(()) => granted.push(member.clone()),
            Err(e) => report.refused.push(format!("{member}: {}", db_message(&e))),
        }
    }
    let mut revoked = Vec::new();
    for member in &plan.revoke {
        let sql = format!("REVOKE {role} FROM {}", quote_ident(member));
        match client.batch_execute(&sql).await {
            Ok(()) => revoked.push(member),
            Err(e) => report.refused.push(format!("{member}: {}", db_message(&e))),
        }
    }
    let mut revoked_now = Vec::new();
    if !revoked.is_empty() {
        // A REVOKE of another grantor's grant only warns (PostgreSQL 16+): count what went.
        let (after, _) = role_members(&client, db, &mapping.role).await?;
        for member in revoked {
            if after.contains(member) {
                report.refused.push(format!(
                    "{member}: still a member after REVOKE (granted by another role?)"
                ));
            } else {
                report.revoked += 1;
                revoked_now.push(member.clone());
            }
        }
    }
    report.granted = granted.len();
    report.granted_members.clone_from(&granted);
    if !granted.is_empty() {
        match client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
                &[&granted],
            )
            .await
        {
            Ok(rows) => {
                report.terminated = rows.iter().filter(|r| r.get::<_, bool>(0)).count();
            }
            Err(e) => report
                .refused
                .push(format!("ending sessions: {}", db_message(&e))),
        }
    }
    store.mark_mapping_synced(&mapping.list, &state_key(db, mapping))?;
    record_landings(
        db,
        store,
        mapping,
        &plan,
        &granted,
        &revoked_now,
        report.terminated,
    )?;
    report.revoked_members = revoked_now;
    Ok(report)
}

/// Records where the block landed: the accounts granted the role now (and how many sessions
/// the run ended), and those revoked from it.
fn record_landings(
    db: &DatabaseConfig,
    store: &Store,
    mapping: &RoleMappingConfig,
    plan: &RolePlan,
    granted: &[String],
    revoked: &[String],
    terminated: usize,
) -> Result<(), StoreError> {
    let target = format!("{}/{}", db.name, mapping.role);
    let at = now_ms();
    let event = |name: &String, state, detail: String| {
        plan.accounts
            .get(&name.to_lowercase())
            .map(|key| SurfaceEvent {
                account_key: key.clone(),
                surface: SurfaceKind::Role,
                target: target.clone(),
                state,
                detail,
                at_ms: at,
            })
    };
    let mut events: Vec<SurfaceEvent> = granted
        .iter()
        .filter_map(|n| {
            event(
                n,
                "landed",
                format!(
                    "GRANT {} TO {n} ({terminated} session(s) of this run's grants ended)",
                    mapping.role
                ),
            )
        })
        .collect();
    events.extend(
        revoked
            .iter()
            .filter_map(|n| event(n, "lifted", format!("REVOKE {} FROM {n}", mapping.role))),
    );
    // A member granted before (by an earlier run) and still one: landed, if not recorded yet.
    let recorded = store.surface_states(SurfaceKind::Role, &target)?;
    for (name, key) in &plan.accounts {
        if !granted.iter().any(|g| g.eq_ignore_ascii_case(name))
            && plan.held.iter().any(|h| h.eq_ignore_ascii_case(name))
            && recorded.get(key).map(String::as_str) != Some("landed")
        {
            events.extend(event(name, "landed", format!("member of {}", mapping.role)));
        }
    }
    store.record_surfaces(&events)
}

/// Runs a reconcile, records it as a recent update (kind [`KIND`], target the role)
/// whatever the outcome, and reports each role granted or revoked as an event.
pub async fn run(
    db: &DatabaseConfig,
    store: &Store,
    events: &Events,
    mapping: &RoleMappingConfig,
    identity: &Identity,
) -> (RecentUpdate, Result<RoleReport, DatabaseError>) {
    let started = now_ms();
    let result = reconcile(db, store, mapping, identity).await;
    if let Ok(r) = &result {
        let target = format!("{}/{}", db.name, mapping.role);
        events.emit_all(Event::surface_changes(
            "db_role",
            &target,
            &r.granted_members,
            &r.revoked_members,
        ));
    }
    let update = match &result {
        Ok(r) => RecentUpdate {
            directory: db.name.clone(),
            kind: KIND.into(),
            target: mapping.role.clone(),
            started_at_ms: started,
            duration_ms: now_ms() - started,
            added: r.granted as i64,
            removed: r.revoked as i64,
            unresolved: r.unresolved.clone(),
            error: (!r.refused.is_empty()).then(|| {
                format!(
                    "server refused {} statement(s): {}",
                    r.refused.len(),
                    r.refused.join("; ")
                )
            }),
        },
        Err(e) => RecentUpdate {
            directory: db.name.clone(),
            kind: KIND.into(),
            target: mapping.role.clone(),
            started_at_ms: started,
            duration_ms: now_ms() - started,
            added: 0,
            removed: 0,
            unresolved: Vec::new(),
            error: Some(e.to_string()),
        },
    };
    if let Err(e) = store.record_update(&update) {
        tracing::error!(error = %e, "cannot record database run");
    }
    (update, result)
}

/// A database's status as shown by `databases status` and `GET /v1/databases`.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    pub database: String,
    pub host: String,
    pub port: u16,
    pub roles: Vec<String>,
    pub status: super::Health,
    pub recent_updates: Vec<RecentUpdate>,
}

/// Every configured database's status, with its `recent` latest runs.
pub fn database_statuses(
    warden: &crate::runtime::Warden,
    recent: usize,
) -> Result<Vec<DatabaseStatus>, StoreError> {
    warden
        .config()
        .databases
        .iter()
        .map(|d| {
            let mut updates = warden
                .store()
                .recent_updates(&d.name, recent.max(super::HEALTH_WINDOW) as i64)?;
            let status = super::health(&updates);
            updates.truncate(recent);
            Ok(DatabaseStatus {
                database: d.name.clone(),
                host: d.host.clone(),
                port: d.port,
                roles: d.roles.iter().map(|r| r.role.clone()).collect(),
                status,
                recent_updates: updates,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("alice"), "\"alice\"");
        assert_eq!(
            quote_ident("a\"; DROP ROLE x; --"),
            "\"a\"\"; DROP ROLE x; --\""
        );
    }
}
