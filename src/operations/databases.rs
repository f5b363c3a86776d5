//! Database use cases (the agentless mode): each database's status, and reconciling every
//! role mapped on it now ("sync now").

use super::{Actor, OperationError};
use crate::config::{DatabaseConfig, RoleMappingConfig};
use crate::runtime::Warden;
use crate::store::RecentUpdate;
use crate::sync::SyncMetrics;
use crate::sync::database::{self, DatabaseError, DatabaseStatus, RoleReport};

/// Every database's status with its `recent` latest runs.
pub fn statuses(warden: &Warden, recent: usize) -> Result<Vec<DatabaseStatus>, OperationError> {
    Ok(database::database_statuses(warden, recent)?)
}

fn database(warden: &Warden, name: &str) -> Result<DatabaseConfig, OperationError> {
    warden
        .config()
        .databases
        .iter()
        .find(|d| d.name == name)
        .cloned()
        .ok_or_else(|| OperationError::NoSuchDatabase(name.to_owned()))
}

/// One role mapping's run.
#[derive(Debug)]
pub struct RoleRun {
    pub mapping: RoleMappingConfig,
    /// The recent update the run recorded.
    pub update: RecentUpdate,
    pub result: Result<RoleReport, DatabaseError>,
}

/// Reconciles every role mapped on database `name` now. The request is audited with how it
/// went (`failed` if any mapping failed); each run is a recent update.
pub async fn sync_now(
    warden: &Warden,
    actor: &Actor,
    name: &str,
) -> Result<Vec<RoleRun>, OperationError> {
    let db = database(warden, name)?;
    let identity = std::sync::Arc::clone(&warden.config().identity);
    let mut runs = Vec::new();
    for mapping in &db.roles {
        let (update, result) =
            database::run(&db, warden.store(), warden.events(), mapping, &identity).await;
        if result.is_err() {
            warden.metrics().get::<SyncMetrics>().sync_failed(name);
        }
        runs.push(RoleRun {
            mapping: mapping.clone(),
            update,
            result,
        });
    }
    let failed = runs.iter().any(|r| r.result.is_err());
    super::audit_sync_now(warden, actor, "databases.sync", name, runs.len(), failed)?;
    Ok(runs)
}
