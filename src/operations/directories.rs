//! Directory use cases: each directory's status, checking its mappings, and pushing every
//! list mapped to it now ("sync now").

use std::sync::Arc;

use super::{Actor, OperationError};
use crate::config::MappingConfig;
use crate::directory::Directory;
use crate::runtime::Warden;
use crate::store::RecentUpdate;
use crate::sync::SyncMetrics;
use crate::sync::push::{self, Plan, PushReport};
use crate::sync::{DirectoryStatus, SyncError, directory_statuses};

/// A configured directory by name.
pub fn directory(warden: &Warden, name: &str) -> Result<Arc<Directory>, OperationError> {
    warden
        .directories()
        .get(name)
        .cloned()
        .ok_or_else(|| OperationError::NoSuchDirectory(name.to_owned()))
}

/// Every directory's status with its `recent` latest runs.
pub fn statuses(warden: &Warden, recent: usize) -> Result<Vec<DirectoryStatus>, OperationError> {
    Ok(directory_statuses(warden, recent)?)
}

fn mappings_of(warden: &Warden, name: &str) -> Vec<MappingConfig> {
    warden
        .config()
        .mappings
        .iter()
        .filter(|m| m.directory == name)
        .cloned()
        .collect()
}

/// One mapping's push run.
#[derive(Debug)]
pub struct MappingRun {
    pub mapping: MappingConfig,
    /// The recent update the run recorded.
    pub update: RecentUpdate,
    pub result: Result<PushReport, SyncError>,
}

/// Pushes every list mapped to directory `name` into its group now. The request is audited
/// with how it went (`failed` if any mapping failed); each run is a recent update.
pub async fn sync_now(
    warden: &Warden,
    actor: &Actor,
    name: &str,
) -> Result<Vec<MappingRun>, OperationError> {
    let directory = directory(warden, name)?;
    let mut runs = Vec::new();
    for mapping in mappings_of(warden, name) {
        let (update, result) =
            push::run(&directory, warden.store(), warden.events(), &mapping).await;
        match &result {
            Err(_) => warden.metrics().get::<SyncMetrics>().sync_failed(name),
            Ok(r) => {
                if !r.drift.is_empty() {
                    warden
                        .metrics()
                        .get::<SyncMetrics>()
                        .drift_repaired(&mapping.group_dn, r.drift.len());
                }
                if r.names_changed {
                    warden.accounts_changed()?;
                }
            }
        }
        runs.push(MappingRun {
            mapping,
            update,
            result,
        });
    }
    let failed = runs.iter().any(|r| r.result.is_err());
    super::audit_sync_now(warden, actor, "directories.sync", name, runs.len(), failed)?;
    Ok(runs)
}

/// One mapping's check: what its next push would do, or why it cannot run.
#[derive(Debug)]
pub struct MappingCheck {
    pub mapping: MappingConfig,
    pub plan: Result<Plan, SyncError>,
}

/// Checks every mapping: the group exists, and what the next push would add and remove (on a
/// first sync: how many current members it removes).
pub async fn check_mappings(warden: &Warden) -> Result<Vec<MappingCheck>, OperationError> {
    let mappings = warden.config().mappings.clone();
    let mut checks = Vec::new();
    for mapping in mappings {
        let directory = directory(warden, &mapping.directory)?;
        let plan = push::plan(&directory, warden.store(), &mapping).await;
        checks.push(MappingCheck { mapping, plan });
    }
    Ok(checks)
}
