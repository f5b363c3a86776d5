//! Push: reconcile a list into the Active Directory group it is mapped to.
//!
//! warden owns the mapped group's `member` attribute and nothing else: a run resolves the
//! list's principals to user DNs (escaped filters, cached), reads the group's members (range
//! retrieval), and adds and removes the difference in bounded batches. The first sync of a new
//! mapping therefore overwrites whatever the group held — [`plan`] says beforehand how many
//! members that will remove.

use std::collections::HashMap;

use serde::Serialize;

use super::{SyncError, failed_update};
use crate::base::dn::parse_dn;
use crate::base::time::now_ms;
use crate::config::MappingConfig;
use crate::directory::Directory;
use crate::directory::{DEFAULT_MEMBER_BATCH, DirectoryClient, DirectoryError};
use crate::store::{RecentUpdate, Store, principal_key};

/// What a push run would do (or did).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Members the group has now.
    pub current_members: usize,
    /// DNs to add.
    pub add: Vec<String>,
    /// DNs to remove (on a first sync: every member the list lacks).
    pub remove: Vec<String>,
    /// List principals that match no user in the directory.
    pub unresolved: Vec<String>,
    /// Whether this mapping has synced before.
    pub first_sync: bool,
}

/// The result of a push run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    pub added: usize,
    pub removed: usize,
    pub unresolved: Vec<String>,
    /// Values the server refused one by one, as "DN: message".
    pub refused: Vec<String>,
}

/// Comparison key for DNs: AD spells them in its own case and spacing.
fn dn_key(dn: &str) -> String {
    parse_dn(dn).map_or_else(|_| dn.to_lowercase(), |d| d.normalized().to_string())
}

/// Resolves one principal to a DN, through the directory's cache.
async fn resolve(
    directory: &Directory,
    client: &DirectoryClient,
    principal: &str,
) -> Result<Option<String>, SyncError> {
    let key = principal_key(principal);
    if let Some(dn) = directory.cached_dn(&key) {
        return Ok(Some(dn));
    }
    match client
        .resolve_principal(&directory.config().base_dn, principal)
        .await
    {
        Ok(Some(dn)) => {
            directory.cache_dn(key, dn.clone());
            Ok(Some(dn))
        }
        Ok(None) => Ok(None),
        // Two users answering to one name is the list's problem, not the run's: report it.
        Err(DirectoryError::AmbiguousPrincipal { .. }) => Ok(None),
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

/// Active principals of a list. A member past its expiry stays until the expiry sweep
/// deactivates it, so a sweep the clocks or the share guard held keeps it in its groups.
fn list_principals(store: &Store, list: &str) -> Result<Vec<String>, SyncError> {
    Ok(store
        .members(list)?
        .into_iter()
        .filter(|m| m.is_active())
        .map(|m| m.principal)
        .collect())
}

/// Works out what a push would change, without changing anything. Fails if the group is
/// missing — the check a mapping gets when it is saved.
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
    let mut want: HashMap<String, String> = HashMap::new();
    let mut unresolved = Vec::new();
    for principal in list_principals(store, &mapping.list)? {
        match resolve(directory, &client, &principal).await? {
            Some(dn) => {
                want.insert(dn_key(&dn), dn);
            }
            None => unresolved.push(principal),
        }
    }
    let have: HashMap<String, String> = current.iter().map(|dn| (dn_key(dn), dn.clone())).collect();
    let mut add: Vec<String> = want
        .iter()
        .filter(|(k, _)| !have.contains_key(*k))
        .map(|(_, dn)| dn.clone())
        .collect();
    let mut remove: Vec<String> = have
        .iter()
        .filter(|(k, _)| !want.contains_key(*k))
        .map(|(_, dn)| dn.clone())
        .collect();
    add.sort_unstable();
    remove.sort_unstable();
    Ok(Plan {
        current_members: current.len(),
        add,
        remove,
        unresolved,
        first_sync: store
            .mapping_first_synced(&mapping.list, &mapping.group_dn)?
            .is_none(),
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
    let change = client
        .modify_members(
            &mapping.group_dn,
            &plan.add,
            &plan.remove,
            DEFAULT_MEMBER_BATCH,
        )
        .await
        .map_err(|e| SyncError::directory(directory, e))?;
    store.mark_mapping_synced(&mapping.list, &mapping.group_dn)?;
    Ok(PushReport {
        added: change.added,
        removed: change.removed,
        unresolved: plan.unresolved,
        refused: change
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.member, f.message))
            .collect(),
    })
}

/// Runs a push and records it as a recent update, whatever the outcome.
pub async fn run(
    directory: &Directory,
    store: &Store,
    mapping: &MappingConfig,
) -> (RecentUpdate, Result<PushReport, SyncError>) {
    let started = now_ms();
    let result = reconcile(directory, store, mapping).await;
    if result.as_ref().is_err_and(SyncError::is_connection_problem) {
        directory.reset().await;
    }
    if let Ok(r) = &result {
        directory.note_removals(&mapping.group_dn, r.removed);
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
    (update, result)
}
