//! Accounts: a principal resolved to the account it names, once, when it enters warden (a
//! list member, a response's users, an alert's), and the members any spelling of an account
//! names (to release them).
//!
//! Resolution asks the directory that serves the principal's domain (objectGUID as the key,
//! every name the entry has), else the domain rules (`base::account`). A principal neither
//! can place is refused with the reason, or kept as text where `[identity] unresolvable =
//! "keep"` says so.

use std::collections::HashSet;
use std::sync::Arc;

use super::OperationError;
use crate::base::account::{Account, name_key, rules_key, text_key};
use crate::base::identity::Identity;
use crate::base::principal::Principal;
use crate::config::{Config, DataSetConfig, Source};
use crate::decide::{CompiledPolicy, Request, Snapshot};
use crate::directory::{Directory, DirectoryClient, DirectoryError};
use crate::model::dataset::fold;
use crate::model::policy::{Action, Field};
use crate::runtime::Warden;
use crate::store::{MemberState, Membership, SurfaceEvent, SurfaceKind};
use crate::sync::accounts::{Connection, Lookup, Resolver};
use crate::sync::push::dn_key;

/// The account `principal` names, as [`resolve`] finds it, after parsing the text.
pub fn resolve_text(warden: &Warden, field: &str, text: &str) -> Result<Account, OperationError> {
    let principal =
        Principal::parse(text).map_err(|e| OperationError::invalid(field, e.to_string()))?;
    resolve(warden, field, &principal)
}

/// The account `principal` names: the directory entry of its domain's directory; where no
/// configured directory serves its domain, the domain rules' account; where its directory
/// cannot be reached, the rules' account for now (provisional: the push asks again, and
/// merges it into the entry's), never a refusal while the rules can place it. An
/// unresolvable principal — no entry answers to it, or no rule places it — is kept as text
/// where the operator allows it, else refused naming `field` and the reason.
pub fn resolve(
    warden: &Warden,
    field: &str,
    principal: &Principal,
) -> Result<Account, OperationError> {
    let config = warden.config();
    let refuse = |why: String| -> Result<Account, OperationError> {
        if config.keep_unresolvable {
            return Ok(Account::as_text(principal.as_str()));
        }
        Err(OperationError::invalid(
            field,
            format!("{why} (or set [identity] unresolvable = \"keep\" to list such names as text)"),
        ))
    };
    let by_rules = || match Account::by_rules(&config.identity, principal) {
        Ok(account) => Ok(account),
        Err(e) => refuse(e.to_string()),
    };
    if config.directories.is_empty() {
        return by_rules();
    }
    match lookup(warden, std::slice::from_ref(principal)).pop() {
        Some(Lookup::Found(mut account)) => {
            account.add_spelling(principal.as_str());
            Ok(account)
        }
        Some(Lookup::NotFound(asked)) => refuse(format!(
            "{:?} names no account: no entry answers to it in directory {}; check the spelling",
            principal.as_str(),
            asked.join(", ")
        )),
        Some(Lookup::Ambiguous(directory)) => Err(OperationError::invalid(
            field,
            format!(
                "{:?} names more than one account in directory {directory}; write the account's \
                 DOMAIN\\sAMAccountName or its DN",
                principal.as_str()
            ),
        )),
        Some(Lookup::Unreachable(why)) => match Account::by_rules(&config.identity, principal) {
            Ok(account) => {
                tracing::warn!(principal = %principal, reason = %why, "directory unreachable: listed by the domain rules for now; the push resolves it");
                Ok(account)
            }
            Err(e) => Err(OperationError::Upstream(format!(
                "{e}, and its directory cannot be asked now ({why}); try again"
            ))),
        },
        Some(Lookup::NoDirectory) | None => by_rules(),
    }
}

/// Looks principals up in the configured directories (in configuration order), over the
/// running server's shared connections when called inside its runtime, else over
/// connections of a runtime made for the lookup.
pub fn lookup(warden: &Warden, principals: &[Principal]) -> Vec<Lookup> {
    let config = warden.config();
    let running = warden.directories();
    let directories: Vec<Arc<Directory>> = config
        .directories
        .iter()
        .filter_map(|d| running.get(&d.name).cloned())
        .collect();
    let identity = Arc::clone(&config.identity);
    let run = |connection| {
        let mut resolver = Resolver::new(&directories, &identity, connection);
        async move {
            let mut out = Vec::with_capacity(principals.len());
            for p in principals {
                out.push(resolver.lookup(p).await);
            }
            out
        }
    };
    run_async(run, |why| vec![Lookup::Unreachable(why); principals.len()])
}

/// The keys of the members of `list` that `text` names: by any name their accounts are
/// known by (as typed, or its canonical form), by the key the text resolves to, or — a name
/// warden has not seen, such as the new name of a renamed account — by the entry the
/// directory says it is.
pub fn members_named(
    warden: &Warden,
    list: &str,
    text: &str,
) -> Result<Vec<String>, OperationError> {
    let (names, keys) = lookup_keys(warden, text);
    let found = warden.store().members_named(list, &names, &keys)?;
    if !found.is_empty() {
        return Ok(found);
    }
    match directory_account(warden, text)? {
        Some(a) => Ok(warden.store().members_named(list, &[], &[a.key])?),
        None => Ok(Vec::new()),
    }
}

/// The account warden has for `text`: by any of its names or keys, else by the directory
/// entry the name resolves to now (a renamed account's new name).
pub fn known_account(warden: &Warden, text: &str) -> Result<Option<Account>, OperationError> {
    let (names, keys) = lookup_keys(warden, text);
    if let Some(a) = warden
        .store()
        .find_accounts(&names, &keys)?
        .into_iter()
        .next()
    {
        return Ok(Some(a));
    }
    directory_account(warden, text)
}

/// The stored account of the directory entry `text` names now, if the directory knows the
/// name and warden has that entry's account.
fn directory_account(warden: &Warden, text: &str) -> Result<Option<Account>, OperationError> {
    if warden.config().directories.is_empty() {
        return Ok(None);
    }
    let Ok(principal) = Principal::parse(text) else {
        return Ok(None);
    };
    let Some(Lookup::Found(entry)) = lookup(warden, std::slice::from_ref(&principal)).pop() else {
        return Ok(None);
    };
    Ok(warden.store().account(&entry.key)?.map(|(a, _)| a))
}

/// The names and keys an account `text` names is found by in the store.
pub fn lookup_keys(warden: &Warden, text: &str) -> (Vec<String>, Vec<String>) {
    let config = warden.config();
    let canonical = config.identity.canonical(text).into_owned();
    let mut names = vec![text.to_owned()];
    if name_key(&canonical) != name_key(text) {
        names.push(canonical.clone());
    }
    let mut keys = vec![text_key(text), text.to_owned()];
    if let Ok(p) = Principal::parse(text)
        && let Ok(a) = Account::by_rules(&config.identity, &p)
    {
        keys.push(a.key);
    } else {
        keys.push(rules_key(&canonical));
    }
    (names, keys)
}

/// The keys audit records about the account `name` names carry: its key and the keys it had
/// before the directory named it; for a name warden has no account for, the keys such an
/// account would have.
pub fn audit_keys(warden: &Warden, name: &str) -> Result<Vec<String>, OperationError> {
    let Some(account) = known_account(warden, name)? else {
        return Ok(lookup_keys(warden, name).1);
    };
    let mut out = warden
        .store()
        .account(&account.key)?
        .map(|(_, former)| former)
        .unwrap_or_default();
    out.push(account.key);
    Ok(out)
}

/// The key of the listed account a name (a gate's qualified login) is, if one is, and the
/// surface event of a gate refusing its logins or ending its sessions (`count` times, the
/// first at `first_ms`).
pub fn gate_event(
    warden: &Warden,
    gate: &str,
    name: &str,
    action: &str,
    count: u64,
    first_ms: i64,
) -> Option<(String, SurfaceEvent)> {
    let (names, keys) = lookup_keys(warden, name);
    let account = match warden.store().find_accounts(&names, &keys) {
        Ok(found) => found.into_iter().next()?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find the account of a gate's login");
            return None;
        }
    };
    let (state, what) = match action {
        "gate.ended" => ("ended", "session(s) ended"),
        _ => ("refused", "login(s) refused"),
    };
    let event = SurfaceEvent {
        account_key: account.key.clone(),
        surface: SurfaceKind::Gate,
        target: gate.to_owned(),
        state,
        detail: format!("{count} {what} as {name}"),
        at_ms: first_ms,
    };
    Some((account.key, event))
}

/// One answer to "why is this account blocked?": which account a name is, the lists that
/// hold it (every membership) and its past releases, the data-set rows that hold it and how
/// each got there, the policies that block it and where, the decision for a service, and
/// each enforcement surface with the time the block landed there.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provenance {
    /// The name as asked.
    pub name: String,
    pub account: Account,
    /// Whether warden has the account (it is, or was, on a list); else it is what the name
    /// resolves to now.
    pub known: bool,
    /// The keys the account had before the directory named it (audit records under them
    /// are its too).
    pub former_keys: Vec<String>,
    pub lists: Vec<Listing>,
    /// Memberships released (removed by someone, or purged after expiring).
    pub released: Vec<Membership>,
    pub rows: Vec<RowHold>,
    pub policies: Vec<PolicyHold>,
    pub decision: Option<ServiceDecision>,
    pub surfaces: Vec<SurfaceState>,
}

/// The account's member on one list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    pub list: String,
    pub state: MemberState,
    pub added_at: i64,
    pub expires_at: Option<i64>,
    pub expiry_set_by: Option<String>,
    pub memberships: Vec<Membership>,
}

/// A data-set row that holds the account, and how it got there.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowHold {
    pub data_set: String,
    /// The row's key as the data set holds it (`corp\alice`).
    pub key: String,
    /// `list`, `ldap`, `static` or `api`.
    pub source: String,
    /// How the key was produced: the list membership, or the directory, query, attribute and
    /// pattern that mapped it.
    pub how: String,
}

/// A policy that reads a data set holding the account on a principal field.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyHold {
    pub policy: String,
    pub action: String,
    pub severity: String,
    pub enabled: bool,
    /// The services it applies to (names or globs; `*` is every one).
    pub services: Vec<String>,
    pub data_sets: Vec<String>,
    /// An enabled blocking policy: the account is blocked where it applies (its other
    /// criteria permitting).
    pub blocks: bool,
}

/// The decision for the account's canonical name on one service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceDecision {
    pub service: String,
    pub db_user: String,
    pub decision: String,
    pub matched: Vec<String>,
    pub snapshot_version: u64,
}

/// An enforcement surface's state for the account.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SurfaceState {
    pub surface: SurfaceKind,
    pub target: String,
    /// `landed`, `lifted`, `refused`, `ended`, or `pending` (configured, not reached yet).
    pub state: String,
    pub detail: String,
    /// Unix milliseconds: when the state began (the block landed) and was last seen.
    pub since_ms: Option<i64>,
    pub updated_ms: Option<i64>,
    /// For an AD group: whether the directory holds the account in it now (asked live).
    pub holds_now: Option<bool>,
    /// Why `holds_now` is unknown, when it is.
    pub note: Option<String>,
}

/// The provenance of the account `name` names (any spelling), with the decision for
/// `service` when one is asked. Reads only: the directory is asked whether each group it is
/// pushed to holds it now.
pub fn provenance(
    warden: &Warden,
    name: &str,
    service: Option<&str>,
) -> Result<Provenance, OperationError> {
    let principal =
        Principal::parse(name).map_err(|e| OperationError::invalid("name", e.to_string()))?;
    let store = warden.store();
    let found = known_account(warden, name)?;
    let (account, known) = match found {
        Some(a) => (a, true),
        None => (unstored(warden, &principal)?, false),
    };
    let former_keys = store
        .account(&account.key)?
        .map(|(_, former)| former)
        .unwrap_or_default();
    let all_keys: Vec<String> = std::iter::once(account.key.clone())
        .chain(former_keys.iter().cloned())
        .collect();
    let lists = store
        .listings_of(&account.key)?
        .into_iter()
        .map(|(list, m)| Listing {
            list,
            state: m.state,
            added_at: m.added_at,
            expires_at: m.expires_at,
            expiry_set_by: m.expiry_set_by,
            memberships: m.memberships,
        })
        .collect::<Vec<_>>();
    let released = store
        .memberships_of(&all_keys)?
        .into_iter()
        .filter(|m| m.released_at.is_some())
        .collect();
    let snapshot = warden.engine().load();
    let config = warden.config();
    let rows = rows_holding(&config, &snapshot, &account, &lists);
    let policies = policies_holding(&snapshot, &rows);
    let decision = service.map(|s| {
        let request = Request::new(s).db_user(&account.canonical);
        let d = snapshot.decide(&request);
        ServiceDecision {
            service: s.to_owned(),
            db_user: account.canonical.clone(),
            decision: d.outcome.as_str().to_owned(),
            matched: d
                .matched
                .iter()
                .filter_map(|m| snapshot.policy(m).map(|p| p.name.clone()))
                .collect(),
            snapshot_version: d.snapshot_version,
        }
    });
    let surfaces = surfaces(warden, &account, &all_keys, &lists)?;
    Ok(Provenance {
        name: name.to_owned(),
        account,
        known,
        former_keys,
        lists,
        released,
        rows,
        policies,
        decision,
        surfaces,
    })
}

/// The account a name warden does not have resolves to now (nothing is written).
fn unstored(warden: &Warden, principal: &Principal) -> Result<Account, OperationError> {
    let config = warden.config();
    if !config.directories.is_empty()
        && let Some(Lookup::Found(mut a)) = lookup(warden, std::slice::from_ref(principal)).pop()
    {
        a.add_spelling(principal.as_str());
        return Ok(a);
    }
    Ok(Account::by_rules_or_text(
        &config.identity,
        principal.as_str(),
    ))
}

/// The account's names as decisions compare them: canonical, folded.
fn compared_names(identity: &Identity, account: &Account) -> HashSet<String> {
    std::iter::once(&account.canonical)
        .chain(&account.names)
        .map(|n| fold(&identity.canonical(n), false))
        .collect()
}

/// Every row of the snapshot's data sets whose key is one of the account's names.
fn rows_holding(
    config: &Config,
    snapshot: &Snapshot,
    account: &Account,
    lists: &[Listing],
) -> Vec<RowHold> {
    let names = compared_names(&config.identity, account);
    let mut out = Vec::new();
    for set in snapshot.data_sets() {
        let Some(ds) = config.data_set(set.name()) else {
            continue;
        };
        for row in set.rows() {
            let key = set.key_of(row);
            if names.contains(&fold(&config.identity.canonical(key), false)) {
                out.push(RowHold {
                    data_set: set.name().to_owned(),
                    key: key.to_owned(),
                    source: ds.source.kind().to_owned(),
                    how: how(config, ds, key, lists),
                });
            }
        }
    }
    out
}

/// How a data set's row came to hold `key`.
fn how(config: &Config, ds: &DataSetConfig, key: &str, lists: &[Listing]) -> String {
    match &ds.source {
        Source::List { list, .. } => {
            let held = lists
                .iter()
                .find(|l| l.list == *list)
                .map_or(0, |l| l.memberships.len());
            format!(
                "a member of list {list:?} ({held} membership(s)); {key} is one of its \
                 account's names"
            )
        }
        Source::Ldap(s) => {
            let column = &ds.schema.columns()[ds.schema.key_index()].name;
            let mapping = s
                .mappings
                .iter()
                .find(|m| m.column.eq_ignore_ascii_case(column))
                .map(|m| match m.pattern() {
                    Some(p) => format!(
                        "attribute {} through {} → {}",
                        m.attribute,
                        p.match_pattern(),
                        p.substitute().unwrap_or("(the whole match)")
                    ),
                    None => format!("attribute {} as is", m.attribute),
                })
                .unwrap_or_else(|| "no mapping of the key column".to_owned());
            let directory = config
                .directories
                .iter()
                .find(|d| d.name == s.directory)
                .map_or_else(
                    || s.directory.clone(),
                    |d| format!("{} ({})", d.name, d.url),
                );
            format!(
                "pulled from directory {directory}: base {}, filter {}; key column {column:?} \
                 from {mapping}",
                s.base, s.filter
            )
        }
        Source::Static { path } => format!("a row of the file {}", path.display()),
        Source::Api { .. } => "written through the data API (PUT/POST …/data)".to_owned(),
    }
}

/// The policies whose principal criteria read a data set that holds the account.
fn policies_holding(snapshot: &Snapshot, rows: &[RowHold]) -> Vec<PolicyHold> {
    let holding: HashSet<&str> = rows.iter().map(|r| r.data_set.as_str()).collect();
    snapshot
        .policies()
        .iter()
        .map(CompiledPolicy::policy)
        .filter_map(|p| {
            let data_sets: Vec<String> = p
                .criteria
                .iter()
                .filter(|c| matches!(c.field, Field::DbUser | Field::OsUser))
                .filter(|c| holding.contains(c.data_set.as_str()))
                .map(|c| c.data_set.clone())
                .collect();
            (!data_sets.is_empty()).then(|| PolicyHold {
                policy: p.name.clone(),
                action: p.action.as_str().to_owned(),
                severity: p.severity.as_str().to_owned(),
                enabled: p.enabled,
                services: p.apply_to.patterns().to_vec(),
                data_sets,
                blocks: p.enabled && p.action == Action::Block,
            })
        })
        .collect()
}

/// Each surface the account's block lands on: recorded landings, the groups and roles its
/// lists are mapped to that have none yet (pending), and — asked live — whether each group
/// it was pushed to holds it now.
fn surfaces(
    warden: &Warden,
    account: &Account,
    keys: &[String],
    lists: &[Listing],
) -> Result<Vec<SurfaceState>, OperationError> {
    let store = warden.store();
    let mut out: Vec<SurfaceState> = store
        .surfaces(keys)?
        .into_iter()
        .map(|s| SurfaceState {
            surface: s.surface,
            target: s.target,
            state: s.state,
            detail: s.detail,
            since_ms: Some(s.since_ms),
            updated_ms: Some(s.updated_ms),
            holds_now: None,
            note: None,
        })
        .collect();
    let config = warden.config();
    let listed: HashSet<&str> = lists.iter().map(|l| l.list.as_str()).collect();
    let mut pending = |surface, target: String, detail: String| {
        if !out
            .iter()
            .any(|s| s.surface == surface && s.target == target)
        {
            out.push(SurfaceState {
                surface,
                target,
                state: "pending".to_owned(),
                detail,
                since_ms: None,
                updated_ms: None,
                holds_now: None,
                note: None,
            });
        }
    };
    let mut checks = Vec::new();
    for m in config
        .mappings
        .iter()
        .filter(|m| listed.contains(m.list.as_str()))
    {
        let target = format!("{} (on {})", m.group_dn, m.directory);
        pending(
            SurfaceKind::Group,
            target.clone(),
            "not pushed yet (the push runs on every list change and on schedule)".to_owned(),
        );
        let dn = store
            .pushed_accounts(&m.list, &m.group_dn)?
            .get(&account.key)
            .map(|p| p.dn.clone())
            .or_else(|| account.dn.clone());
        if let Some(dn) = dn {
            checks.push((target, m.directory.clone(), m.group_dn.clone(), dn));
        }
    }
    for db in &config.databases {
        for r in db.roles.iter().filter(|r| listed.contains(r.list.as_str())) {
            pending(
                SurfaceKind::Role,
                format!("{}/{}", db.name, r.role),
                "not granted yet (the reconcile runs on every list change and on schedule)"
                    .to_owned(),
            );
        }
    }
    for (target, directory, group, dn) in checks {
        let live = holds_now(warden, &directory, &group, &dn);
        if let Some(s) = out
            .iter_mut()
            .find(|s| s.surface == SurfaceKind::Group && s.target == target)
        {
            match live {
                Ok(holds) => s.holds_now = Some(holds),
                Err(why) => s.note = Some(why),
            }
        }
    }
    out.sort_by(|a, b| (a.surface.as_str(), &a.target).cmp(&(b.surface.as_str(), &b.target)));
    Ok(out)
}

/// Whether `dn`'s entry is a member of `group` in `directory` now (its `memberOf`).
fn holds_now(warden: &Warden, directory: &str, group: &str, dn: &str) -> Result<bool, String> {
    let Some(dir) = warden.directories().get(directory).cloned() else {
        return Err(format!("directory {directory:?} is not configured"));
    };
    let read = |connection| {
        let dir = Arc::clone(&dir);
        async move {
            let client = match connection {
                Connection::Shared => dir.client().await,
                Connection::Own => DirectoryClient::connect(dir.settings()?)
                    .await
                    .map(Arc::new),
            }?;
            client
                .read_entry(dn, "(objectClass=*)", &["memberOf"], None)
                .await
        }
    };
    let entry = run_async(read, |why| {
        Err(DirectoryError::Settings {
            field: "runtime",
            reason: why,
        })
    })
    .map_err(|e| format!("cannot ask the directory: {e}"))?;
    let Some(entry) = entry else {
        return Ok(false);
    };
    let group = dn_key(group);
    Ok(entry
        .get("memberOf")
        .unwrap_or_default()
        .iter()
        .any(|g| dn_key(g) == group))
}

/// Runs `make(connection)`'s future to completion from synchronous code: inside the running
/// server's multi-threaded runtime over its shared connections, else — the command line, or a
/// runtime this thread must not block — on a runtime of its own, on a thread of its own, over
/// connections of its own (the shared ones are bound to the server's runtime). `failed` says
/// what a runtime that cannot start gives.
fn run_async<F, T>(
    make: impl FnOnce(Connection) -> F + Send,
    failed: impl FnOnce(String) -> T + Send,
) -> T
where
    F: std::future::Future<Output = T>,
    T: Send,
{
    if let Ok(handle) = tokio::runtime::Handle::try_current()
        && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    {
        return tokio::task::block_in_place(|| handle.block_on(make(Connection::Shared)));
    }
    std::thread::scope(|s| {
        let run = s.spawn(|| {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => Ok(rt.block_on(make(Connection::Own))),
                Err(e) => Err(format!("cannot start a runtime: {e}")),
            }
        });
        match run.join() {
            Ok(Ok(value)) => value,
            Ok(Err(why)) => failed(why),
            Err(_) => failed("the directory call failed".to_owned()),
        }
    })
}
