//! The audit service: audits refused requests in aggregate and keeps the audit log within its
//! retention.
//!
//! Every [`FLUSH_INTERVAL`] it writes the pending refusals ([`crate::auth::denials`]) as one record
//! per (source, reason, route) with a count — one transaction, whatever the number of
//! refusals — and flushes once more when it stops. Every [`PRUNE_INTERVAL`] (and at start) it
//! deletes records older than `[server] audit_retention`.

use std::sync::Arc;
use std::time::Duration;

use super::{Ready, Service, Shutdown};
use crate::base::time::now_ms;
use crate::runtime::Warden;

/// How often pending refusals are audited: each aggregated record covers at most this long.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// How often records past their retention are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

pub fn service(warden: Arc<Warden>) -> Service {
    Service::new("audit", move |shutdown, ready| run(warden, shutdown, ready))
}

async fn run(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_INTERVAL);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both intervals tick at once; the first flush has nothing to write.
    loop {
        tokio::select! {
            () = shutdown.requested() => {
                flush_denials(&warden).await;
                return;
            }
            _ = flush.tick() => flush_denials(&warden).await,
            _ = prune.tick() => {
                if prune_audit(&warden).await {
                    ready.set();
                }
            }
        }
    }
}

async fn flush_denials(warden: &Arc<Warden>) {
    let w = Arc::clone(warden);
    match tokio::task::spawn_blocking(move || w.flush_denials()).await {
        Ok(Ok(f)) if f.records > 0 => {
            tracing::info!(
                records = f.records,
                refusals = f.refusals,
                "audited refused requests"
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot audit refused requests; kept for the next flush")
        }
        Err(e) => tracing::error!(error = %e, "audit flush task failed"),
    }
}

/// Prunes records past the retention; whether it succeeded.
async fn prune_audit(warden: &Arc<Warden>) -> bool {
    let retention = warden.config().server.audit_retention;
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let before = now_ms().saturating_sub(keep_ms);
    let w = Arc::clone(warden);
    match tokio::task::spawn_blocking(move || w.store().prune_audit(before)).await {
        Ok(Ok(n)) => {
            if n > 0 {
                tracing::info!(
                    records = n,
                    ?retention,
                    "pruned audit records past retention"
                );
            }
            true
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot prune the audit log");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "audit prune task failed");
            false
        }
    }
}
