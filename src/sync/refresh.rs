//! One refresh of an `ldap` data set, end to end: an incremental data set pulls its changes
//! ([`incremental`]) unless a full pull is wanted or due, any other runs [`pull`]'s query and
//! apply; either way the run is recorded as a recent update (on a union query's directory too
//! when that one failed), counted, and a connection that failed is reset. The scheduling loops
//! (`services::sync`) and "refresh now" (`operations::data_sets`) call these two.

use super::SyncMetrics;
use super::incremental::{self, Want};
use super::pull::{self, RefreshOutcome};
use super::{SyncError, failed_update};
use crate::base::time::now_ms;
use crate::config::{DataSetConfig, Source};
use crate::directory::Directory;
use crate::runtime::Warden;
use crate::store::RecentUpdate;

/// Runs a full refresh (query, then apply) and records it as a recent update. An incremental
/// data set's state starts again from it.
pub async fn full(
    warden: &Warden,
    directory: &Directory,
    ds: &DataSetConfig,
) -> (RecentUpdate, Result<RefreshOutcome, SyncError>) {
    run(warden, directory, ds, Want::Full).await
}

/// Runs a scheduled or notified refresh: an incremental data set pulls only its changes
/// (unless a full pull is due or in doubt), any other pulls in full.
pub async fn changes(
    warden: &Warden,
    directory: &Directory,
    ds: &DataSetConfig,
) -> (RecentUpdate, Result<RefreshOutcome, SyncError>) {
    run(warden, directory, ds, Want::Changes).await
}

async fn run(
    warden: &Warden,
    directory: &Directory,
    ds: &DataSetConfig,
    want: Want,
) -> (RecentUpdate, Result<RefreshOutcome, SyncError>) {
    let started = now_ms();
    let result = match &ds.source {
        Source::Ldap(source) if source.incremental => {
            incremental::pull(warden, directory, ds, want).await
        }
        _ => match pull::query(warden, directory, ds).await {
            Ok(q) => pull::apply(warden, directory, ds, q).map(|o| (o, "full")),
            Err(e) => Err(e),
        },
    };
    if let Ok((_, kind)) = &result {
        warden.metrics().get::<SyncMetrics>().pulled(&ds.name, kind);
    }
    let result = result.map(|(outcome, _)| outcome);
    // A union query's directory was reset by `query`; this one only if it failed itself.
    let own_failure = |e: &SyncError| {
        e.is_connection_problem()
            && matches!(e, SyncError::Directory { directory: d, .. } if d == directory.name())
    };
    if result.as_ref().is_err_and(own_failure) {
        directory.reset().await;
    }
    let update = match &result {
        Ok(RefreshOutcome::Applied { added, removed, .. }) => RecentUpdate {
            directory: directory.name().to_string(),
            kind: "pull".into(),
            target: ds.name.clone(),
            started_at_ms: started,
            duration_ms: now_ms() - started,
            added: *added as i64,
            removed: *removed as i64,
            unresolved: Vec::new(),
            error: None,
        },
        Ok(RefreshOutcome::Held { reason, .. }) => RecentUpdate {
            directory: directory.name().to_string(),
            kind: "pull".into(),
            target: ds.name.clone(),
            started_at_ms: started,
            duration_ms: now_ms() - started,
            added: 0,
            removed: 0,
            unresolved: Vec::new(),
            error: Some(format!("held: {reason}")),
        },
        Err(e) => failed_update(directory.name(), "pull", &ds.name, started, e),
    };
    if let Err(e) = warden.store().record_update(&update) {
        tracing::error!(error = %e, "cannot record refresh run");
    }
    // A union query's directory failed: its own status shows it too.
    if let Err(
        e @ SyncError::Directory {
            directory: other, ..
        },
    ) = &result
        && other != directory.name()
        && let Err(e) = warden
            .store()
            .record_update(&failed_update(other, "pull", &ds.name, started, e))
    {
        tracing::error!(error = %e, "cannot record refresh run");
    }
    let metrics = warden.metrics().get::<SyncMetrics>();
    match &result {
        Ok(RefreshOutcome::Applied { .. }) => {
            metrics.refreshed(&ds.name, u64::try_from(now_ms()).unwrap_or(0));
        }
        Ok(RefreshOutcome::Held { .. }) => {}
        Err(_) => metrics.refresh_failed(&ds.name),
    }
    (update, result)
}
