//! Push: reconcile a list into the Active Directory group it is mapped to.
//!
//! warden owns the mapped group's `member` attribute and nothing else: a run resolves the
//! list's principals to user DNs (escaped filters, cached), reads the group's members (range
//! retrieval), and adds and removes the difference in bounded batches. The first sync of a new
//! mapping therefore overwrites whatever the group held — [`plan`] says beforehand how many
//! members that will remove.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{SyncError, failed_update};
use crate::base::account::{Account, guid_of_key};
use crate::base::actor::Actor;
use crate::base::dn::parse_dn;
use crate::base::time::now_ms;
use crate::config::MappingConfig;
use crate::directory::Directory;
use crate::directory::{DEFAULT_MEMBER_BATCH, DirectoryClient, DirectoryError, MemberChange};
use crate::events::{Event, Events};
use crate::model::dataset::fold;
use crate::store::{AuditRecord, PushedAccount, RecentUpdate, Store, SurfaceEvent, SurfaceKind};

/// LDAP noSuchObject.
const RC_NO_SUCH_OBJECT: u32 = 32;

/// What a push run would do (or did).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Members the group has now.
    pub current_members: usize,
    /// DNs to add.
    pub add: Vec<String>,
    /// DNs to remove (on a first sync: every member the list lacks).
    pub remove: Vec<String>,
    /// List principals that match no user in the directory (or more than one).
    pub unresolved: Vec<String>,
    /// List principals of a domain another directory serves (`PARTNER\bob` on CORP's
    /// directory): that directory's to resolve, not looked up here, not unresolved.
    pub other_domain: Vec<String>,
    /// DNs kept although no principal resolved to them now: they were last pushed for a
    /// listed principal whose resolution failed, and a push never removes a listed user.
    pub kept: Vec<String>,
    /// Listed principals whose last pushed DN someone else removed from the group (drift):
    /// the run puts them back.
    pub drift: Vec<String>,
    /// Their account keys, in the same order.
    #[serde(skip)]
    pub drift_accounts: Vec<String>,
    /// Whether this mapping has synced before.
    pub first_sync: bool,
    /// What the run records as pushed, per listed principal.
    #[serde(skip)]
    pub accounts: Vec<PushedAccount>,
    /// The names of the accounts last pushed at the DNs to remove (by DN key): what a data
    /// set on the group may lose without its shrink guard counting it.
    #[serde(skip)]
    pub removed_names: HashMap<String, Vec<String>>,
    /// The accounts the directory named in this run, by the key the member has now: the
    /// entry's (a provisional account becomes its entry's; a renamed or moved one learns its
    /// names and DN).
    #[serde(skip)]
    pub learned: Vec<(String, Account)>,
    /// The accounts last pushed at the DNs to remove, by DN key: where the block is lifted.
    #[serde(skip)]
    pub removed_accounts: HashMap<String, String>,
}

/// The result of a push run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    pub added: usize,
    pub removed: usize,
    pub unresolved: Vec<String>,
    /// Values the server refused one by one, as "DN: message".
    pub refused: Vec<String>,
    /// Listed principals put back into the group after someone removed them.
    pub drift: Vec<String>,
    /// Their account keys, in the same order.
    #[serde(skip)]
    pub drift_accounts: Vec<String>,
    /// The canonical names (folded) of the accounts removed: what the shrink guard of a data
    /// set on this group is credited with.
    #[serde(skip)]
    pub removed_names: HashSet<String>,
    /// Whether the names of listed accounts changed (the list data set's alias keys).
    #[serde(skip)]
    pub names_changed: bool,
    /// The accounts added to and removed from the group, by name (the DN when warden knows
    /// no name for it): the surface changes the run reports as events.
    #[serde(skip)]
    pub added_members: Vec<String>,
    #[serde(skip)]
    pub removed_members: Vec<String>,
}

/// Comparison key for DNs: AD spells them in its own case and spacing.
pub fn dn_key(dn: &str) -> String {
    parse_dn(dn).map_or_else(|_| dn.to_lowercase(), |d| d.normalized().to_string())
}

/// How a principal resolved.
enum Resolved {
    Account(crate::directory::Account),
    /// No user answers to it (or, here, none of this directory's domain).
    Missing,
    /// More than one user answers to it.
    Ambiguous,
}

/// Resolves one listed account (cached under its key), through the directory's cache unless
/// `fresh`: an account the directory found before by its objectGUID (wherever it moved,
/// whatever it is called now), any other by its canonical name `principal`.
async fn resolve(
    directory: &Directory,
    client: &DirectoryClient,
    key: &str,
    principal: &str,
    fresh: bool,
) -> Result<Resolved, SyncError> {
    let key = key.to_owned();
    if !fresh && let Some(account) = directory.cached_account(&key) {
        return Ok(Resolved::Account(account));
    }
    let base = &directory.config().base_dn;
    let found = match guid_of_key(&key) {
        // Not found by its GUID: deleted (or another directory's). Never looked for by name
        // instead: another user may have that name now.
        Some(guid) => client.resolve_guid(base, guid).await,
        None => {
            client
                .resolve_account(base, principal, directory.netbios(), directory.identity())
                .await
        }
    };
    match found {
        Ok(Some(account)) => {
            directory.cache_account(key, account.clone());
            Ok(Resolved::Account(account))
        }
        Ok(None) => {
            directory.evict(&key);
            Ok(Resolved::Missing)
        }
        // Two users answering to one name is the list's problem, not the run's: report it.
        Err(DirectoryError::AmbiguousPrincipal { .. }) => {
            directory.evict(&key);
            Ok(Resolved::Ambiguous)
        }
        Err(e) => Err(SyncError::directory(directory, e)),
    }
}

/// Reads the group's current members; a missing group is a clear error.
async fn group_members(
    directory: &Directory,
    client: &DirectoryClient,
    group_dn: &str,
) -> Result<Vec<String>, SyncError> {
    match client.read_multi_valued(group_dn, "member").await {
        Ok(m) => Ok(m),
        Err(DirectoryError::NoSuchEntry { .. }) => Err(SyncError::GroupNotFound {
            directory: directory.name().to_string(),
            group_dn: group_dn.to_string(),
        }),
        Err(e) => Err(SyncError::directory(directory, e)),
    }
}

/// Works out what a push would change, without changing anything. Fails if the group is
/// missing — the check a mapping gets when it is saved.
///
/// A push never removes a listed user: the DN last pushed for a listed principal stays in the
/// group while the principal does not resolve (the directory answers nothing, or several
/// users). A DN that would be added from the cache is resolved afresh first, so a user renamed
/// or moved to another OU (whose new DN the group already holds) is found at the new DN, not
/// re-added at the old one while the new one is removed.
pub async fn plan(
    directory: &Directory,
    store: &Store,
    mapping: &MappingConfig,
) -> Result<Plan, SyncError> {
    let client = directory
        .client()
        .await
        .map_err(|e| SyncError::directory(directory, e))?;
    let current = group_members(directory, &client, &mapping.group_dn).await?;
    let have: HashMap<String, String> = current.iter().map(|dn| (dn_key(dn), dn.clone())).collect();
    let last = store.pushed_accounts(&mapping.list, &mapping.group_dn)?;
    let mut want: HashMap<String, String> = HashMap::new();
    let mut kept: HashMap<String, String> = HashMap::new();
    let mut unresolved = Vec::new();
    let mut other_domain = Vec::new();
    let mut drift = Vec::new();
    let mut drift_accounts = Vec::new();
    let mut accounts = Vec::new();
    let mut learned = Vec::new();
    for member in store.active_members(&mapping.list)? {
        let (key, principal) = (member.account, member.principal);
        if directory.routed_elsewhere(&principal).is_some() {
            // Not this domain's: never looked up here. Whatever was pushed for it before
            // stays (a push never removes a listed principal's DN).
            if let Some(l) = last.get(&key) {
                kept.insert(dn_key(&l.dn), l.dn.clone());
                accounts.push(l.clone());
            }
            other_domain.push(principal);
            continue;
        }
        let mut resolved = resolve(directory, &client, &key, &principal, false).await?;
        if let Resolved::Account(a) = &resolved
            && !have.contains_key(&dn_key(&a.dn))
        {
            // About to be added: make sure the cached DN is still the user's.
            resolved = resolve(directory, &client, &key, &principal, true).await?;
        }
        match resolved {
            Resolved::Account(entry) => {
                let k = dn_key(&entry.dn);
                if !have.contains_key(&k) && last.get(&key).is_some_and(|l| dn_key(&l.dn) == k) {
                    drift.push(principal.clone());
                    drift_accounts.push(key.clone());
                }
                want.insert(k, entry.dn.clone());
                let account = directory.account_of(&entry);
                accounts.push(PushedAccount {
                    account_key: account.key.clone(),
                    names: account.names.clone(),
                    dn: entry.dn,
                });
                learned.push((key, account));
            }
            Resolved::Missing | Resolved::Ambiguous => {
                unresolved.push(principal);
                if let Some(l) = last.get(&key) {
                    kept.insert(dn_key(&l.dn), l.dn.clone());
                    accounts.push(l.clone());
                }
            }
        }
    }
    let mut add: Vec<String> = want
        .iter()
        .filter(|(k, _)| !have.contains_key(*k))
        .map(|(_, dn)| dn.clone())
        .collect();
    let mut remove: Vec<String> = have
        .iter()
        .filter(|(k, _)| !want.contains_key(*k) && !kept.contains_key(*k))
        .map(|(_, dn)| dn.clone())
        .collect();
    let mut kept: Vec<String> = kept
        .into_iter()
        .filter(|(k, _)| have.contains_key(k) && !want.contains_key(k))
        .map(|(_, dn)| dn)
        .collect();
    add.sort_unstable();
    remove.sort_unstable();
    kept.sort_unstable();
    let removing: HashSet<String> = remove.iter().map(|dn| dn_key(dn)).collect();
    let removed_last: Vec<&PushedAccount> = last
        .values()
        .filter(|l| removing.contains(&dn_key(&l.dn)))
        .collect();
    let removed_names = removed_last
        .iter()
        .map(|l| (dn_key(&l.dn), l.names.clone()))
        .collect();
    let removed_accounts = removed_last
        .iter()
        .map(|l| (dn_key(&l.dn), l.account_key.clone()))
        .collect();
    Ok(Plan {
        current_members: current.len(),
        add,
        remove,
        unresolved,
        other_domain,
        kept,
        drift,
        drift_accounts,
        first_sync: store
            .mapping_first_synced(&mapping.list, &mapping.group_dn)?
            .is_none(),
        accounts,
        removed_names,
        learned,
        removed_accounts,
    })
}

/// Reconciles the group to the list.
pub async fn reconcile(
    directory: &Directory,
    store: &Store,
    mapping: &MappingConfig,
) -> Result<PushReport, SyncError> {
    let plan = plan(directory, store, mapping).await?;
    if plan.first_sync && !plan.remove.is_empty() {
        tracing::warn!(
            group = %mapping.group_dn,
            removing = plan.remove.len(),
            "first sync of this mapping: warden owns the group and removes members the list lacks"
        );
    }
    let client = directory
        .client()
        .await
        .map_err(|e| SyncError::directory(directory, e))?;
    // When the block lands: the moment the change is sent. A pull can see the group hold
    // the member as soon as the directory applied it, before its answer reaches us, so a
    // time taken after the answer could come later than the pull that read it back.
    let sent_at = now_ms();
    let change = client
        .modify_members(
            &mapping.group_dn,
            &plan.add,
            &plan.remove,
            DEFAULT_MEMBER_BATCH,
        )
        .await
        .map_err(|e| SyncError::directory(directory, e))?;
    // A DN the server no longer has was renamed or deleted since it was cached: forget it, so
    // the next run resolves the principal again.
    for f in change.failed.iter().filter(|f| f.code == RC_NO_SUCH_OBJECT) {
        for a in plan
            .accounts
            .iter()
            .filter(|a| dn_key(&a.dn) == dn_key(&f.member))
        {
            directory.evict(&a.account_key);
        }
    }
    store.mark_mapping_synced(&mapping.list, &mapping.group_dn)?;
    // What the directory said of each account is the account's from now on: a provisional
    // one becomes its entry's (two members of one account merge), a renamed one gains its
    // new names (the list data set's alias keys: `john.doe@corp.example.test` finds
    // `CORP\jdoe`), a moved one its DN.
    let mut names_changed = false;
    for (key, account) in &plan.learned {
        if *key == account.key {
            names_changed |= store.update_account(account)?;
        } else {
            tracing::info!(account = %account.canonical, from = %key, to = %account.key, "the directory named a listed account: keyed by its entry from now on");
            store.merge_account(key, account)?;
            names_changed = true;
        }
    }
    store.set_pushed_accounts(&mapping.list, &mapping.group_dn, &plan.accounts)?;
    record_landings(directory, store, mapping, &plan, &change, sent_at)?;
    let refused: HashSet<String> = change
        .failed
        .iter()
        .filter(|f| !f.add)
        .map(|f| dn_key(&f.member))
        .collect();
    let (added_members, removed_members) = changed_members(&plan, &change.failed);
    Ok(PushReport {
        added_members,
        removed_members,
        added: change.added,
        removed: change.removed,
        drift: plan.drift,
        drift_accounts: plan.drift_accounts,
        removed_names: plan
            .removed_names
            .iter()
            .filter(|(dn, _)| !refused.contains(*dn))
            .flat_map(|(_, names)| names)
            .map(|n| fold(&directory.identity().canonical(n), false))
            .collect(),
        names_changed,
        unresolved: plan.unresolved,
        refused: change
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.member, f.message))
            .collect(),
    })
}

/// The names of the accounts a run added and removed (those the server did not refuse).
fn changed_members(
    plan: &Plan,
    failed: &[crate::directory::MemberFailure],
) -> (Vec<String>, Vec<String>) {
    let refused: HashSet<(bool, String)> =
        failed.iter().map(|f| (f.add, dn_key(&f.member))).collect();
    let mut names: HashMap<String, &str> = HashMap::new();
    for (dn, n) in &plan.removed_names {
        if let Some(first) = n.first() {
            names.insert(dn.clone(), first);
        }
    }
    for a in &plan.accounts {
        if let Some(first) = a.names.first() {
            names.insert(dn_key(&a.dn), first);
        }
    }
    let done = |dns: &[String], add: bool| -> Vec<String> {
        dns.iter()
            .map(|dn| (dn, dn_key(dn)))
            .filter(|(_, key)| !refused.contains(&(add, key.clone())))
            .map(|(dn, key)| {
                names
                    .get(&key)
                    .map_or_else(|| dn.clone(), |n| (*n).to_owned())
            })
            .collect()
    };
    (done(&plan.add, true), done(&plan.remove, false))
}

/// Records where the block landed: each listed account whose DN the group holds after the
/// run (added now, or there already and not recorded yet) has landed in the group; each
/// account whose DN the run removed is lifted from it — `at`, when the change was sent.
fn record_landings(
    directory: &Directory,
    store: &Store,
    mapping: &MappingConfig,
    plan: &Plan,
    change: &MemberChange,
    at: i64,
) -> Result<(), SyncError> {
    let target = format!("{} (on {})", mapping.group_dn, directory.name());
    let refused: HashSet<String> = change.failed.iter().map(|f| dn_key(&f.member)).collect();
    let landed = store.surface_states(SurfaceKind::Group, &target)?;
    let mut events = Vec::new();
    let adding: HashSet<String> = plan.add.iter().map(|dn| dn_key(dn)).collect();
    let removing: HashSet<String> = plan.remove.iter().map(|dn| dn_key(dn)).collect();
    for a in &plan.accounts {
        let k = dn_key(&a.dn);
        let held = !refused.contains(&k) && !removing.contains(&k);
        let new =
            adding.contains(&k) || landed.get(&a.account_key).map(String::as_str) != Some("landed");
        if held && new {
            events.push(SurfaceEvent {
                account_key: a.account_key.clone(),
                surface: SurfaceKind::Group,
                target: target.clone(),
                state: "landed",
                detail: a.dn.clone(),
                at_ms: at,
            });
        }
    }
    for (dn, key) in &plan.removed_accounts {
        if !refused.contains(dn) {
            events.push(SurfaceEvent {
                account_key: key.clone(),
                surface: SurfaceKind::Group,
                target: target.clone(),
                state: "lifted",
                detail: dn.clone(),
                at_ms: at,
            });
        }
    }
    store.record_surfaces(&events)?;
    Ok(())
}

/// Runs a push, records it as a recent update whatever the outcome, and reports each member
/// it added or removed as an event.
pub async fn run(
    directory: &Directory,
    store: &Store,
    events: &Events,
    mapping: &MappingConfig,
) -> (RecentUpdate, Result<PushReport, SyncError>) {
    let started = now_ms();
    let result = reconcile(directory, store, mapping).await;
    if let Ok(r) = &result {
        events.emit_all(Event::surface_changes(
            "ad_group",
            &mapping.group_dn,
            &r.added_members,
            &r.removed_members,
        ));
    }
    if result.as_ref().is_err_and(SyncError::is_connection_problem) {
        directory.reset().await;
    }
    if let Ok(r) = &result {
        directory.credit_removals(&mapping.group_dn, r.removed_names.clone());
    }
    let update = match &result {
        Ok(r) => RecentUpdate {
            directory: directory.name().to_string(),
            kind: "push".into(),
            target: mapping.group_dn.clone(),
            started_at_ms: started,
            duration_ms: now_ms() - started,
            added: r.added as i64,
            removed: r.removed as i64,
            unresolved: r.unresolved.clone(),
            error: (!r.refused.is_empty()).then(|| {
                format!(
                    "directory refused {} value(s): {}",
                    r.refused.len(),
                    r.refused.join("; ")
                )
            }),
        },
        Err(e) => failed_update(directory.name(), "push", &mapping.group_dn, started, e),
    };
    if let Err(e) = store.record_update(&update) {
        tracing::error!(error = %e, "cannot record push run");
    }
    if let Ok(r) = &result
        && !r.drift.is_empty()
    {
        record_drift(directory, store, mapping, started, r);
    }
    (update, result)
}

/// Records drift a run repaired — listed members someone else removed from the group, put
/// back — as a recent update of kind `drift` and one audit record per account.
fn record_drift(
    directory: &Directory,
    store: &Store,
    mapping: &MappingConfig,
    started: i64,
    report: &PushReport,
) {
    let principals = &report.drift;
    tracing::warn!(
        group = %mapping.group_dn,
        members = ?principals,
        "listed members were removed from the group by someone else; put them back"
    );
    let update = RecentUpdate {
        directory: directory.name().to_string(),
        kind: "drift".into(),
        target: mapping.group_dn.clone(),
        started_at_ms: started,
        duration_ms: now_ms() - started,
        added: principals.len() as i64,
        removed: 0,
        unresolved: Vec::new(),
        error: Some(format!(
            "{} listed member(s) were removed from the group outside warden and put back: {}",
            principals.len(),
            principals.join(", ")
        )),
    };
    if let Err(e) = store.record_update(&update) {
        tracing::error!(error = %e, "cannot record drift");
    }
    let actor = Actor::system("drift repair");
    let records: Vec<AuditRecord> = principals
        .iter()
        .zip(&report.drift_accounts)
        .map(|(principal, key)| {
            AuditRecord::new(
                &actor,
                "group.drift_repaired",
                &mapping.group_dn,
                serde_json::json!({ "list": mapping.list, "members": [principal] }),
            )
            .about(key)
        })
        .collect();
    if let Err(e) = store.audited(|_| Ok::<_, crate::store::StoreError>(()), |_| records) {
        tracing::error!(error = %e, "cannot audit drift");
    }
}
